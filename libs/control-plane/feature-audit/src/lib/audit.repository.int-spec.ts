import { PostgresAuditEventStore, requestAuditExport, sampleAuditEvent } from '@portcullis/audit/core';
import { createPrismaClient, createSystemPrismaClient, withTenant } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditRepository } from './audit.repository';

const ctx = testContext();
const db = createPrismaClient({ url: ctx.databaseUrl });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
const repository = new AuditRepository();
let a: TestTenant;
let b: TestTenant;
let exportOfB: string;

beforeAll(async () => {
  a = await createTestTenant(system);
  b = await createTestTenant(system);
  const store = new PostgresAuditEventStore(db);
  await store.insert([sampleAuditEvent(a.id, { tool: 'shared_tool' }), sampleAuditEvent(a.id, { tool: 'shared_tool' })]);
  await store.insert([sampleAuditEvent(b.id, { tool: 'shared_tool' })]);
  ({ exportId: exportOfB } = await requestAuditExport(db, b.id, { format: 'csv', filters: {}, requestedById: null }, async () => undefined));
});
afterAll(async () => {
  await db.$disconnect();
  await system.$disconnect();
});

describe('AuditRepository', () => {
  it("must not read another tenant's events, by filter or by RLS context", async () => {
    const page = await withTenant(db, a.id, (tx) => repository.events(a.id, tx, { tool: 'shared_tool' }, { after: undefined, limit: 50 }));
    expect(page.rows).toHaveLength(2);
    expect(page.rows.every((r) => r.tenant_id === a.id)).toBe(true);
    // Tenant A named in the query but B's RLS context: nothing, not B's rows and not A's.
    const crossed = await withTenant(db, b.id, (tx) => repository.events(a.id, tx, {}, { after: undefined, limit: 50 }));
    expect(crossed.rows).toEqual([]);
    expect(await withTenant(db, b.id, (tx) => repository.countEventsUpTo(a.id, tx, {}, 10))).toBe(0);
  });

  it("must not read or fail another tenant's export", async () => {
    expect(await withTenant(db, a.id, (tx) => repository.findExport(a.id, tx, exportOfB))).toBeNull();
    expect((await withTenant(db, a.id, (tx) => repository.exports(a.id, tx, { after: undefined, limit: 50 }))).records).toEqual([]);
    await withTenant(db, a.id, (tx) => repository.markNotQueued(a.id, tx, exportOfB));
    const row = await system.auditExport.findUniqueOrThrow({ where: { id: exportOfB }, select: { status: true } });
    expect(row.status).toBe('queued');
    expect(await withTenant(db, b.id, (tx) => repository.findExport(b.id, tx, exportOfB))).toMatchObject({ id: exportOfB, status: 'queued' });
  });
});
