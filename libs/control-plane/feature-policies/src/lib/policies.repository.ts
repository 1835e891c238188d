import { Injectable } from '@nestjs/common';
import type { PageRequest } from '@portcullis/control-plane/http';
import type { Prisma, TenantTransaction } from '@portcullis/data/db';
import type { TenantId } from '@portcullis/shared/util-ids';
import {
  DEFAULT_POLICY_NAME,
  policySelect,
  ruleSelect,
  snapshotSelect,
  toRuleRow,
  type PolicyRow,
  type RuleRow,
  type SnapshotRow,
  type TenantDirectory,
} from './policies.mapper';
import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';

/** What an upstream advertises that a policy can name: its instructions are pinned with its tools, never a target. */
const REGISTRY_KINDS = ['tool', 'prompt', 'resource', 'resource_template'] as const;
type RegistryKind = (typeof REGISTRY_KINDS)[number];
const isRegistryKind = (kind: string): kind is RegistryKind => (REGISTRY_KINDS as readonly string[]).includes(kind);

/** Queries only; `tenantId` first and always in the where (ADR 0003). */
@Injectable()
export class PoliciesRepository {
  // ------------------------------------------------------------ policy source

  async findPolicy(tenantId: TenantId, tx: TenantTransaction): Promise<PolicyRow | null> {
    return tx.policy.findUnique({ where: { tenantId_name: { tenantId, name: DEFAULT_POLICY_NAME } }, select: policySelect });
  }

  async rules(tenantId: TenantId, tx: TenantTransaction, policyId: string): Promise<RuleRow[]> {
    return tx.policyRule.findMany({ where: { tenantId, policyId }, orderBy: [{ position: 'asc' }, { id: 'asc' }], select: ruleSelect });
  }

  async createPolicy(
    tenantId: TenantId,
    tx: TenantTransaction,
    data: { defaultEffect: 'allow' | 'deny'; description: string | null; actorId: string },
  ): Promise<PolicyRow> {
    return tx.policy.create({
      data: {
        tenantId,
        name: DEFAULT_POLICY_NAME,
        defaultEffect: data.defaultEffect,
        description: data.description,
        createdById: data.actorId,
        updatedById: data.actorId,
      },
      select: policySelect,
    });
  }

  /** Compare-and-set on the version: null when someone else saved in between (or the policy is gone). */
  async updatePolicyIfVersion(
    tenantId: TenantId,
    tx: TenantTransaction,
    id: string,
    expectedVersion: number,
    data: { defaultEffect: 'allow' | 'deny'; description: string | null; actorId: string },
  ): Promise<PolicyRow | null> {
    const { count } = await tx.policy.updateMany({
      where: { tenantId, id, version: expectedVersion },
      data: { defaultEffect: data.defaultEffect, description: data.description, updatedById: data.actorId, version: { increment: 1 } },
    });
    return count === 0 ? null : tx.policy.findFirst({ where: { tenantId, id }, select: policySelect });
  }

  /** Unconditional update (rollback, under the snapshot lock): still bumps the version, so held ETags go stale. */
  async updatePolicy(
    tenantId: TenantId,
    tx: TenantTransaction,
    id: string,
    data: { defaultEffect: 'allow' | 'deny'; actorId: string },
  ): Promise<PolicyRow | null> {
    const { count } = await tx.policy.updateMany({
      where: { tenantId, id },
      data: { defaultEffect: data.defaultEffect, updatedById: data.actorId, version: { increment: 1 } },
    });
    return count === 0 ? null : tx.policy.findFirst({ where: { tenantId, id }, select: policySelect });
  }

  async replaceRules(tenantId: TenantId, tx: TenantTransaction, policyId: string, rules: readonly PolicyRuleSource[]): Promise<void> {
    await tx.policyRule.deleteMany({ where: { tenantId, policyId } });
    if (rules.length === 0) return;
    await tx.policyRule.createMany({ data: rules.map((rule, index) => ({ ...toRuleRow(rule, index + 1), tenantId, policyId })) });
  }

  // ------------------------------------------------------------ directory (what compile resolves subjects against)

