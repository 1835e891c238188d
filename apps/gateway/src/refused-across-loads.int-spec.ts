/**
 * A session of a principal refused (its agent client disabled) must not be served again once the principal is accepted
 * again, as for a session open when the refusal was loaded (session-refused-principal.int-spec.ts), also where no
 * load saw the refusal happen (found by review): an initialize still connecting its upstreams when the reload ended
 * the principal's sessions (its record stored after), and a refusal made while no replica ran (a full restart).
 */
import type { Server } from 'node:http';
import { Redis } from 'ioredis';
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
    // No session is handed out to the disabled client, and the one made for it names nothing now (404).
    expect(init.status).toBe(401);
    expect(sessionId).toBeNull();
    // Nor does the store hold one for it (ended, its place under the principal's cap given back).
    const redis = new Redis(ctx.redisUrl);
    try {
      expect(await redis.zcard(`pcs:sessions-of:${tenant.id}:agent_client:${agentId}`)).toBe(0);
    } finally {
      redis.disconnect();
    }
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
    // A starting replica judges the sessions made before its load began, less a second for the replicas' clocks.
    await new Promise((resolve) => setTimeout(resolve, 1_100));

    await gateway.close();
    await db.agentClient.update({ where: { id: agentId }, data: { disabled: true } as never });
    gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
    expect((await postInSession(gateway, tenant.slug, key, sessionId, { id: 3, method: 'ping' })).status).toBe(401);

    await db.agentClient.update({ where: { id: agentId }, data: { disabled: false } as never });
    await gateway.dataPlane.refreshAll();
    expect((await postInSession(gateway, tenant.slug, key, sessionId, { id: 4, method: 'ping' })).status).toBe(404);
  }, 40_000);
});

