import { createPrismaClient, createSystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { runAuditCli } from './audit-cli';
import { runRetention } from './audit-tasks';
import { PostgresAuditEventStore } from './postgres-audit-event.store';
import { rehashAsVersion1 } from './tamper.testing';
import { sampleAuditEvent } from './testing';
import { verifyTenantChain } from './verify-tenant-chain';

const ctx = testContext();
const app = createPrismaClient({ url: ctx.databaseUrl });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
const store = new PostgresAuditEventStore(app);

afterAll(async () => {
  await Promise.all([app.$disconnect(), system.$disconnect()]);
});

/** Runs SQL as the database owner with triggers off for this transaction only: what an attacker with the keys does. */
async function tamper(sql: string, params: unknown[]): Promise<void> {
  const client = new pg.Client({ connectionString: ctx.adminDatabaseUrl });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL session_replication_role = replica');
    await client.query(sql, params);
    await client.query('COMMIT');
  } finally {
    await client.end();
  }
}

async function tenantWithEvents(count: number): Promise<{ tenant: TestTenant; ids: string[] }> {
  const tenant = await createTestTenant(system);
  const events = Array.from({ length: count }, (_, i) => sampleAuditEvent(tenant.id, { arguments: { i } }));
  await store.insert(events);
  return { tenant, ids: events.map((e) => e.eventId) };
}

async function cli(...argv: string[]): Promise<{ code: number; text: string }> {
  const lines: string[] = [];
  const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
  const code = await runAuditCli(argv, { DATABASE_SYSTEM_URL: ctx.systemDatabaseUrl }, io);
  return { code, text: lines.join('\n') };
}

