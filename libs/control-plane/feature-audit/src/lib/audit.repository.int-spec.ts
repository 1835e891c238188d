import { PostgresAuditEventStore, requestAuditExport, sampleAuditEvent } from '@portcullis/audit/core';
import { createPrismaClient, createSystemPrismaClient, withTenant, type TenantTransaction } from '@portcullis/data/db';
import type { AuditEventFilters } from '@portcullis/contracts/api';
import { newId } from '@portcullis/shared/util-ids';
import { queryAuditEvents } from './audit-events.query';
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

  it('serves each filter from its index as the application role, under row-level security', async () => {
    // The API's own SQL, explained: enum equality is not leakproof, so a plain (tenant, decision, time) index would be
    // skipped under RLS; the partial decision indexes must be chosen. Sequential and bitmap scans are disabled so the
    // planner has to say which index it can use (the test tables are too small for honest costs otherwise).
    const plan = (filters: AuditEventFilters) =>
      withTenant(db, a.id, async (tx) => {
        await tx.$executeRawUnsafe('SET LOCAL enable_seqscan = off');
        await tx.$executeRawUnsafe('SET LOCAL enable_bitmapscan = off');
        const explaining = {
          $queryRawUnsafe: (sql: string, ...params: unknown[]) => tx.$queryRawUnsafe(`EXPLAIN (FORMAT JSON) ${sql}`, ...params),
        } as unknown as TenantTransaction;
        const page = await queryAuditEvents(explaining, a.id, filters, { after: undefined, limit: 50 });
        return JSON.stringify(page.rows);
      });
    const range = { from: '2026-01-01T00:00:00Z', to: '2026-12-31T00:00:00Z' };
    const cases: [AuditEventFilters, string][] = [
      [range, 'audit_events_tenant_id_occurred_at_idx'],
      [{ ...range, decision: 'deny' }, 'audit_events_tenant_id_denied_occurred_at_idx'],
      [{ ...range, decision: 'require_approval' }, 'audit_events_tenant_id_approval_occurred_at_idx'],
      [{ ...range, tool: 'shared_tool' }, 'audit_events_tenant_id_tool_occurred_at_idx'],
      [{ ...range, method: 'tools/list' }, 'audit_events_tenant_id_method_occurred_at_idx'],
      [{ ...range, outcome: 'error' }, 'audit_events_tenant_id_outcome_occurred_at_idx'],
      [{ ...range, upstreamId: newId() }, 'audit_events_tenant_id_upstream_id_occurred_at_idx'],
      [{ ...range, actorUserId: newId() }, 'audit_events_tenant_id_actor_user_id_occurred_at_idx'],
      [{ ...range, agentClientId: newId() }, 'audit_events_tenant_id_agent_client_id_occurred_at_idx'],
    ];
    for (const [filters, index] of cases) expect(await plan(filters), JSON.stringify(filters)).toContain(`"Index Name":"${index}"`);
  });
});
