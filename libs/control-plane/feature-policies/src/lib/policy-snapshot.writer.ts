import { Inject, Injectable } from '@nestjs/common';
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { assertRoleStillGrants, assertTenantWritable, type TenantPermission, type TenantScope } from '@portcullis/control-plane/auth';
import { ChangePublisher } from '@portcullis/control-plane/change-events';
import { withTenant, type PortcullisPrismaClient, type Prisma, type TenantTransaction, type TransactionOptions } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { compile, serializeSnapshot, type CompileError } from '@portcullis/policy/engine';
import type { TenantId } from '@portcullis/shared/util-ids';
import { policyErrors } from './policies.errors';
import { assemblePolicySource, toRuleSource } from './policies.mapper';
import { PoliciesRepository } from './policies.repository';
import { TenantWriteQueue } from './tenant-write-queue';

export interface WrittenSnapshot {
  readonly tenantId: TenantId;
  readonly version: number;
  readonly checksum: string;
  readonly comment: string;
}

export type RebuildResult = { readonly ok: true; readonly snapshot: WrittenSnapshot } | { readonly ok: false; readonly errors: readonly CompileError[] };

/**
 * Compiles the tenant's policy against the directory and registry as they are INSIDE the caller's transaction and
 * writes the result as the new active snapshot (next version, previous one deactivated), so a change and the
 * snapshot that enforces it commit or roll back together. Call `announce` after the commit.
 *
 * Other features (members, groups, agent clients, upstreams) call `rebuildOrConflict` from their own transactions,
 * which they open with `transaction`: one at a time per tenant in this process (`TenantWriteQueue`).
 */
@Injectable()
export class PolicySnapshotWriter {
  private readonly queue = new TenantWriteQueue();

  constructor(
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
    private readonly repository: PoliciesRepository,
    private readonly changes: ChangePublisher,
  ) {}

  /**
   * `withTenant` for a change that writes the tenant's snapshot (it calls `rebuild`, `rebuildOrConflict` or `lock`):
   * started once this process's earlier changes of the tenant have finished, so a change waiting its turn holds no
   * pool connection. More than `MAX_QUEUED_CHANGES_PER_TENANT` waiting: 429, nothing done. An actor who no longer
   * holds `permission` (removed or demoted since the access guard let the request in): 403, nothing done
   * (`assertRoleStillGrants`); null for a caller that reads the role itself after locks of its own (members). A tenant
   * suspended since: 409, nothing done (`assertTenantWritable`).
   */
  transaction<T>(scope: TenantScope, permission: TenantPermission | null, fn: (tx: TenantTransaction) => Promise<T>, options?: TransactionOptions): Promise<T> {
    const { tenantId } = scope;
    return this.queue.run(tenantId, () =>
      withTenant(
        this.db,
        tenantId,
        async (tx) => {
          if (permission !== null) await assertRoleStillGrants(scope, permission, tx);
          await assertTenantWritable(tenantId, tx);
          return fn(tx);
        },
        options,
      ),
    );
  }

  /**
   * @param override the policy being saved (else the stored one, or "deny by default, no rules" if none exists)
   */
  async rebuild(
    tenantId: TenantId,
    tx: TenantTransaction,
    change: {
      readonly actorUserId: string | null;
      readonly comment: string;
      readonly override?: { readonly defaultEffect: 'allow' | 'deny'; readonly rules: readonly PolicyRuleSource[] };
      /** The rules are being written now (a policy saved): held to the engine's bound on pattern complexity. */
      readonly newRules?: boolean;
    },
  ): Promise<RebuildResult> {
    await this.repository.lockSnapshots(tenantId, tx);
    let policy = change.override;
    if (policy === undefined) {
      const stored = await this.repository.findPolicy(tenantId, tx);
      const rows = stored ? await this.repository.rules(tenantId, tx, stored.id) : [];
      policy = { defaultEffect: stored?.defaultEffect ?? 'deny', rules: rows.map(toRuleSource) };
    }
    // In turn: one transaction is one connection (see `directory`).
    const directory = await this.repository.directory(tenantId, tx);
    const latest = await this.repository.latestVersion(tenantId, tx);
    const version = latest + 1;
    const source = assemblePolicySource({ tenantId, version, defaultEffect: policy.defaultEffect, rules: policy.rules, directory });
    const compiled = compile(source, { complexityBudget: change.newRules === true });
    if (!compiled.ok) return { ok: false, errors: compiled.errors };
    await this.repository.deactivateAll(tenantId, tx);
    const row = await this.repository.insertActiveSnapshot(tenantId, tx, {
      version,
      irVersion: compiled.snapshot.irVersion,
      checksum: compiled.snapshot.checksum,
      ir: JSON.parse(serializeSnapshot(compiled.snapshot)) as Prisma.InputJsonValue,
      source: source as unknown as Prisma.InputJsonValue,
      comment: change.comment,
      createdById: change.actorUserId,
    });
    return { ok: true, snapshot: { tenantId, version: row.version, checksum: row.checksum, comment: change.comment } };
  }

  /** `rebuild` for changes outside the policy: a change that would break the policy is refused with 409. */
  /**
   * Takes the tenant's snapshot lock now, for a change whose checks read the policy before it rebuilds (a rename
   * checked against the rules that name the upstream): a policy saved in between would otherwise pass unchecked.
   * Held to the end of the transaction; `rebuild` taking it again is free.
   */
  async lock(tenantId: TenantId, tx: TenantTransaction): Promise<void> {
    await this.repository.lockSnapshots(tenantId, tx);
  }

  async rebuildOrConflict(tenantId: TenantId, tx: TenantTransaction, actorUserId: string | null, comment: string): Promise<WrittenSnapshot> {
    const result = await this.rebuild(tenantId, tx, { actorUserId, comment });
    if (!result.ok) throw policyErrors.changeBreaksPolicy(result.errors);
    return result.snapshot;
  }

  /**
   * After the commit: tell the gateways (best effort; they also reconcile). The change's own audit event names the
   * snapshot (`snapshotVersion`), so a snapshot is audited as part of the change that produced it.
   */
  async announce(snapshot: WrittenSnapshot): Promise<void> {
    await this.changes.publish(CHANGE_CHANNELS.snapshots, snapshot.tenantId);
  }
}
