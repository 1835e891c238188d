/**
 * A reload that finds a principal with no usable key ends the sessions the principal held when that load began, not
 * those it opens later: the agent client enabled again meanwhile, a new session it opened on another replica was ended
 * by this replica's late ending of the old refusal (found by re-review).
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
let slow: TestGateway | undefined;
let other: TestGateway | undefined;
let tenant: TestTenant;
let upstream: { server: Server; url: string } | undefined;

let relay: RedisRelay | undefined;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  upstream = await startJsonUpstream({ sessionId: 'late-ending', onRequest: (request) => request.answer({ result: request.message.method === 'initialize' ? initializeResult(request, 'late-ending') : {} }) });
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'late-ending', toolPrefix: 'late-ending', transport: 'streamable_http', url: upstream.url } as never });
}, 60_000);

afterAll(async () => {
  relay?.release();
  await slow?.close();
  await other?.close();
  await relay?.close();
  upstream?.server.closeAllConnections();
  upstream?.server.close();
  await db?.$disconnect();
});

describe('an agent client disabled, then enabled again while one replica still ends its sessions', () => {
  it('keeps the session it opened after it was enabled again', async () => {
    relay = await startRedisRelay(ctx.redisUrl);
    slow = await startTestGateway({ systemDb: db, redisUrl: relay.url });
    other = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
    const { key, agentId } = await createAgentWithKey(db, tenant.id, 'new-session-agent');
    await Promise.all([slow.dataPlane.refreshAll(), other.dataPlane.refreshAll()]);

    // Disabled: the slow replica's reload sees it go, and ends the client's sessions (Redis slow to answer it).
    await db.agentClient.update({ where: { id: agentId }, data: { disabled: true } as never });
    relay.hold();
    const ending = slow.dataPlane.refreshAll();
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Enabled again; the client opens a new session on the other replica, after it was enabled.
    await db.agentClient.update({ where: { id: agentId }, data: { disabled: false } as never });
    await other.dataPlane.refreshAll();
    const init = await postInitialize(other, tenant.slug, key);
    await init.text();
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    relay.release();
    await ending;
    await new Promise((resolve) => setTimeout(resolve, 300));

    // A session made after the refusal was lifted is none of the refusal's business.
    expect((await postInSession(other, tenant.slug, key, sessionId, { id: 2, method: 'ping' })).status).toBe(200);
  }, 60_000);
});
