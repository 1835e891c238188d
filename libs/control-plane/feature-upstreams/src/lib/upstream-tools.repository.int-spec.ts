import { createPrismaClient, createSystemPrismaClient, withTenant } from '@portcullis/data/db';
import { newId } from '@portcullis/shared/util-ids';
import { createTestTenant, present, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamToolsRepository } from './upstream-tools.repository';

const ctx = testContext();
const db = createPrismaClient({ url: ctx.databaseUrl });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
const repository = new UpstreamToolsRepository();
let a: TestTenant;
let b: TestTenant;

async function upstreamOf(tenant: TestTenant): Promise<string> {
  const suffix = newId().slice(-8).replace(/-/g, '');
  const row = await system.upstream.create({
    data: { tenantId: tenant.id, name: `up-${suffix}`, toolPrefix: `p${suffix}`, transport: 'streamable_http', url: 'https://example.test/mcp' },
    select: { id: true },
  });
  return row.id;
}

const definition = { name: 'forecast', description: 'Weather' };

beforeAll(async () => {
  a = await createTestTenant(system);
  b = await createTestTenant(system);
});
afterAll(async () => {
  await db.$disconnect();
  await system.$disconnect();
});

describe('UpstreamToolsRepository', () => {
  it('records definitions, approves only the reviewed one (compare-and-set), and marks removals', async () => {
    const upstreamId = await upstreamOf(a);
    const id = newId();
    const now = new Date();
    await withTenant(db, a.id, (tx) => repository.createMany(a.id, tx, upstreamId, [{ id, kind: 'tool', name: 'forecast', definition, contentHash: 'h1', approved: false, approvedById: null }], now));
    const row = await withTenant(db, a.id, (tx) => repository.find(a.id, tx, upstreamId, id));
    expect(row).toMatchObject({ status: 'pending', approvedHash: null, contentHash: 'h1' });

    // A newer test connection stored another definition after the admin read h1: approving h1 must fail.
    await withTenant(db, a.id, (tx) => repository.recordSeen(a.id, tx, id, { definition: { ...definition, description: 'Weather v2' }, contentHash: 'h2', matchesApproved: false, blocked: false }, now));
    expect(await withTenant(db, a.id, (tx) => repository.approve(a.id, tx, { id, contentHash: 'h1', definition }, newId(), now))).toBe(false);
    const current = await withTenant(db, a.id, (tx) => repository.find(a.id, tx, upstreamId, id));
    expect(await withTenant(db, a.id, (tx) => repository.approve(a.id, tx, present(current, 'the stored tool'), newId(), now))).toBe(true);
    expect(await withTenant(db, a.id, (tx) => repository.find(a.id, tx, upstreamId, id))).toMatchObject({
      status: 'approved',
      approvedHash: 'h2',
      approvedDefinition: { name: 'forecast', description: 'Weather v2' },
    });

    await withTenant(db, a.id, (tx) => repository.markRemoved(a.id, tx, [id], now));
    expect((await withTenant(db, a.id, (tx) => repository.find(a.id, tx, upstreamId, id)))?.removedAt).toBeInstanceOf(Date);
  });

  it('must not read, list, approve, change or remove another tenant’s tools', async () => {
    const upstreamId = await upstreamOf(b);
    const id = newId();
    await withTenant(db, b.id, (tx) => repository.createMany(b.id, tx, upstreamId, [{ id, kind: 'tool', name: 'forecast', definition, contentHash: 'hb', approved: false, approvedById: null }], new Date()));
    const now = new Date();
    expect(await withTenant(db, a.id, (tx) => repository.find(a.id, tx, upstreamId, id))).toBeNull();
    expect(await withTenant(db, a.id, (tx) => repository.list(a.id, tx, upstreamId))).toEqual([]);
    expect(await withTenant(db, a.id, (tx) => repository.approve(a.id, tx, { id, contentHash: 'hb', definition }, newId(), now))).toBe(false);
    await withTenant(db, a.id, (tx) => repository.recordSeen(a.id, tx, id, { definition: { hijacked: true }, contentHash: 'hx', matchesApproved: true, blocked: false }, now));
    await withTenant(db, a.id, (tx) => repository.markRemoved(a.id, tx, [id], now));
    await withTenant(db, a.id, (tx) => repository.recordSeenUnchanged(a.id, tx, [id], new Date(0)));
    expect(await withTenant(db, a.id, (tx) => repository.connectionSecrets(a.id, tx, upstreamId))).toBeNull();
    // RLS as the second wall: B's id in A's context sees nothing either.
    expect(await withTenant(db, a.id, (tx) => repository.find(b.id, tx, upstreamId, id))).toBeNull();
    const still = await system.upstreamTool.findUniqueOrThrow({ where: { id }, select: { status: true, contentHash: true, removedAt: true, approvedHash: true, lastSeenAt: true } });
    expect(still).toMatchObject({ status: 'pending', contentHash: 'hb', removedAt: null, approvedHash: null });
    expect(still.lastSeenAt.getTime()).toBeGreaterThan(0);
  });
});
