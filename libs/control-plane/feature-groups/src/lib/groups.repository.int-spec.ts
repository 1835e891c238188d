import { createPrismaClient, createSystemPrismaClient, withTenant } from '@portcullis/data/db';
import { newId } from '@portcullis/shared/util-ids';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GroupsRepository } from './groups.repository';

const ctx = testContext();
const db = createPrismaClient({ url: ctx.databaseUrl });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
const repository = new GroupsRepository();
const firstPage = { after: undefined, limit: 200 };
let a: TestTenant;
let b: TestTenant;

async function memberOf(tenant: TestTenant): Promise<string> {
  const user = await system.user.create({ data: { id: newId(), email: `g-${newId()}@example.test`, name: 'G' }, select: { id: true } });
  await system.membership.create({ data: { tenantId: tenant.id, userId: user.id, role: 'member' } });
  return user.id;
}

beforeAll(async () => {
  a = await createTestTenant(system);
  b = await createTestTenant(system);
});
afterAll(async () => {
  await db.$disconnect();
  await system.$disconnect();
});

describe('GroupsRepository', () => {
  it('creates groups, adds and removes members, counts them, and deletes members with the group', async () => {
    const userId = await memberOf(a);
    const group = await withTenant(db, a.id, (tx) => repository.create(a.id, tx, { externalId: `eng-${newId()}`, name: 'Eng' }));
    expect(group).toMatchObject({ source: 'manual', _count: { members: 0 } });
    await withTenant(db, a.id, (tx) => repository.addMember(a.id, tx, group.id, userId));
    expect(await withTenant(db, a.id, (tx) => repository.find(a.id, tx, group.id))).toMatchObject({ _count: { members: 1 } });
    expect((await withTenant(db, a.id, (tx) => repository.listMembers(a.id, tx, group.id, firstPage))).map((m) => m.userId)).toEqual([userId]);
    expect(await withTenant(db, a.id, (tx) => repository.removeMember(a.id, tx, group.id, userId))).toBe(true);
    await withTenant(db, a.id, (tx) => repository.addMember(a.id, tx, group.id, userId));
    expect(await withTenant(db, a.id, (tx) => repository.delete(a.id, tx, group.id))).toBe(true);
    expect(await system.groupMember.count({ where: { groupId: group.id } })).toBe(0);
  });

  it('must not read, list, rename, delete or change the members of another tenant’s group', async () => {
    const userOfB = await memberOf(b);
    const userOfA = await memberOf(a);
    const ofB = await withTenant(db, b.id, (tx) => repository.create(b.id, tx, { externalId: `b-${newId()}`, name: 'B' }));
    await withTenant(db, b.id, (tx) => repository.addMember(b.id, tx, ofB.id, userOfB));

    expect(await withTenant(db, a.id, (tx) => repository.find(a.id, tx, ofB.id))).toBeNull();
    expect(await withTenant(db, a.id, (tx) => repository.findForUpdate(a.id, tx, ofB.id))).toBeNull();
    expect(await withTenant(db, a.id, (tx) => repository.findByExternalId(a.id, tx, ofB.externalId))).toBeNull();
    expect((await withTenant(db, a.id, (tx) => repository.list(a.id, tx, firstPage))).map((g) => g.id)).not.toContain(ofB.id);
    expect(await withTenant(db, a.id, (tx) => repository.listMembers(a.id, tx, ofB.id, firstPage))).toEqual([]);
    expect(await withTenant(db, a.id, (tx) => repository.findMember(a.id, tx, ofB.id, userOfB))).toBeNull();
    expect(await withTenant(db, a.id, (tx) => repository.rename(a.id, tx, ofB.id, 'hijacked'))).toBeNull();
    expect(await withTenant(db, a.id, (tx) => repository.removeMember(a.id, tx, ofB.id, userOfB))).toBe(false);
    expect(await withTenant(db, a.id, (tx) => repository.isTenantMember(a.id, tx, userOfB))).toBe(false);
    expect(await withTenant(db, a.id, (tx) => repository.delete(a.id, tx, ofB.id))).toBe(false);
    // The database itself refuses a member row pointing at another tenant's group.
    await expect(withTenant(db, a.id, (tx) => repository.addMember(a.id, tx, ofB.id, userOfA))).rejects.toThrow();

    expect(await system.group.findUniqueOrThrow({ where: { id: ofB.id }, select: { name: true } })).toEqual({ name: 'B' });
    expect(await system.groupMember.count({ where: { groupId: ofB.id } })).toBe(1);
  });
});
