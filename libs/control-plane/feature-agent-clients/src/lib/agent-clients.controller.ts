import { Body, Controller, Delete, Get, Param, Post, Query } from '@nestjs/common';
import {
  agentClientResponse,
  createAgentClientRequest,
  pageQuery,
  type CreateAgentClientRequest,
  type PageQuery,
} from '@portcullis/contracts/api';
import { Allow, CurrentTenant, type TenantScope } from '@portcullis/control-plane/auth';
import { ApiRoute, IdParamPipe, ZodPipe } from '@portcullis/control-plane/http';
import { AgentClientsService } from './agent-clients.service';

const TAG = 'agent clients';

@Controller('api/v1/tenants/:tenantId/agent-clients')
export class AgentClientsController {
  constructor(private readonly agentClients: AgentClientsService) {}

  @Get()
  @Allow('tenant:agent-clients:read')
  @ApiRoute({ tag: TAG, summary: 'List agent clients', response: agentClientResponse, paged: true })
  list(@CurrentTenant() tenant: TenantScope, @Query(new ZodPipe(pageQuery)) query: PageQuery) {
    return this.agentClients.list(tenant, query);
  }

  @Post()
  @Allow('tenant:agent-clients:write')
  @ApiRoute({ tag: TAG, summary: 'Register an agent client', status: 201, body: createAgentClientRequest, response: agentClientResponse, conflicts: true })
  create(@CurrentTenant() tenant: TenantScope, @Body(new ZodPipe(createAgentClientRequest)) body: CreateAgentClientRequest) {
    return this.agentClients.create(tenant, body);
  }

  @Get(':agentClientId')
  @Allow('tenant:agent-clients:read')
  @ApiRoute({ tag: TAG, summary: 'Get an agent client', response: agentClientResponse })
  get(@CurrentTenant() tenant: TenantScope, @Param('agentClientId', IdParamPipe) id: string) {
    return this.agentClients.get(tenant, id);
  }

  @Delete(':agentClientId')
  @Allow('tenant:agent-clients:write')
  @ApiRoute({ tag: TAG, summary: 'Delete an agent client and its API keys', status: 204 })
  async delete(@CurrentTenant() tenant: TenantScope, @Param('agentClientId', IdParamPipe) id: string): Promise<void> {
    await this.agentClients.delete(tenant, id);
  }
}
