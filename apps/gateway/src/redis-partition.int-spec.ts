/**
 * The gateway's Redis stops answering (a partition: the connection open, no byte coming back), through a TCP proxy of
 * this spec's (the run's Redis itself is not touched). A request that needs the session store is answered within the
 * client's command timeout, 503 as when Redis refuses connections, instead of never; once Redis answers again the
 * gateway serves without a restart.
 */
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, postInitialize, postInSession, startTestGateway, type TestGateway } from './testing/gateway-harness';
import { startRedisRelay, type RedisRelay } from './testing/redis-relay';

async function within<T>(ms: number, work: Promise<T>): Promise<T | 'no answer'> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'no answer'>((resolve) => {
    timer = setTimeout(() => resolve('no answer'), ms);
  });
  try {
    return await Promise.race([work, hung]);
  } finally {
    clearTimeout(timer);
  }
}

const ctx = testContext();
let db: SystemPrismaClient;
let proxy: RedisRelay;
let gateway: TestGateway;
let tenant: TestTenant;
let agent: { agentId: string; key: string };

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  agent = await createAgentWithKey(db, tenant.id, 'partition');
  proxy = await startRedisRelay(ctx.redisUrl);
  gateway = await startTestGateway({
    systemDb: db,
    redisUrl: proxy.url,
    env: { GATEWAY_RATE_LIMITS_ENABLED: 'false' },
  });
}, 60_000);

afterAll(async () => {
  proxy.blackhole(false);
  await gateway?.close().catch(() => undefined);
  await proxy?.close();
  await db?.$disconnect();
}, 30_000);

const status = async (response: Promise<Response>) => {
  const answer = await response;
  await answer.text();
  return answer.status;
};

describe('gateway, Redis partitioned', () => {
  it('answers 503 within a bounded time instead of hanging, and serves again once Redis answers', async () => {
    const init = await postInitialize(gateway, tenant.slug, agent.key, 'partition-spec');
    await init.text();
    expect(init.status).toBe(200);
    const session = init.headers.get('mcp-session-id') ?? '';

    proxy.blackhole(true);
    const started = Date.now();
    const [fresh, inSession] = await Promise.all([
      within(20_000, status(postInitialize(gateway, tenant.slug, agent.key, 'partition-spec'))),
      within(20_000, status(postInSession(gateway, tenant.slug, agent.key, session, { id: 2, method: 'ping' }))),
    ]);
    // A request in a known session may be served from the replica's session cache (200) or refused (503): either way
    // it is answered. A new session needs the store: 503 with Retry-After, as when Redis refuses connections.
    expect({ fresh, inSessionAnswered: inSession !== 'no answer', answeredWithinBound: Date.now() - started < 20_000 }).toEqual({
      fresh: 503,
      inSessionAnswered: true,
      answeredWithinBound: true,
    });

    proxy.blackhole(false);
    await waitFor(async () => ((await status(postInitialize(gateway, tenant.slug, agent.key, 'partition-spec'))) === 200 ? true : undefined), {
      timeoutMs: 20_000,
      description: 'initialize served again',
    });
  }, 90_000);
});
