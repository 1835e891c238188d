/**
 * An upstream that failed at a session's initialize (a wrong URL) and that an admin repairs a moment later joins the
 * session at once: the registry reloads, the agent is told its lists changed, and the listing it makes then has the
 * upstream. A review found it left out for up to joinRetryMs (15 s): the session's join throttle ignored the
 * configuration's version.
 */
import type { Server } from 'node:http';
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, freePort, initializeResult, listenInSession, messageOf, postInitialize, postInSession, startJsonUpstream, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let redis: Redis;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;
let upstreamId: string;
let server: Server;
let goodUrl: string;

beforeAll(async () => {
  ({ server, url: goodUrl } = await startJsonUpstream({
    sessionId: 'good-session',
    onRequest: (request) => {
      const { method } = request.message;
      const result =
        method === 'initialize'
          ? initializeResult(request, 'good')
          : method === 'tools/list'
            ? { tools: [{ name: 'where', inputSchema: { type: 'object' } }] }
            : { content: [{ type: 'text', text: 'good' }] };
      request.answer({ result });
    },
  }));
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  redis = createRedisClient({ url: ctx.redisUrl, connectionName: 'repaired-upstream-spec' });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  ({ key } = await createAgentWithKey(db, tenant.id, 'repaired-agent'));
  const closedPort = await freePort();
  const row = await db.upstream.create({
    data: { tenantId: tenant.id, name: 'up', toolPrefix: 'up', transport: 'streamable_http', url: `http://127.0.0.1:${closedPort}/mcp`, connectTimeoutMs: 1_000, callTimeoutMs: 3_000 } as never,
  });
  upstreamId = (row as { id: string }).id;
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_SNAPSHOT_REFRESH_MS: '3600000', GATEWAY_CREDENTIALS_MAX_AGE_MS: '0' } });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  redis?.disconnect();
  await db?.$disconnect();
  await new Promise((resolve) => server?.close(resolve));
});

const rpc = async (sessionId: string, message: Record<string, unknown>) => messageOf(await postInSession(gateway, tenant.slug, key, sessionId, message));
const toolNames = async (sessionId: string, id: number) =>
  (((await rpc(sessionId, { id, method: 'tools/list' })) as { result?: { tools?: { name: string }[] } }).result?.tools ?? []).map((tool) => tool.name);

describe('an upstream repaired shortly after it failed at initialize', () => {
  it('is in the listing the agent makes when told its lists changed', async () => {
    const init = await postInitialize(gateway, tenant.slug, key, 'repaired-spec');
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    await init.text();
    await rpc(sessionId, { method: 'notifications/initialized' });
    const stream = await listenInSession(gateway, tenant.slug, key, sessionId);
    expect(await toolNames(sessionId, 2)).toEqual([]);

    await db.upstream.update({ where: { id: upstreamId }, data: { url: goodUrl, version: { increment: 1 } } as never });
    await redis.publish(CHANGE_CHANNELS.upstreams, tenant.id);
    await waitFor(() => stream.text().includes('notifications/tools/list_changed'), { timeoutMs: 5_000, description: 'the agent is told its tools changed' });
    // What a client does on hearing that: list again. The repaired upstream's tool is there.
    const started = Date.now();
    await waitFor(async () => (await toolNames(sessionId, 3)).includes('up__where'), { timeoutMs: 5_000, description: 'the repaired upstream is listed' }).catch((error) => {
      throw new Error(`${(error as Error).message} (after ${Date.now() - started} ms)`);
    });
    stream.close();
  }, 30_000);
});
