import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { createPrismaClient, createSystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext } from '@portcullis/shared/util-testing';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditStoreError, type AuditEventStore } from './audit-event.store';
import { drainAuditOutbox } from './audit-outbox';
import { PostgresAuditEventStore } from './postgres-audit-event.store';
import { sampleAuditEvent } from './testing';

// The outbox drain against the real store (control-plane flows through the outbox: apps/control-plane's
// audit-outbox.int-spec.ts). Drains here take only their own tenant's rows: other specs share the database.
const ctx = testContext();
const app = createPrismaClient({ url: ctx.databaseUrl, applicationName: 'audit-outbox-int' });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
const store = new PostgresAuditEventStore(app);
afterAll(async () => {
  await Promise.all([app.$disconnect(), system.$disconnect()]);
});

async function stage(tenantId: string, events: readonly AuditEventV1[]): Promise<void> {
  for (const [i, event] of events.entries()) {
    await system.auditOutbox.create({ data: { id: event.eventId, tenantId, event: JSON.stringify(event), createdAt: new Date(i + 1) } });
  }
}
const outboxIds = async (tenantId: string) =>
  (await system.auditOutbox.findMany({ where: { tenantId }, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }], select: { id: true } })).map((row) => row.id);
const storedIds = async (tenantId: string) =>
  (await system.auditEvent.findMany({ where: { tenantId }, orderBy: { seq: 'asc' }, select: { id: true } })).map((row) => row.id);

/**
 * The real store, except that it hands Postgres `poison` with a year-0000 time (what the contract let through before
 * it checked the range): Postgres refuses it, and the store fails that tenant's whole transaction, naming every event
 * of it, not transient — as it does for any event it cannot write.
 */
function storeRefusing(poison: string): AuditEventStore & { calls: number } {
  return {
    calls: 0,
    insert(events) {
      this.calls += 1;
      return store.insert(events.map((e) => (e.eventId === poison ? { ...e, occurredAt: '0000-01-01T00:00:00Z' } : e)));
    },
  };
}

describe('audit outbox drain: a refused event holds back no other event of its tenant', () => {
  it('stores the valid events of a tenant even when one of its events is refused (year 0000: by validation)', async () => {
    const tenant = await createTestTenant(system);
    const good = sampleAuditEvent(tenant.id, { kind: 'control_plane', method: 'group.create' });
    // Postgres refuses year 0 as out of range; the contract refuses it now, before the store.
    const poison = sampleAuditEvent(tenant.id, { kind: 'control_plane', method: 'group.delete', occurredAt: '0000-01-01T00:00:00Z' });
    await stage(tenant.id, [good, poison]);
    for (let drain = 0; drain < 3; drain += 1) await drainAuditOutbox(system, store, { olderThanMs: 0, tenantId: tenant.id });
    expect(await storedIds(tenant.id)).toEqual([good.eventId]);
    expect(await outboxIds(tenant.id)).toEqual([poison.eventId]);
  });

  it('isolates an event the store refuses: the others are stored in outbox order and their rows go; it stays, named', async () => {
    const tenant = await createTestTenant(system);
    const events = ['group.create', 'group.update', 'policy.update', 'group.delete', 'upstream.create'].map((method) =>
      sampleAuditEvent(tenant.id, { kind: 'control_plane', method }),
    );
    const poison = (events[2] as AuditEventV1).eventId;
    await stage(tenant.id, events);
    const refusing = storeRefusing(poison);

    const first = await drainAuditOutbox(system, refusing, { olderThanMs: 0, tenantId: tenant.id });
    expect(first).toEqual({ stored: 4, invalid: [poison] });
    const good = events.map((e) => e.eventId).filter((id) => id !== poison);
    expect(await storedIds(tenant.id)).toEqual(good);
    expect(await outboxIds(tenant.id)).toEqual([poison]);
    // Halves, not one insert per event: 5 events, one bad, in 1 + 2 + 2 inserts.
    expect(refusing.calls).toBeLessThanOrEqual(5);
    const chain = await system.auditEvent.findMany({ where: { tenantId: tenant.id }, orderBy: { seq: 'asc' }, select: { seq: true } });
    expect(chain.map((row) => row.seq)).toEqual([1n, 2n, 3n, 4n]);

    // The caller excludes it from then on; nothing else is left to do.
    expect(await drainAuditOutbox(system, refusing, { olderThanMs: 0, tenantId: tenant.id, exclude: first.invalid })).toEqual({ stored: 0, invalid: [] });
    await system.auditOutbox.delete({ where: { id: poison } });
  });

  it('leaves every row in place and throws when the store fails for a passing cause (the database away)', async () => {
    const tenant = await createTestTenant(system);
    const events = [sampleAuditEvent(tenant.id, { kind: 'control_plane' }), sampleAuditEvent(tenant.id, { kind: 'control_plane' })];
    await stage(tenant.id, events);
    let calls = 0;
    const away: AuditEventStore = {
      insert(batch) {
        calls += 1;
        return Promise.reject(new AuditStoreError('database unreachable', batch, true));
      },
    };
    await expect(drainAuditOutbox(system, away, { olderThanMs: 0, tenantId: tenant.id })).rejects.toThrow('database unreachable');
    expect(calls).toBe(1); // not split: splitting cannot help
    expect(await outboxIds(tenant.id)).toEqual(events.map((e) => e.eventId));
    expect(await drainAuditOutbox(system, store, { olderThanMs: 0, tenantId: tenant.id })).toEqual({ stored: 2, invalid: [] });
    expect(await storedIds(tenant.id)).toEqual(events.map((e) => e.eventId));
  });
});
