/**
 * A running replica whose reload finds a principal refused (its agent client disabled) while Redis is briefly out of
 * reach ends that principal's sessions once Redis answers again. It tried once, failed, and never looked again (the
 * next loads compare with this one, which already had the principal refused): once the client was enabled again, the
 * old session was served again (found by re-review).
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
  upstream = await startJsonUpstream({ sessionId: 'redis-down', onRequest: (request) => request.answer({ result: request.message.method === 'initialize' ? initializeResult(request, 'redis-down') : {} }) });
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'redis-down', toolPrefix: 'redis-down', transport: 'streamable_http', url: upstream.url } as never });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await relay?.close();
  upstream?.server.closeAllConnections();
  upstream?.server.close();
  await db?.$disconnect();
});

describe('an agent client disabled while Redis is briefly out of reach, on a running replica', () => {
  it('has its open session ended once Redis answers, not served again when the client is enabled', async () => {
    relay = await startRedisRelay(ctx.redisUrl);
    const relayUrl = relay.url;
    gateway = await startTestGateway({ systemDb: db, redisUrl: relayUrl });
    const { key, agentId } = await createAgentWithKey(db, tenant.id, 'late-ending-agent');
    await gateway.dataPlane.refreshAll();
    const init = await postInitialize(gateway, tenant.slug, key);
    await init.text();
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    expect((await postInSession(gateway, tenant.slug, key, sessionId, { id: 1, method: 'ping' })).status).toBe(200);

    // Redis out of reach for a few seconds; the agent client is disabled then, and this replica reloads its keys.
    relay.cut();
    await db.agentClient.update({ where: { id: agentId }, data: { disabled: true } as never });
    await gateway.dataPlane.refreshAll();
    relay.open();
    const settledStatus = async (): Promise<number> => {
      let status = 503;
      for (let i = 0; i < 60; i += 1) {
        status = (await postInSession(gateway as TestGateway, tenant.slug, key, sessionId, { id: 2, method: 'ping' })).status;
        if (status !== 503) return status;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      return status;
    };
    expect(await settledStatus()).toBe(401);
    // Redis answers again; a few reloads later (periodic ones, or notices) the client is enabled again.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    await gateway.dataPlane.refreshAll();

    await db.agentClient.update({ where: { id: agentId }, data: { disabled: false } as never });
    await gateway.dataPlane.refreshAll();
    // The session of the client disabled meanwhile must name nothing (404), as when Redis answered at the reload.
    expect(await settledStatus()).toBe(404);
  }, 60_000);
});
