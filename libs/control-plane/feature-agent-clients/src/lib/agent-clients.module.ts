import { Module } from '@nestjs/common';
import { AgentClientsController } from './agent-clients.controller';
import { AgentClientsRepository } from './agent-clients.repository';
import { AgentClientsService } from './agent-clients.service';

@Module({ controllers: [AgentClientsController], providers: [AgentClientsRepository, AgentClientsService] })
export class AgentClientsModule {}
