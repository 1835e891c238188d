export { ApiKeysModule } from './lib/api-keys.module';
