import { verifyChain } from '@portcullis/audit/chain';
import { parseAuditEvent } from '@portcullis/contracts/jobs';
import { createPrismaClient, createSystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext } from '@portcullis/shared/util-testing';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditStoreError } from './audit-event.store';
import { AUDIT_EVENT_COLUMNS, linkFromRow, type AuditEventRow } from './audit-row';
import { PostgresAuditEventStore } from './postgres-audit-event.store';
import { sampleAuditEvent } from './testing';

const ctx = testContext();
const app = createPrismaClient({ url: ctx.databaseUrl, applicationName: 'audit-store-int' });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
const store = new PostgresAuditEventStore(app);

afterAll(async () => {
  await Promise.all([app.$disconnect(), system.$disconnect()]);
});

async function chainOf(tenant: string) {
  const rows = await system.$queryRawUnsafe<AuditEventRow[]>(
    `SELECT ${AUDIT_EVENT_COLUMNS} FROM audit_events WHERE tenant_id = $1::uuid ORDER BY seq`,
    tenant,
  );
  return rows.map(linkFromRow);
}

/** A live API key of a fresh agent client of the tenant. */
async function apiKeyOf(tenant: string): Promise<string> {
  const agent = await system.agentClient.create({ data: { tenantId: tenant, name: `agent-${randomBytes(4).toString('hex')}` } });
  const key = await system.apiKey.create({
    data: { tenantId: tenant, name: 'key', keyHash: randomBytes(32).toString('hex'), displayPrefix: 'pcs_test', agentClientId: agent.id },
  });
  return key.id;
}

async function lastUsedAt(key: string): Promise<string | null> {
  const row = await system.apiKey.findUnique({ where: { id: key }, select: { lastUsedAt: true } });
  return row?.lastUsedAt?.toISOString() ?? null;
}

