export { AgentClientsModule } from './lib/agent-clients.module';
