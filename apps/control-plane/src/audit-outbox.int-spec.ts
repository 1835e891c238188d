import { drainAuditOutbox, PostgresAuditEventStore } from '@portcullis/audit/core';
import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { createPrismaClient, type PortcullisPrismaClient } from '@portcullis/data/db';
import { testContext } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlaneHarness } from './testing/control-plane-harness';

// Control-plane audit events go through a transactional outbox (ADR 0010, decision 8): written with the change,
// enqueued after the commit, and stored by the audit worker from the outbox when the enqueue did not happen.
let cp: ControlPlaneHarness;
let app: PortcullisPrismaClient;
let store: PostgresAuditEventStore;

beforeAll(async () => {
  cp = await startControlPlane();
  app = createPrismaClient({ url: testContext().databaseUrl });
  store = new PostgresAuditEventStore(app);
});
afterAll(async () => {
  await app?.$disconnect();
  await cp?.close();
});

const outboxOf = async (tenantId: string) =>
  (await cp.system.auditOutbox.findMany({ where: { tenantId }, orderBy: { createdAt: 'asc' } })).map((row) => ({ id: row.id, event: JSON.parse(row.event) as AuditEventV1 }));

describe('control-plane audit events through the outbox', () => {
  it('with Redis up: the event is enqueued and its outbox row is gone', async () => {
    const tenant = await cp.tenant();
    const admin = await cp.member(tenant.id, 'admin');
    const res = await cp.request('POST', `/api/v1/tenants/${tenant.id}/groups`, { token: admin.token, body: { externalId: 'sre', name: 'SRE' } });
    expect(res.status, res.text).toBe(201);
    const [event] = await cp.eventsAtLeast(tenant.id, 1);
    expect(event).toMatchObject({ kind: 'control_plane', method: 'group.create', targetId: res.json['id'] });
    expect(await outboxOf(tenant.id)).toEqual([]);
  });

  it('with Redis away: the change stands, its event waits in the outbox and reaches the trail from there, once', async () => {
    const tenant = await cp.tenant();
    const admin = await cp.member(tenant.id, 'admin');
    const cut = await startControlPlane({ REDIS_URL: 'redis://127.0.0.1:1', CONTROL_PLANE_REDIS_WRITE_TIMEOUT_MS: '200' });
    let groupId: unknown;
    try {
      const created = await cut.request('POST', `/api/v1/tenants/${tenant.id}/groups`, { token: admin.token, body: { externalId: 'sre', name: 'SRE' } });
      expect(created.status, created.text).toBe(201);
      groupId = created.json['id'];
      // A change refused in its transaction leaves no event behind: it did not happen.
      const refused = await cut.request('POST', `/api/v1/tenants/${tenant.id}/groups`, { token: admin.token, body: { externalId: 'sre', name: 'Again' } });
      expect(refused.status, refused.text).toBe(409);
    } finally {
      await cut.close();
    }
    const kept = await outboxOf(tenant.id);
    expect(kept.map((row) => row.event)).toEqual([
      expect.objectContaining({ tenantId: tenant.id, kind: 'control_plane', method: 'group.create', targetType: 'group', targetId: groupId, actorUserId: admin.id }),
    ]);
    expect(kept[0]?.id).toBe(kept[0]?.event.eventId);

    // Too young for the drain's grace: left for the control plane that wrote it. (Drains here take only their own
    // tenant's rows: other specs share the database.)
    expect(await drainAuditOutbox(cp.system, store, { olderThanMs: 60_000, tenantId: tenant.id })).toMatchObject({ stored: 0 });
    expect(await outboxOf(tenant.id)).toHaveLength(1);

    await drainAuditOutbox(cp.system, store, { olderThanMs: 0, tenantId: tenant.id });
    const stored = await cp.system.auditEvent.findMany({ where: { tenantId: tenant.id } });
    expect(stored.map((row) => ({ id: row.id, method: row.method, targetId: row.targetId }))).toEqual([{ id: kept[0]?.id, method: 'group.create', targetId: groupId }]);
    expect(await outboxOf(tenant.id)).toEqual([]);

    // Stored already (a drain that died before deleting its rows, or an enqueue that did go through): a no-op.
    await cp.system.auditOutbox.create({ data: { id: kept[0]?.id ?? '', tenantId: tenant.id, event: JSON.stringify(kept[0]?.event) } });
    await drainAuditOutbox(cp.system, store, { olderThanMs: 0, tenantId: tenant.id });
    expect(await cp.system.auditEvent.count({ where: { tenantId: tenant.id } })).toBe(1);
    expect(await outboxOf(tenant.id)).toEqual([]);
  });

  it('leaves a row that holds no valid event in place, and stores the rows behind it', async () => {
    const tenant = await cp.tenant();
    const admin = await cp.member(tenant.id, 'admin');
    const cut = await startControlPlane({ REDIS_URL: 'redis://127.0.0.1:1', CONTROL_PLANE_REDIS_WRITE_TIMEOUT_MS: '200' });
    try {
      const created = await cut.request('POST', `/api/v1/tenants/${tenant.id}/groups`, { token: admin.token, body: { externalId: 'ops', name: 'Ops' } });
      expect(created.status, created.text).toBe(201);
    } finally {
      await cut.close();
    }
    const broken = '0b7d1a6e-3c1f-4a7e-9d2b-5f8e6c4a2b10';
    await cp.system.auditOutbox.create({ data: { id: broken, tenantId: tenant.id, event: '{"v":1,"eventId":"not this row"}', createdAt: new Date(0) } });
    const first = await drainAuditOutbox(cp.system, store, { olderThanMs: 0, limit: 1, tenantId: tenant.id });
    expect(first).toEqual({ stored: 0, invalid: [broken] });
    const second = await drainAuditOutbox(cp.system, store, { olderThanMs: 0, limit: 1, exclude: [broken], tenantId: tenant.id });
    expect(second).toEqual({ stored: 1, invalid: [] });
    expect((await outboxOf(tenant.id)).map((row) => row.id)).toEqual([broken]);
    expect(await cp.system.auditEvent.count({ where: { tenantId: tenant.id, method: 'group.create' } })).toBe(1);
    await cp.system.auditOutbox.delete({ where: { id: broken } });
  });
});
