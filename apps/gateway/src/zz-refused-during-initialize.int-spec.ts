/**
 * A session whose initialize is still connecting its upstreams when its agent client is disabled (and the gateway's
 * reload ends the principal's sessions) must not survive that: once the client is enabled again, the id handed out by
 * the straddling initialize must name nothing, as for a session opened before the disabling
 * (session-refused-principal.int-spec.ts).
 */
import type { Server } from 'node:http';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, initializeResult, postInitialize, postInSession, startJsonUpstream, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let upstream: { server: Server; url: string };

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  upstream = await startJsonUpstream({
    sessionId: 'slow-init',
    onRequest: (request) => {
      if (request.message.method === 'initialize') setTimeout(() => request.answer({ result: initializeResult(request, 'slow') }), 2_000);
      else request.answer({ result: {} });
    },
  });
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'slow', toolPrefix: 'slow', transport: 'streamable_http', url: upstream.url } as never });
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  upstream?.server.closeAllConnections();
  upstream?.server.close();
  await db?.$disconnect();
});

describe('a session initialized while its agent client is being disabled', () => {
  it('is not served once the agent client is enabled again', async () => {
    const { key, agentId } = await createAgentWithKey(db, tenant.id, 'straddling-agent');
    await gateway.dataPlane.refreshAll();
    const initializing = postInitialize(gateway, tenant.slug, key);
    await new Promise((resolve) => setTimeout(resolve, 500));
    // Disabled while the upstream is still answering initialize: this reload ends the principal's sessions.
    await db.agentClient.update({ where: { id: agentId }, data: { disabled: true } as never });
    await gateway.dataPlane.refreshAll();
    const init = await initializing;
    await init.text();
    const sessionId = init.headers.get('mcp-session-id');

    await db.agentClient.update({ where: { id: agentId }, data: { disabled: false } as never });
    await gateway.dataPlane.refreshAll();
    // Either no session was handed out to the disabled client, or the one handed out names nothing now (404).
    const after = sessionId === null ? undefined : await postInSession(gateway, tenant.slug, key, sessionId, { id: 4, method: 'ping' });
    expect(after?.status ?? 404).toBe(404);
  }, 30_000);
});

describe('a session whose agent client is disabled while no gateway replica runs (a full restart)', () => {
  it('is not served once the agent client is enabled again', async () => {
    const { key, agentId } = await createAgentWithKey(db, tenant.id, 'restart-agent');
    await gateway.dataPlane.refreshAll();
    const init = await postInitialize(gateway, tenant.slug, key);
    await init.text();
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id') ?? '';

    await gateway.close();
    await db.agentClient.update({ where: { id: agentId }, data: { disabled: true } as never });
    gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
    expect((await postInSession(gateway, tenant.slug, key, sessionId, { id: 3, method: 'ping' })).status).toBe(401);

    await db.agentClient.update({ where: { id: agentId }, data: { disabled: false } as never });
    await gateway.dataPlane.refreshAll();
    expect((await postInSession(gateway, tenant.slug, key, sessionId, { id: 4, method: 'ping' })).status).toBe(404);
  }, 40_000);
});

