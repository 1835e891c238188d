/**
 * A replica starting up ends the sessions of principals refused while no replica ran. Where Redis does not answer at
 * that moment (the gateway starts with Redis down, and goes on when it comes), that look is made again at the next
 * load. It was marked done before it had read anything (found by review): later loads only compare with the load
 * before, which already had the principal refused, so the session was served again once the principal was accepted.
 */
import type { Server } from 'node:http';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { startRedisRelay, type RedisRelay } from './testing/redis-relay';
import { createAgentWithKey, initializeResult, postInitialize, postInSession, startJsonUpstream, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway | undefined;
let tenant: TestTenant;
let upstream: { server: Server; url: string } | undefined;

let relay: RedisRelay | undefined;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  upstream = await startJsonUpstream({ sessionId: 'boot-sweep', onRequest: (request) => request.answer({ result: request.message.method === 'initialize' ? initializeResult(request, 'boot-sweep') : {} }) });
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'bootsweep', toolPrefix: 'bootsweep', transport: 'streamable_http', url: upstream.url } as never });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await relay?.close();
  upstream?.server.closeAllConnections();
  upstream?.server.close();
  await db?.$disconnect();
});

describe('a session whose agent client was disabled while no replica ran, the replica starting while Redis is briefly out of reach', () => {
  it('is ended all the same, not served again once the agent client is enabled', async () => {
    gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
    const { key, agentId } = await createAgentWithKey(db, tenant.id, 'boot-sweep-agent');
    await gateway.dataPlane.refreshAll();
    const init = await postInitialize(gateway, tenant.slug, key);
    await init.text();
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await gateway.close();
    gateway = undefined;

    // Disabled while no replica runs; the next replica starts while Redis does not answer yet.
    await db.agentClient.update({ where: { id: agentId }, data: { disabled: true } as never });
    relay = await startRedisRelay(ctx.redisUrl, { open: false });
    const relayUrl = relay.url;
    gateway = await startTestGateway({ systemDb: db, redisUrl: relayUrl });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    // Redis is back a moment later.
    relay.open();
    const ready = async (): Promise<number> => {
      for (let i = 0; i < 50; i += 1) {
        const status = (await postInSession(gateway as TestGateway, tenant.slug, key, sessionId, { id: 2, method: 'ping' })).status;
        if (status !== 503) return status;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      return 503;
    };
    await gateway.dataPlane.refreshAll();
    expect(await ready()).toBe(401);

    await db.agentClient.update({ where: { id: agentId }, data: { disabled: false } as never });
    await gateway.dataPlane.refreshAll();
    // The session of the client disabled meanwhile names nothing (404), as it does when Redis answered at the start.
    expect(await ready()).toBe(404);
  }, 60_000);
});
