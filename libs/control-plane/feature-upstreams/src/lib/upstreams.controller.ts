import { Body, Controller, Delete, Get, Headers, Param, Patch, Post, Query, Res } from '@nestjs/common';
import { ApiHeader, ApiResponse } from '@nestjs/swagger';
import {
  createUpstreamRequest,
  pageQuery,
  updateUpstreamRequest,
  upstreamResponse,
  type CreateUpstreamRequest,
  type PageQuery,
  type UpdateUpstreamRequest,
} from '@portcullis/contracts/api';
import { Allow, CurrentTenant, type TenantScope } from '@portcullis/control-plane/auth';
import { ApiRoute, IdParamPipe, ZodPipe } from '@portcullis/control-plane/http';
import type { FastifyReply } from 'fastify';
import { UpstreamsService } from './upstreams.service';

const TAG = 'upstreams';

/** A strong ETag of an upstream's version, as `If-Match` takes it back (`parseIfMatch`). */
const versionEtag = (version: number): string => `"${version}"`;

@Controller('api/v1/tenants/:tenantId/upstreams')
export class UpstreamsController {
  constructor(private readonly upstreams: UpstreamsService) {}

  @Get()
  @Allow('tenant:upstreams:read')
  @ApiRoute({ tag: TAG, summary: 'List upstreams', response: upstreamResponse, paged: true })
  list(@CurrentTenant() tenant: TenantScope, @Query(new ZodPipe(pageQuery)) query: PageQuery) {
    return this.upstreams.list(tenant, query);
  }

  @Post()
  @Allow('tenant:upstreams:write')
  @ApiRoute({
    tag: TAG,
    summary: 'Create an upstream (headers/env are write-only; stdio: platform admins, allow-listed commands)',
    status: 201,
    body: createUpstreamRequest,
    response: upstreamResponse,
    conflicts: true,
  })
  create(@CurrentTenant() tenant: TenantScope, @Body(new ZodPipe(createUpstreamRequest)) body: CreateUpstreamRequest) {
    return this.upstreams.create(tenant, body);
  }

  @Get(':upstreamId')
  @Allow('tenant:upstreams:read')
  @ApiRoute({ tag: TAG, summary: 'Get an upstream; the ETag is its version (send it as If-Match with a change)', response: upstreamResponse })
  async get(@CurrentTenant() tenant: TenantScope, @Param('upstreamId', IdParamPipe) id: string, @Res({ passthrough: true }) reply: FastifyReply) {
    const upstream = await this.upstreams.get(tenant, id);
    void reply.header('etag', versionEtag(upstream.version));
    return upstream;
  }

  @Patch(':upstreamId')
  @Allow('tenant:upstreams:write')
  @ApiRoute({
    tag: TAG,
    summary: 'Change an upstream (headers/env replace the stored map; null removes it)',
    body: updateUpstreamRequest,
    response: upstreamResponse,
    conflicts: true,
  })
  @ApiHeader({ name: 'If-Match', required: false, description: 'The upstream\'s `version` as read (e.g. `"3"`): the change applies only to that version' })
  @ApiResponse({ status: 412, description: 'The upstream changed since the If-Match version (problem+json)' })
  async update(
    @CurrentTenant() tenant: TenantScope,
    @Param('upstreamId', IdParamPipe) id: string,
    @Body(new ZodPipe(updateUpstreamRequest)) body: UpdateUpstreamRequest,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
  ) {
    const upstream = await this.upstreams.update(tenant, id, body, ifMatch);
    void reply.header('etag', versionEtag(upstream.version));
    return upstream;
  }

  @Delete(':upstreamId')
  @Allow('tenant:upstreams:write')
  @ApiRoute({ tag: TAG, summary: 'Delete an upstream', status: 204 })
  async delete(@CurrentTenant() tenant: TenantScope, @Param('upstreamId', IdParamPipe) id: string): Promise<void> {
    await this.upstreams.delete(tenant, id);
  }
}
