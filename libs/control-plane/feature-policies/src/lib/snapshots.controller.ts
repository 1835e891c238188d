import { Controller, Get, Injectable, Param, Post, Query, type PipeTransform } from '@nestjs/common';
import { pageQuery, snapshotResponse, type PageQuery } from '@portcullis/contracts/api';
import { Allow, CurrentTenant, type TenantScope } from '@portcullis/control-plane/auth';
import { ApiRoute, ZodPipe } from '@portcullis/control-plane/http';
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

  @Post(':version/activate')
  @Allow('tenant:policies:write')
  @ApiRoute({ tag: TAG, summary: 'Make an existing snapshot the active one (rollback); creates no new version', response: snapshotResponse })
  activate(@CurrentTenant() tenant: TenantScope, @Param('version', SnapshotVersionPipe) version: number) {
    return this.snapshots.activate(tenant, version);
  }
}
