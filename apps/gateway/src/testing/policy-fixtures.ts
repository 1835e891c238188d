/**
 * Test and benchmark fixtures for policy snapshots: compile a policy with the real engine and make it the tenant's
 * active snapshot the way the control plane's PolicySnapshotWriter does (per-tenant advisory lock, next version,
 * previous one deactivated, one transaction), then announce it on `CHANGE_CHANNELS.snapshots`. Test-only.
 */
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import type { Prisma, SystemPrismaClient } from '@portcullis/data/db';
import type { Redis } from '@portcullis/data/redis';
import { compile, serializeSnapshot } from '@portcullis/policy/engine';

export interface FixturePolicy {
  readonly defaultEffect: 'allow' | 'deny';
  readonly rules?: readonly PolicyRuleSource[];
  /** Agent clients the rules name (the compiler refuses unknown ones). */
  readonly agentClientIds?: readonly string[];
}

export interface WrittenFixtureSnapshot {
  readonly version: number;
  readonly checksum: string;
  /** `performance.now()` right after the transaction committed. */
  readonly committedAt: number;
}

/** Everyone may do everything: for tests about something other than policy. */
export const ALLOW_ALL: FixturePolicy = { defaultEffect: 'allow' };

export async function writeActiveSnapshot(
  db: SystemPrismaClient,
  tenantId: string,
  policy: FixturePolicy,
  options: { readonly publish?: Redis } = {},
): Promise<WrittenFixtureSnapshot> {
  const written = await db.$transaction(async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`pcs:policy-snapshots:${tenantId}`}, 0))`;
    const latest = await tx.policySnapshot.findFirst({ where: { tenantId }, orderBy: { version: 'desc' }, select: { version: true } });
    const version = (latest?.version ?? 0) + 1;
    const source = {
      tenantId,
      version,
      defaultEffect: policy.defaultEffect,
      rules: [...(policy.rules ?? [])],
      directory: { members: [], groups: [], agentClients: (policy.agentClientIds ?? []).map((id) => ({ id })) },
      upstreams: [],
    };
    const compiled = compile(source);
    if (!compiled.ok) throw new Error(`fixture policy does not compile: ${JSON.stringify(compiled.errors)}`);
    await tx.policySnapshot.updateMany({ where: { tenantId, active: true }, data: { active: false } });
    await tx.policySnapshot.create({
      data: {
        tenantId,
        version,
        irVersion: compiled.snapshot.irVersion,
        checksum: compiled.snapshot.checksum,
        ir: JSON.parse(serializeSnapshot(compiled.snapshot)) as Prisma.InputJsonValue,
        source: source as unknown as Prisma.InputJsonValue,
        active: true,
        comment: 'test fixture',
      },
    });
    return { version, checksum: compiled.snapshot.checksum };
  });
  const committedAt = performance.now();
  if (options.publish) await options.publish.publish(CHANGE_CHANNELS.snapshots, tenantId);
  return { ...written, committedAt };
}
