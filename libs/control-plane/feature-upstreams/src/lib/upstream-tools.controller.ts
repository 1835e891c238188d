import { Body, Controller, Delete, Get, Param, Post, Query } from '@nestjs/common';
import {
  approveUpstreamToolRequest,
  forgetUpstreamToolsQuery,
  forgetUpstreamToolsResponse,
  testConnectionResponse,
  upstreamToolResponse,
  upstreamToolsQuery,
  upstreamToolsResponse,
  type ApproveUpstreamToolRequest,
  type ForgetUpstreamToolsQuery,
  type UpstreamToolsQuery,
} from '@portcullis/contracts/api';
import { Allow, CurrentTenant, type TenantScope } from '@portcullis/control-plane/auth';
import { ApiRoute, IdParamPipe, ZodPipe } from '@portcullis/control-plane/http';
import { UpstreamToolsService } from './upstream-tools.service';

const TAG = 'upstreams';

@Controller('api/v1/tenants/:tenantId/upstreams/:upstreamId')
export class UpstreamToolsController {
  constructor(private readonly tools: UpstreamToolsService) {}

  @Post('test')
  @Allow('tenant:upstreams:write')
  @ApiRoute({
    tag: TAG,
    summary: 'Test connection: connect as the gateway would, discover tools/prompts/resources and store their definitions (409, storing nothing, when the upstream was edited while the test ran)',
    response: testConnectionResponse,
  })
  test(@CurrentTenant() tenant: TenantScope, @Param('upstreamId', IdParamPipe) upstreamId: string) {
    return this.tools.testConnection(tenant, upstreamId);
  }

  @Get('tools')
  @Allow('tenant:upstreams:read')
  @ApiRoute({ tag: TAG, summary: 'Stored definitions with their pinning state and the diff from the approved definition', response: upstreamToolsResponse })
  list(
    @CurrentTenant() tenant: TenantScope,
    @Param('upstreamId', IdParamPipe) upstreamId: string,
    @Query(new ZodPipe(upstreamToolsQuery)) query: UpstreamToolsQuery,
  ) {
    return this.tools.list(tenant, upstreamId, query);
  }

  @Delete('tools')
  @Allow('tenant:upstream-tools:approve')
  @ApiRoute({
    tag: TAG,
    summary: 'Forget stored definitions (all, or with state=removed those no longer advertised); the next test connection finds them anew',
    response: forgetUpstreamToolsResponse,
  })
  forget(
    @CurrentTenant() tenant: TenantScope,
    @Param('upstreamId', IdParamPipe) upstreamId: string,
    @Query(new ZodPipe(forgetUpstreamToolsQuery)) query: ForgetUpstreamToolsQuery,
  ) {
    return this.tools.forget(tenant, upstreamId, query);
  }

  @Post('tools/:toolId/approve')
  @Allow('tenant:upstream-tools:approve')
  @ApiRoute({
    tag: TAG,
    summary: 'Approve the stored definition (named by its content hash); the gateway shows and routes it again',
    body: approveUpstreamToolRequest,
    response: upstreamToolResponse,
    conflicts: true,
  })
  approve(
    @CurrentTenant() tenant: TenantScope,
    @Param('upstreamId', IdParamPipe) upstreamId: string,
    @Param('toolId', IdParamPipe) toolId: string,
    @Body(new ZodPipe(approveUpstreamToolRequest)) body: ApproveUpstreamToolRequest,
  ) {
    return this.tools.approve(tenant, upstreamId, toolId, body);
  }
}
