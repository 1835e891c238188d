import { Controller, Get, Injectable, Param, Post, Query, Res, type PipeTransform } from '@nestjs/common';
import { pageQuery, savedPolicyResponse, snapshotResponse, type PageQuery } from '@portcullis/contracts/api';
import { Allow, CurrentTenant, type TenantScope } from '@portcullis/control-plane/auth';
import { ApiRoute, ZodPipe } from '@portcullis/control-plane/http';
import type { FastifyReply } from 'fastify';
import { policyErrors } from './policies.errors';
import { SnapshotsService } from './snapshots.service';

const TAG = 'policies';

/** A snapshot version from the path: a positive integer, else it cannot exist (404). */
@Injectable()
export class SnapshotVersionPipe implements PipeTransform<string, number> {
  transform(value: string): number {
    if (!/^[1-9]\d{0,8}$/.test(value)) throw policyErrors.snapshotNotFound();
    return Number(value);
  }
}

@Controller('api/v1/tenants/:tenantId/snapshots')
export class SnapshotsController {
  constructor(private readonly snapshots: SnapshotsService) {}

  @Get()
  @Allow('tenant:policies:read')
  @ApiRoute({ tag: TAG, summary: 'List policy snapshots (oldest first)', response: snapshotResponse, paged: true })
  list(@CurrentTenant() tenant: TenantScope, @Query(new ZodPipe(pageQuery)) query: PageQuery) {
    return this.snapshots.list(tenant, query);
  }

  @Post(':version/rollback')
  @Allow('tenant:policies:write')
  @ApiRoute({
    tag: TAG,
    summary:
      'Roll back: restore the default effect and rules snapshot :version was compiled from, compiled against the current directory into a new active snapshot (409 naming each rule that no longer compiles)',
    response: savedPolicyResponse,
    conflicts: true,
  })
  async rollback(
    @CurrentTenant() tenant: TenantScope,
    @Param('version', SnapshotVersionPipe) version: number,
    @Res({ passthrough: true }) reply: FastifyReply,
  ) {
    const { policy, etag } = await this.snapshots.rollback(tenant, version);
    void reply.header('etag', etag);
    return policy;
  }
}