describe('PostgresAuditEventStore (real Postgres, application role)', () => {
  it('stores a mixed-tenant batch, each tenant chained in order, every field round-tripping into the hash', async () => {
    const [a, b] = [await createTestTenant(system), await createTestTenant(system)];
    const events = Array.from({ length: 30 }, (_, i) =>
      sampleAuditEvent(i % 3 === 0 ? b.id : a.id, {
        arguments: i === 4 ? null : { n: i, nested: { z: [1, 'two', null], a: 1.5 }, unicode: 'é✓' },
        kind: i === 7 ? 'control_plane' : 'mcp',
        decision: i === 8 ? null : 'deny',
        occurredAt: '2026-11-22T10:00:00.123456+01:00',
      }),
    );
    expect(await store.insert(events)).toEqual({ inserted: 30, duplicates: 0 });
    const chainA = await chainOf(a.id);
    const chainB = await chainOf(b.id);
    expect(chainA.map((l) => l.id)).toEqual(events.filter((e) => e.tenantId === a.id).map((e) => e.eventId));
    expect(chainB).toHaveLength(10);
    expect(verifyChain(chainA)).toMatchObject({ ok: true, checked: 20 });
    expect(verifyChain(chainB)).toMatchObject({ ok: true, checked: 10 });
  });

  it('is idempotent on event id across and within batches, and continues the chain', async () => {
    const tenant = await createTestTenant(system);
    const first = Array.from({ length: 10 }, () => sampleAuditEvent(tenant.id));
    await store.insert(first);
    const second = [...first.slice(5), ...Array.from({ length: 5 }, () => sampleAuditEvent(tenant.id))];
    expect(await store.insert([...second, first[9] as (typeof first)[number]])).toEqual({
      inserted: 5,
      duplicates: 6,
    });
    const chain = await chainOf(tenant.id);
    expect(chain.map((l) => l.seq)).toEqual(Array.from({ length: 15 }, (_, i) => String(i + 1)));
    expect(verifyChain(chain)).toMatchObject({ ok: true, checked: 15 });
  });

  it('serialises concurrent batches of one tenant on its chain head', async () => {
    const tenant = await createTestTenant(system);
    const batches = Array.from({ length: 8 }, () =>
      Array.from({ length: 50 }, () => sampleAuditEvent(tenant.id)),
    );
    await Promise.all(batches.map((batch) => store.insert(batch)));
    const chain = await chainOf(tenant.id);
    expect(chain).toHaveLength(400);
    expect(verifyChain(chain)).toMatchObject({ ok: true, checked: 400 });
  });

  it('rolls a failing batch back entirely (no half-written chain)', async () => {
    const tenant = await createTestTenant(system);
    const good = sampleAuditEvent(tenant.id);
    const bad = sampleAuditEvent(tenant.id, { snapshotVersion: 2 ** 40 }); // out of int range
    await expect(store.insert([good, bad])).rejects.toThrow();
    expect(await chainOf(tenant.id)).toHaveLength(0);
    await store.insert([good]);
    expect(verifyChain(await chainOf(tenant.id))).toMatchObject({ ok: true, checked: 1 });
  });

  it("names the failed tenant's events (not transient) and still stores the other tenants' events", async () => {
    const [a, b] = [await createTestTenant(system), await createTestTenant(system)];
    const good = Array.from({ length: 3 }, () => sampleAuditEvent(a.id));
    const bad = [sampleAuditEvent(b.id), sampleAuditEvent(b.id, { latencyMs: 2 ** 40 })]; // out of int range
    const error = await store.insert([good[0], bad[0], good[1], bad[1], good[2]] as typeof good).catch((e) => e);
    expect(error).toBeInstanceOf(AuditStoreError);
    expect(error).toMatchObject({ transient: false, failed: bad });
    expect((error as Error).message).toMatch(/^2 of 5 audit event\(s\) not stored: .*out of range/);
    expect((await chainOf(a.id)).map((l) => l.id)).toEqual(good.map((e) => e.eventId));
    expect(await chainOf(b.id)).toHaveLength(0);
  });

  it('stores events whose producer left NUL or lone surrogates in them, as U+FFFD, on a chain that verifies', async () => {
    const tenant = await createTestTenant(system);
    const event = sampleAuditEvent(tenant.id, {
      reason: 'before\u0000after',
      tool: 'files__read\ud800',
      arguments: { 'key\udc00': ['x\u0000y', { deep: 'z\ud83d' }], plain: 'ok' },
    });
    expect(await store.insert([event])).toEqual({ inserted: 1, duplicates: 0 });
    const [row] = await system.$queryRawUnsafe<AuditEventRow[]>(`SELECT ${AUDIT_EVENT_COLUMNS} FROM audit_events WHERE id = $1::uuid`, event.eventId);
    expect(row).toMatchObject({
      reason: 'before\ufffdafter',
      tool: 'files__read\ufffd',
      arguments: { 'key\ufffd': ['x\ufffdy', { deep: 'z\ufffd' }], plain: 'ok' },
    });
    expect(verifyChain(await chainOf(tenant.id))).toMatchObject({ ok: true, checked: 1 });
  });

  it('stores an event whose producer wrote its ids in upper case on a chain that verifies, and finds it again as a duplicate', async () => {
    const tenant = await createTestTenant(system);
    const sent = sampleAuditEvent(tenant.id, { approvalId: '0190F0A1-B2C3-7D4E-8F90-A1B2C3D4E5F6', upstreamId: 'ABCDEF01-2345-4678-89AB-CDEF01234567' });
    // As the worker takes a job: validated by the contract first.
    const shouting = { ...sent, eventId: sent.eventId.toUpperCase(), tenantId: sent.tenantId.toUpperCase() };
    const event = parseAuditEvent(JSON.parse(JSON.stringify(shouting)));
    expect(await store.insert([event])).toEqual({ inserted: 1, duplicates: 0 });
    expect(await store.insert([parseAuditEvent(JSON.parse(JSON.stringify(shouting)))])).toEqual({ inserted: 0, duplicates: 1 });
    expect(verifyChain(await chainOf(tenant.id))).toMatchObject({ ok: true, checked: 1 });
  });

  it("sets each named key's last_used_at to its latest event in the batch; only the gateway's (mcp) events count", async () => {
    const tenant = await createTestTenant(system);
    const [busy, quiet, named, idle] = [await apiKeyOf(tenant.id), await apiKeyOf(tenant.id), await apiKeyOf(tenant.id), await apiKeyOf(tenant.id)];
    const at = (minute: number) => `2026-11-22T10:${String(minute).padStart(2, '0')}:00.000Z`;
    await store.insert([
      sampleAuditEvent(tenant.id, { apiKeyId: busy, occurredAt: at(5) }),
      sampleAuditEvent(tenant.id, { apiKeyId: busy, occurredAt: '2026-11-22T11:07:00+01:00' }), // 10:07 UTC, the latest
      sampleAuditEvent(tenant.id, { apiKeyId: busy, occurredAt: at(6) }),
      sampleAuditEvent(tenant.id, { apiKeyId: quiet, occurredAt: at(1) }),
      // A control-plane event naming a key is no use of it.
      sampleAuditEvent(tenant.id, { apiKeyId: named, occurredAt: at(9), kind: 'control_plane' }),
      sampleAuditEvent(tenant.id, { occurredAt: at(9) }),
    ]);
    expect(await lastUsedAt(busy)).toBe(at(7));
    expect(await lastUsedAt(quiet)).toBe(at(1));
    expect(await lastUsedAt(named)).toBeNull();
    expect(await lastUsedAt(idle)).toBeNull();
  });

  it('moves last_used_at only forward, and only by a minute or more', async () => {
    const tenant = await createTestTenant(system);
    const key = await apiKeyOf(tenant.id);
    const at = (time: string) => `2026-11-22T10:${time}.000Z`;
    const used = async (time: string) => {
      await store.insert([sampleAuditEvent(tenant.id, { apiKeyId: key, occurredAt: at(time) })]);
      return lastUsedAt(key);
    };
    expect(await used('10:00')).toBe(at('10:00'));
    expect(await used('05:00')).toBe(at('10:00')); // an older batch (a spool replayed late): not backwards
    expect(await used('10:59')).toBe(at('10:00')); // within the minute: not rewritten
    expect(await used('11:00')).toBe(at('11:00'));
    expect(verifyChain(await chainOf(tenant.id))).toMatchObject({ ok: true, checked: 4 });
  });

  it("touches no other tenant's key, and stores events naming a deleted key", async () => {
    const [a, b] = [await createTestTenant(system), await createTestTenant(system)];
    const [ours, deleted, theirs] = [await apiKeyOf(a.id), await apiKeyOf(a.id), await apiKeyOf(b.id)];
    await system.apiKey.delete({ where: { id: deleted } });
    const occurredAt = '2026-11-22T10:00:00.000Z';
    const events = [ours, deleted, theirs].map((apiKeyId) => sampleAuditEvent(a.id, { apiKeyId, occurredAt }));
    expect(await store.insert(events)).toEqual({ inserted: 3, duplicates: 0 });
    expect((await chainOf(a.id)).map((link) => link.apiKeyId)).toEqual([ours, deleted, theirs]);
    expect(await lastUsedAt(ours)).toBe(occurredAt);
    expect(await lastUsedAt(theirs)).toBeNull();
  });

  it('leaves a key whose row another transaction holds (the control plane changing it) for a later batch, without waiting', async () => {
    const tenant = await createTestTenant(system);
    const [held, free] = [await apiKeyOf(tenant.id), await apiKeyOf(tenant.id)];
    const occurredAt = '2026-11-22T10:00:00.000Z';
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked: () => void = () => undefined;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const revoking = system.$transaction(
      async (tx) => {
        await tx.apiKey.update({ where: { id: held }, data: { name: 'renamed' } });
        locked();
        await released;
      },
      { timeout: 20_000 },
    );
    await isLocked;
    try {
      const stored = await store.insert([held, free].map((apiKeyId) => sampleAuditEvent(tenant.id, { apiKeyId, occurredAt })));
      expect(stored).toEqual({ inserted: 2, duplicates: 0 });
    } finally {
      release();
      await revoking;
    }
    expect(await lastUsedAt(free)).toBe(occurredAt);
    expect(await lastUsedAt(held)).toBeNull();
    await store.insert([sampleAuditEvent(tenant.id, { apiKeyId: held, occurredAt })]);
    expect(await lastUsedAt(held)).toBe(occurredAt);
  });

  it('calls an unreachable database transient', async () => {
    const nowhere = createPrismaClient({ url: 'postgresql://portcullis_app@127.0.0.1:1/none', poolMax: 1 });
    try {
      const error = await new PostgresAuditEventStore(nowhere)
        .insert([sampleAuditEvent('019a0000-0000-7000-8000-0000000000aa')])
        .catch((e) => e);
      expect(error).toBeInstanceOf(AuditStoreError);
      expect(error).toMatchObject({ transient: true });
    } finally {
      await nowhere.$disconnect();
    }
  });
});