describe('audit:verify (real Postgres)', () => {
  it('reports OK with the count and last hash, streaming in pages', async () => {
    const { tenant } = await tenantWithEvents(25);
    const report = await verifyTenantChain(system, tenant.id, { batchSize: 7 });
    const head = await system.auditChainHead.findUniqueOrThrow({ where: { tenantId: tenant.id } });
    expect(report).toEqual({
      ok: true,
      tenantId: tenant.id,
      checked: 25,
      fromSeq: '0',
      fromHash: null,
      lastSeq: '25',
      lastHash: head.lastHash,
    });
    const { code, text } = await cli('verify', '--tenant', tenant.slug);
    expect(code).toBe(0);
    expect(text).toBe(`OK ${tenant.slug}: 25 event(s), last seq 25, last hash ${head.lastHash}`);
  });

  it('verifies the chain as it stood when the walk began, while new events keep arriving', async () => {
    const { tenant } = await tenantWithEvents(10);
    // A system client whose page queries let more events in first: an active tenant during a long walk.
    let pages = 0;
    const busy = new Proxy(system, {
      get(target, property, receiver) {
        if (property !== '$queryRawUnsafe') return Reflect.get(target, property, receiver);
        return async (sql: string, ...params: unknown[]) => {
          // Page queries only (the head query looks at audit_events too).
          if (sql.includes('FROM audit_events') && !sql.includes('audit_chain_heads') && pages++ < 3) await store.insert([sampleAuditEvent(tenant.id, { arguments: { late: pages } })]);
          return target.$queryRawUnsafe(sql, ...params);
        };
      },
    });
    const report = await verifyTenantChain(busy, tenant.id, { batchSize: 4 });
    expect(report).toMatchObject({ ok: true, checked: 10, lastSeq: '10' });
    expect(await verifyTenantChain(system, tenant.id)).toMatchObject({ ok: true, checked: 13 });
  });

  it('starts again from the new checkpoint when retention deletes the chain’s first rows during the walk', async () => {
    const tenant = await createTestTenant(system);
    await system.tenant.update({ where: { id: tenant.id }, data: { settings: { audit: { retentionDays: 30 } } } });
    const now = new Date('2026-11-22T12:00:00Z');
    const daysAgo = (days: number) => new Date(now.getTime() - days * 86_400_000).toISOString();
    await store.insert([60, 50, 40, 5, 2].map((days) => sampleAuditEvent(tenant.id, { occurredAt: daysAgo(days) })));
    let retentionRan = false;
    const pruning = new Proxy(system, {
      get(target, property, receiver) {
        if (property !== '$queryRawUnsafe') return Reflect.get(target, property, receiver);
        return async (sql: string, ...params: unknown[]) => {
          if (sql.includes('FROM audit_events') && !retentionRan) {
            retentionRan = true;
            await runRetention(target, { now });
          }
          return target.$queryRawUnsafe(sql, ...params);
        };
      },
    });
    expect(await verifyTenantChain(pruning, tenant.id)).toMatchObject({ ok: true, checked: 2, fromSeq: '3', lastSeq: '5' });
    expect(retentionRan).toBe(true);
  });

  it('detects a row edited directly in SQL and names the first broken link', async () => {
    const { tenant, ids } = await tenantWithEvents(12);
    await tamper(`UPDATE audit_events SET outcome = 'error' WHERE id = $1`, [ids[8]]);
    const { code, text } = await cli('verify', '--tenant', tenant.slug);
    expect(code).toBe(1);
    expect(text).toContain(`BROKEN ${tenant.slug}: first broken link at seq 9 (id ${ids[8]}): hash_mismatch`);
    // And the append-only trigger does refuse the same edit when it is not bypassed.
    await expect(
      system.$executeRawUnsafe(`UPDATE audit_events SET outcome = 'error' WHERE id = $1::uuid`, ids[1]),
    ).rejects.toThrow();
  });

  it('covers the stored time from hash version 2 on: moved or relabelled, the row breaks; version 1 rows still verify', async () => {
    const { tenant, ids } = await tenantWithEvents(3);
    const stored = await system.auditEvent.findMany({ where: { tenantId: tenant.id }, orderBy: { seq: 'asc' } });
    expect(stored.map((row) => row.hashVersion)).toEqual([2, 2, 2]);
    // The store's clock to the millisecond, as hashed.
    const micros = await system.$queryRawUnsafe<{ n: number }[]>(
      `SELECT count(*)::int AS n FROM audit_events WHERE tenant_id = $1::uuid AND date_trunc('milliseconds', recorded_at) <> recorded_at`,
      tenant.id,
    );
    expect(micros[0]?.n).toBe(0);
    expect(await verifyTenantChain(system, tenant.id)).toMatchObject({ ok: true, checked: 3 });

    await tamper(`UPDATE audit_events SET recorded_at = recorded_at - interval '1 hour' WHERE id = $1`, [ids[1]]);
    expect(await verifyTenantChain(system, tenant.id)).toMatchObject({ ok: false, checked: 1, brokenAt: { seq: '2', problem: 'hash_mismatch' } });
    await tamper(`UPDATE audit_events SET recorded_at = recorded_at + interval '1 hour', hash_version = 1 WHERE id = $1`, [ids[1]]);
    expect(await verifyTenantChain(system, tenant.id)).toMatchObject({ ok: false, checked: 1, brokenAt: { seq: '2', problem: 'hash_mismatch' } });
    await tamper(`UPDATE audit_events SET hash_version = 2 WHERE id = $1`, [ids[1]]);
    expect(await verifyTenantChain(system, tenant.id)).toMatchObject({ ok: true, checked: 3 });

    // A chain begun before version 2 (its rows rehashed as version 1, as they were stored then) goes on with version
    // 2 rows and verifies as one chain.
    const legacy = await tenantWithEvents(2);
    await rehashAsVersion1(ctx.adminDatabaseUrl, legacy.tenant.id);
    await store.insert([sampleAuditEvent(legacy.tenant.id), sampleAuditEvent(legacy.tenant.id)]);
    const versions = await system.auditEvent.findMany({ where: { tenantId: legacy.tenant.id }, orderBy: { seq: 'asc' }, select: { hashVersion: true } });
    expect(versions.map((row) => row.hashVersion)).toEqual([1, 1, 2, 2]);
    expect(await verifyTenantChain(system, legacy.tenant.id)).toMatchObject({ ok: true, checked: 4 });
  });

  it('detects a row deleted from the middle, and rows deleted from the end', async () => {
    const middle = await tenantWithEvents(10);
    await tamper(`DELETE FROM audit_events WHERE id = $1`, [middle.ids[4]]);
    expect(await verifyTenantChain(system, middle.tenant.id, { batchSize: 3 })).toMatchObject({
      ok: false,
      checked: 4,
      brokenAt: { seq: '6', id: middle.ids[5], problem: 'seq_gap' },
    });

    const tail = await tenantWithEvents(10);
    await tamper(`DELETE FROM audit_events WHERE tenant_id = $1 AND seq > 8`, [tail.tenant.id]);
    expect(await verifyTenantChain(system, tail.tenant.id)).toMatchObject({
      ok: false,
      checked: 8,
      brokenAt: { seq: '9', id: null, problem: 'head_mismatch' },
    });
  });

  it('detects a chain head removed or set back: events past the head break the chain (not an intact empty one)', async () => {
    const headless = await tenantWithEvents(5);
    await tamper('DELETE FROM audit_chain_heads WHERE tenant_id = $1', [headless.tenant.id]);
    expect(await verifyTenantChain(system, headless.tenant.id)).toMatchObject({ ok: false, checked: 0, brokenAt: { seq: '1', id: null, problem: 'head_mismatch' } });

    const behind = await tenantWithEvents(5);
    await tamper('UPDATE audit_chain_heads SET last_seq = 3 WHERE tenant_id = $1', [behind.tenant.id]);
    expect(await verifyTenantChain(system, behind.tenant.id)).toMatchObject({ ok: false, brokenAt: { seq: '4', problem: 'head_mismatch' } });
  });

  it('refuses deleting audit events the retention checkpoint does not cover, even as the system role', async () => {
    const { tenant } = await tenantWithEvents(3);
    await expect(
      system.$executeRawUnsafe(`DELETE FROM audit_events WHERE tenant_id = $1::uuid`, tenant.id),
    ).rejects.toThrow(/not covered by the retention checkpoint/);
    await expect(
      app.$transaction(async (tx) => {
        await tx.$executeRawUnsafe(`SELECT set_config('app.tenant_id', $1, true)`, tenant.id);
        await tx.$executeRawUnsafe(
          `UPDATE audit_chain_heads SET pruned_through_seq = 2 WHERE tenant_id = $1::uuid`,
          tenant.id,
        );
      }),
    ).rejects.toThrow(/only retention may move the audit checkpoint/);
  });
});
