/**
 * A session does not outlive its tenant's suspension, nor its agent client's disabling: once every credential of its
 * principal is refused, the gateway ends it (record, upstream sessions, streams) at its next load of the tenants or
 * keys, so the old id names nothing when the tenant or the client is active again (found by review: it was served
 * again, upstream sessions and all).
 */
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, messageOf, postInitialize, postInSession, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await db?.$disconnect();
});

async function openSession(key: string): Promise<string> {
  await gateway.dataPlane.refreshAll(); // the new key
  const init = await postInitialize(gateway, tenant.slug, key);
  await init.text();
  expect(init.status).toBe(200);
  const sessionId = init.headers.get('mcp-session-id') ?? '';
  expect((await postInSession(gateway, tenant.slug, key, sessionId, { id: 2, method: 'ping' })).status).toBe(200);
  return sessionId;
}

describe('a session across its tenant suspension', () => {
  it('is not served again once the tenant is reactivated', async () => {
    const { key } = await createAgentWithKey(db, tenant.id, 'suspension-agent');
    const sessionId = await openSession(key);

    await db.tenant.update({ where: { id: tenant.id }, data: { status: 'suspended' } as never });
    await gateway.dataPlane.refreshAll();
    expect((await postInSession(gateway, tenant.slug, key, sessionId, { id: 3, method: 'ping' })).status).toBe(404);

    await db.tenant.update({ where: { id: tenant.id }, data: { status: 'active' } as never });
    await gateway.dataPlane.refreshAll();
    const after = await postInSession(gateway, tenant.slug, key, sessionId, { id: 4, method: 'ping' });
    // The old session id names nothing any more: a new session must be initialised.
    expect(after.status).toBe(404);
    expect(await messageOf(after)).toMatchObject({ error: { message: 'Session not found' } });
  });
});

describe('a session across its agent client being disabled', () => {
  it('is not served again once the agent client is re-enabled', async () => {
    const { key, agentId } = await createAgentWithKey(db, tenant.id, 'disabled-agent');
    const sessionId = await openSession(key);
    // Another agent client of the tenant keeps its session throughout.
    const other = await createAgentWithKey(db, tenant.id, 'other-agent');
    const otherSession = await openSession(other.key);

    await db.agentClient.update({ where: { id: agentId }, data: { disabled: true } as never });
    await gateway.dataPlane.refreshAll();
    expect((await postInSession(gateway, tenant.slug, key, sessionId, { id: 3, method: 'ping' })).status).toBe(401);

    await db.agentClient.update({ where: { id: agentId }, data: { disabled: false } as never });
    await gateway.dataPlane.refreshAll();
    const after = await postInSession(gateway, tenant.slug, key, sessionId, { id: 4, method: 'ping' });
    expect(after.status).toBe(404);
    expect((await postInSession(gateway, tenant.slug, other.key, otherSession, { id: 5, method: 'ping' })).status).toBe(200);
  });
});
