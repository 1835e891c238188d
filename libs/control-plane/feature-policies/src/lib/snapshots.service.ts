import { Inject, Injectable } from '@nestjs/common';
import { CHANGE_CHANNELS, type PageQuery, type SnapshotResponse } from '@portcullis/contracts/api';
import type { TenantScope } from '@portcullis/control-plane/auth';
import { AuditEmitter, ChangePublisher } from '@portcullis/control-plane/change-events';
import { pageRequest, toPage, type Page } from '@portcullis/control-plane/http';
import { withTenant, type PortcullisPrismaClient } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { policyErrors } from './policies.errors';
import { toSnapshotResponse } from './policies.mapper';
import { PoliciesRepository } from './policies.repository';

@Injectable()
export class SnapshotsService {
  constructor(
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
    private readonly repository: PoliciesRepository,
    private readonly audit: AuditEmitter,
    private readonly changes: ChangePublisher,
  ) {}

  async list(scope: TenantScope, query: PageQuery): Promise<Page<SnapshotResponse>> {
    const page = pageRequest(query);
    const rows = await withTenant(this.db, scope.tenantId, (tx) => this.repository.listSnapshots(scope.tenantId, tx, page));
    return toPage(rows, page.limit, toSnapshotResponse);
  }

  /**
   * Rolls back (or forward) to an existing snapshot: flips `active` in one transaction, creates nothing. The
   * policy source is not rewritten: the next change compiles the CURRENT source into a new version again.
   */
  async activate(scope: TenantScope, version: number): Promise<SnapshotResponse> {
    const { tenantId } = scope;
    const { previous, activated } = await withTenant(this.db, tenantId, async (tx) => {
      await this.repository.lockSnapshots(tenantId, tx);
      const target = await this.repository.findSnapshot(tenantId, tx, version);
      if (!target) throw policyErrors.snapshotNotFound();
      const previous = await this.repository.activeVersion(tenantId, tx);
      if (target.active) return { previous, activated: null };
      await this.repository.deactivateAll(tenantId, tx);
      const activated = await this.repository.activate(tenantId, tx, version);
      if (!activated) throw policyErrors.snapshotNotFound();
      return { previous, activated };
    });
    if (activated === null) {
      // Already active: nothing changed, nothing to announce.
      const row = await withTenant(this.db, tenantId, (tx) => this.repository.findSnapshot(tenantId, tx, version));
      if (!row) throw policyErrors.snapshotNotFound();
      return toSnapshotResponse(row);
    }
    const response = toSnapshotResponse(activated);
    await this.audit.emit({
      tenantId,
      actor: scope.actor,
      action: 'policy_snapshot.activate',
      target: { type: 'policy_snapshot', id: String(version) },
      before: { activeVersion: previous },
      after: { activeVersion: version, checksum: activated.checksum },
      snapshotVersion: version,
    });
    await this.changes.publish(CHANGE_CHANNELS.snapshots, tenantId);
    return response;
  }
}
