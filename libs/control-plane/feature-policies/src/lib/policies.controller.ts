import { Body, Controller, Get, Headers, Post, Put, Res } from '@nestjs/common';
import { ApiHeader, ApiResponse } from '@nestjs/swagger';
import {
  policyResponse,
  putPolicyRequest,
  savedPolicyResponse,
  simulatePolicyRequest,
  simulatePolicyResponse,
  type ParsedPutPolicyRequest,
  type ParsedSimulatePolicyRequest,
} from '@portcullis/contracts/api';
import { Allow, CurrentTenant, type TenantScope } from '@portcullis/control-plane/auth';
import { ApiRoute, ZodPipe } from '@portcullis/control-plane/http';
import type { FastifyReply } from 'fastify';
import { PoliciesService } from './policies.service';

const TAG = 'policies';

@Controller('api/v1/tenants/:tenantId/policy')
export class PoliciesController {
  constructor(private readonly policies: PoliciesService) {}

  @Get()
  @Allow('tenant:policies:read')
  @ApiRoute({ tag: TAG, summary: 'Get the tenant policy (default effect and rules); the ETag is its version', response: policyResponse })
  async get(@CurrentTenant() tenant: TenantScope, @Res({ passthrough: true }) reply: FastifyReply) {
    const { policy, etag } = await this.policies.get(tenant);
    void reply.header('etag', etag);
    return policy;
  }

  @Put()
  @Allow('tenant:policies:write')
  @ApiRoute({
    tag: TAG,
    summary: 'Replace the tenant policy; compiled on save into a new active snapshot (400 names each rule and path that does not compile)',
    body: putPolicyRequest,
    response: savedPolicyResponse,
  })
  @ApiHeader({ name: 'If-Match', required: true, description: 'The ETag from GET (`"0"` before the first save)' })
  @ApiResponse({ status: 412, description: 'The policy changed since that ETag (problem+json)' })
  @ApiResponse({ status: 428, description: 'If-Match missing (problem+json)' })
  async put(
    @CurrentTenant() tenant: TenantScope,
    @Headers('if-match') ifMatch: string | undefined,
    @Body(new ZodPipe(putPolicyRequest)) body: ParsedPutPolicyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ) {
    const { policy, etag } = await this.policies.put(tenant, ifMatch, body);
    void reply.header('etag', etag);
    return policy;
  }

  @Post('simulate')
  @Allow('tenant:policies:read')
  @ApiRoute({
    tag: TAG,
    summary: 'Explain a decision ({subject, tool, arguments, context}) or list what a subject can see ({subject}) under the active snapshot',
    body: simulatePolicyRequest,
    response: simulatePolicyResponse,
  })
  simulate(@CurrentTenant() tenant: TenantScope, @Body(new ZodPipe(simulatePolicyRequest)) body: ParsedSimulatePolicyRequest) {
    return this.policies.simulate(tenant, body);
  }
}