  async directory(tenantId: TenantId, tx: TenantTransaction): Promise<TenantDirectory> {
    // One after another: a transaction is one connection, which runs one query at a time anyway (queries issued at once
    // on it queue in the driver, which pg deprecates and its next major refuses).
    const members = await tx.membership.findMany({ where: { tenantId }, select: { userId: true, role: true }, orderBy: { userId: 'asc' } });
    const groups = await tx.group.findMany({
      where: { tenantId },
      select: { externalId: true, members: { select: { userId: true } } },
      orderBy: { externalId: 'asc' },
    });
    const agentClients = await tx.agentClient.findMany({ where: { tenantId }, select: { id: true }, orderBy: { id: 'asc' } });
    const upstreams = await tx.upstream.findMany({
      where: { tenantId },
      select: { name: true, tools: { where: { removedAt: null, kind: { in: [...REGISTRY_KINDS] } }, select: { kind: true, name: true } } },
      orderBy: { name: 'asc' },
    });
    return {
      members,
      // Policies name groups by their external id (the SSO group claim value): unique per tenant and stable across renames.
      groups: groups.map((group) => ({ name: group.externalId, members: group.members.map((member) => member.userId) })),
      agentClients,
      upstreams: upstreams.map((upstream) => ({ name: upstream.name, tools: upstream.tools.filter((tool): tool is { kind: RegistryKind; name: string } => isRegistryKind(tool.kind)) })),
    };
  }

  // ------------------------------------------------------------ snapshots

  /**
   * Serialises snapshot writers of one tenant (transaction-scoped advisory lock), so versions are handed out one at
   * a time and two concurrent changes cannot both activate a snapshot compiled from a stale view.
   */
  async lockSnapshots(tenantId: TenantId, tx: TenantTransaction): Promise<void> {
    // $executeRaw: the function returns `void`, which $queryRaw cannot deserialise.
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`pcs:policy-snapshots:${tenantId}`}, 0))`;
  }

  async latestVersion(tenantId: TenantId, tx: TenantTransaction): Promise<number> {
    const latest = await tx.policySnapshot.findFirst({ where: { tenantId }, orderBy: { version: 'desc' }, select: { version: true } });
    return latest?.version ?? 0;
  }

  async active(tenantId: TenantId, tx: TenantTransaction): Promise<(SnapshotRow & { ir: Prisma.JsonValue }) | null> {
    return tx.policySnapshot.findFirst({ where: { tenantId, active: true }, select: { ...snapshotSelect, ir: true } });
  }

  async activeVersion(tenantId: TenantId, tx: TenantTransaction): Promise<number | null> {
    const row = await tx.policySnapshot.findFirst({ where: { tenantId, active: true }, select: { version: true } });
    return row?.version ?? null;
  }

  /**
   * Oldest version first. The cursor names the last row's id (as everywhere); the page continues after that row's
   * VERSION, which is the order that matters here (ids are only time-ordered per process).
   */
  async listSnapshots(tenantId: TenantId, tx: TenantTransaction, page: PageRequest): Promise<SnapshotRow[]> {
    let afterVersion = 0;
    if (page.after !== undefined) {
      const last = await tx.policySnapshot.findFirst({ where: { tenantId, id: page.after }, select: { version: true } });
      if (!last) return [];
      afterVersion = last.version;
    }
    return tx.policySnapshot.findMany({
      where: { tenantId, version: { gt: afterVersion } },
      orderBy: { version: 'asc' },
      take: page.limit + 1,
      select: snapshotSelect,
    });
  }

  async deactivateAll(tenantId: TenantId, tx: TenantTransaction): Promise<void> {
    await tx.policySnapshot.updateMany({ where: { tenantId, active: true }, data: { active: false } });
  }

  /** The policy source a snapshot was compiled from (rollback restores it). */
  async snapshotSource(tenantId: TenantId, tx: TenantTransaction, version: number): Promise<{ version: number; source: Prisma.JsonValue } | null> {
    return tx.policySnapshot.findUnique({ where: { tenantId_version: { tenantId, version } }, select: { version: true, source: true } });
  }

  async insertActiveSnapshot(
    tenantId: TenantId,
    tx: TenantTransaction,
    snapshot: { version: number; irVersion: number; checksum: string; ir: Prisma.InputJsonValue; source: Prisma.InputJsonValue; comment: string; createdById: string | null },
  ): Promise<SnapshotRow> {
    return tx.policySnapshot.create({ data: { tenantId, ...snapshot, active: true }, select: snapshotSelect });
  }
}
