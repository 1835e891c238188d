import { Module } from '@nestjs/common';
import { PoliciesModule } from '@portcullis/control-plane/feature-policies';
import { AgentClientsController } from './agent-clients.controller';
import { AgentClientsRepository } from './agent-clients.repository';
import { AgentClientsService } from './agent-clients.service';

@Module({ imports: [PoliciesModule], controllers: [AgentClientsController], providers: [AgentClientsRepository, AgentClientsService] })
export class AgentClientsModule {}
