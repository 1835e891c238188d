import { Body, Controller, Get, Param, Post, Query } from '@nestjs/common';
import { ApiQuery } from '@nestjs/swagger';
import {
  approvalResponse,
  approvalStatus,
  approvalTargetKind,
  approveRequest,
  denyRequest,
  listApprovalsQuery,
  type ApproveRequest,
  type DenyRequest,
  type ListApprovalsQuery,
} from '@portcullis/contracts/api';
import { Allow, CurrentTenant, type TenantScope } from '@portcullis/control-plane/auth';
import { ApiRoute, IdParamPipe, ZodPipe } from '@portcullis/control-plane/http';
import { ApprovalsService } from './approvals.service';

const TAG = 'approvals';

@Controller('api/v1/tenants/:tenantId/approvals')
export class ApprovalsController {
  constructor(private readonly approvals: ApprovalsService) {}

  @Get()
  @Allow('tenant:approvals:read')
  @ApiRoute({ tag: TAG, summary: 'List approvals of held calls (filter with ?status=pending, ?kind=prompt)', response: approvalResponse, paged: true })
  @ApiQuery({ name: 'status', required: false, enum: approvalStatus.options, description: 'only approvals in this state (pending: still decidable)' })
  @ApiQuery({ name: 'kind', required: false, enum: approvalTargetKind.options, description: 'only held calls of tools, prompts or resources' })
  list(@CurrentTenant() tenant: TenantScope, @Query(new ZodPipe(listApprovalsQuery)) query: ListApprovalsQuery) {
    return this.approvals.list(tenant, query);
  }

  @Get(':approvalId')
  @Allow('tenant:approvals:read')
  @ApiRoute({ tag: TAG, summary: 'Get an approval', response: approvalResponse })
  get(@CurrentTenant() tenant: TenantScope, @Param('approvalId', IdParamPipe) id: string) {
    return this.approvals.get(tenant, id);
  }

  @Post(':approvalId/approve')
  @Allow('tenant:approvals:decide')
  @ApiRoute({
    tag: TAG,
    summary: 'Approve a held call for exactly the reviewed arguments (argumentsHash), optionally with edited arguments; not your own call',
    body: approveRequest,
    response: approvalResponse,
    conflicts: true,
  })
  approve(@CurrentTenant() tenant: TenantScope, @Param('approvalId', IdParamPipe) id: string, @Body(new ZodPipe(approveRequest)) body: ApproveRequest) {
    return this.approvals.approve(tenant, id, body);
  }

  @Post(':approvalId/deny')
  @Allow('tenant:approvals:decide')
  @ApiRoute({ tag: TAG, summary: 'Deny a held call (the note is shown to the agent); not your own call', body: denyRequest, response: approvalResponse, conflicts: true })
  deny(@CurrentTenant() tenant: TenantScope, @Param('approvalId', IdParamPipe) id: string, @Body(new ZodPipe(denyRequest)) body: DenyRequest) {
    return this.approvals.deny(tenant, id, body);
  }
}
