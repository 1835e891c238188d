export { ApiKeysModule } from './lib/api-keys.module';
export { MAX_LIVE_KEYS_PER_AGENT_CLIENT, MAX_LIVE_KEYS_PER_TENANT } from './lib/api-keys.service';
