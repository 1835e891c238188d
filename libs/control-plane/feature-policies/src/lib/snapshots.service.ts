import { Inject, Injectable } from '@nestjs/common';
import type { PageQuery, SavedPolicyResponse, SnapshotResponse } from '@portcullis/contracts/api';
import { policySource } from '@portcullis/contracts/policy-ir';
import type { TenantScope } from '@portcullis/control-plane/auth';
import { AuditEmitter } from '@portcullis/control-plane/change-events';
import { pageRequest, toPage, type Page } from '@portcullis/control-plane/http';
import { withTenant, type PortcullisPrismaClient } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { policyErrors } from './policies.errors';
import { policyEtag, toPolicyResponse, toSnapshotResponse } from './policies.mapper';
import { PoliciesRepository } from './policies.repository';
import { PolicySnapshotWriter } from './policy-snapshot.writer';

@Injectable()
export class SnapshotsService {
  constructor(
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
    private readonly repository: PoliciesRepository,
    private readonly writer: PolicySnapshotWriter,
    private readonly audit: AuditEmitter,
  ) {}

  async list(scope: TenantScope, query: PageQuery): Promise<Page<SnapshotResponse>> {
    const page = pageRequest(query);
    const rows = await withTenant(this.db, scope.tenantId, (tx) => this.repository.listSnapshots(scope.tenantId, tx, page));
    return toPage(rows, page.limit, toSnapshotResponse);
  }

  /**
   * Rolls the policy back to what snapshot `version` was compiled from: its default effect and rules become the
   * policy again (the policy version moves on, so ETags held by editors go stale) and are compiled against the
   * directory and registry AS THEY ARE NOW into a new active snapshot, in one transaction.
   *
   * Why not re-activate the old snapshot's bytes: its directory is old, so it would give back access that was
   * taken away since (a user removed from a group, a deleted agent client), and the next member or upstream change
   * would recompile the current source and silently undo the rollback. Snapshots stay immutable either way.
   * If the old rules refer to something that no longer exists, the rollback is refused (409 naming the rules).
   */
  async rollback(scope: TenantScope, version: number): Promise<{ policy: SavedPolicyResponse; etag: string }> {
    const { tenantId } = scope;
    const outcome = await this.writer.transaction(scope, 'tenant:policies:write', async (tx) => {
      await this.repository.lockSnapshots(tenantId, tx);
      const target = await this.repository.snapshotSource(tenantId, tx, version);
      if (!target) throw policyErrors.snapshotNotFound();
      const parsed = policySource.safeParse(target.source);
      if (!parsed.success) throw policyErrors.snapshotNotRestorable(version);
      const { defaultEffect, rules } = parsed.data;

      const previousActive = await this.repository.activeVersion(tenantId, tx);
      const existing = await this.repository.findPolicy(tenantId, tx);
      const saved = existing
        ? await this.repository.updatePolicy(tenantId, tx, existing.id, { defaultEffect, actorId: scope.actor.userId })
        : await this.repository.createPolicy(tenantId, tx, { defaultEffect, description: null, actorId: scope.actor.userId });
      if (!saved) throw policyErrors.snapshotNotFound();
      await this.repository.replaceRules(tenantId, tx, saved.id, rules);
      const result = await this.writer.rebuild(tenantId, tx, {
        actorUserId: scope.actor.userId,
        comment: `policy.rollback to v${version}`,
        override: { defaultEffect, rules },
      });
      if (!result.ok) throw policyErrors.rollbackBreaksPolicy(version, result.errors);
      const after = toPolicyResponse(saved, await this.repository.rules(tenantId, tx, saved.id), result.snapshot.version);
      const staged = await this.audit.stage(tx, {
        tenantId,
        actor: scope.actor,
        action: 'policy.rollback',
        target: { type: 'policy_snapshot', id: String(version) },
        before: { activeSnapshotVersion: previousActive, policyVersion: existing?.version ?? 0 },
        after: {
          activeSnapshotVersion: result.snapshot.version,
          restoredFromSnapshotVersion: version,
          policyVersion: after.version,
          checksum: result.snapshot.checksum,
        },
        snapshotVersion: result.snapshot.version,
      });
      return { after, snapshot: result.snapshot, staged };
    });

    await this.audit.publish(outcome.staged);
    await this.writer.announce(outcome.snapshot);
    return {
      policy: { ...outcome.after, snapshot: { version: outcome.snapshot.version, checksum: outcome.snapshot.checksum } },
      etag: policyEtag(outcome.after.version),
    };
  }
}
