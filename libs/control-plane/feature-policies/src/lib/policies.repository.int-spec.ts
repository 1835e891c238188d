import { createPrismaClient, createSystemPrismaClient, withTenant } from '@portcullis/data/db';
import { newId } from '@portcullis/shared/util-ids';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PoliciesRepository } from './policies.repository';

const ctx = testContext();
const db = createPrismaClient({ url: ctx.databaseUrl });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
const repository = new PoliciesRepository();
let a: TestTenant;
let b: TestTenant;

const rule = { id: 'r-1', subjects: [{ type: 'authenticated' as const }], targets: [{ kind: 'tool' as const, upstream: '*', name: '*' }], effect: 'allow' as const };

beforeAll(async () => {
  a = await createTestTenant(system);
  b = await createTestTenant(system);
});
afterAll(async () => {
  await db.$disconnect();
  await system.$disconnect();
});

describe('PoliciesRepository', () => {
  it('must not read or update another tenant’s policy, rules or snapshots', async () => {
    const policyOfB = await withTenant(db, b.id, async (tx) => {
      const policy = await repository.createPolicy(b.id, tx, { defaultEffect: 'allow', description: null, actorId: newId() });
      await repository.replaceRules(b.id, tx, policy.id, [rule]);
      await repository.insertActiveSnapshot(b.id, tx, {
        version: 1,
        irVersion: 1,
        checksum: 'c'.repeat(64),
        ir: {},
        source: { rules: [rule] },
        comment: 'test',
        createdById: null,
      });
      await tx.group.create({ data: { tenantId: b.id, externalId: 'b-only', name: 'B' } });
      return policy;
    });

    await withTenant(db, a.id, async (tx) => {
      expect(await repository.findPolicy(a.id, tx)).toBeNull();
      expect(await repository.rules(a.id, tx, policyOfB.id)).toEqual([]);
      expect(await repository.updatePolicyIfVersion(a.id, tx, policyOfB.id, 1, { defaultEffect: 'deny', description: null, actorId: a.id })).toBeNull();
      expect(await repository.updatePolicy(a.id, tx, policyOfB.id, { defaultEffect: 'deny', actorId: a.id })).toBeNull();
      await repository.replaceRules(a.id, tx, policyOfB.id, []);
      expect(await repository.latestVersion(a.id, tx)).toBe(0);
      expect(await repository.active(a.id, tx)).toBeNull();
      expect(await repository.snapshotSource(a.id, tx, 1)).toBeNull();
      expect(await repository.listSnapshots(a.id, tx, { after: undefined, limit: 50 })).toEqual([]);
      await repository.deactivateAll(a.id, tx);
      expect((await repository.directory(a.id, tx)).groups).toEqual([]);
    });

    const stored = await system.policy.findUniqueOrThrow({ where: { id: policyOfB.id }, select: { defaultEffect: true, version: true } });
    expect(stored).toEqual({ defaultEffect: 'allow', version: 1 });
    expect(await system.policyRule.count({ where: { policyId: policyOfB.id } })).toBe(1);
    expect(await system.policySnapshot.findFirst({ where: { tenantId: b.id }, select: { active: true } })).toEqual({ active: true });
  });
});
