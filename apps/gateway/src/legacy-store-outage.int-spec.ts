/**
 * The session store out of reach (Redis partitioned) while a legacy HTTP+SSE agent sends a message: its request is
 * answered "try again shortly" (-32053) on the stream, as a Streamable HTTP request is told 503 (the session may well
 * exist). It used to get a bare -32603 "Internal error", logged as an unexpected failure, which clients take as final
 * (found by review).
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, startTestGateway, type TestGateway } from './testing/gateway-harness';
import { startRedisRelay, type RedisRelay } from './testing/redis-relay';

const ctx = testContext();
let db: SystemPrismaClient;
let proxy: RedisRelay;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  ({ key } = await createAgentWithKey(db, tenant.id, 'legacy-outage'));
  proxy = await startRedisRelay(ctx.redisUrl);
  // Idle 8 s: records are cached for 2 s, so a message 3 s later needs the store.
  gateway = await startTestGateway({ systemDb: db, redisUrl: proxy.url, env: { GATEWAY_RATE_LIMITS_ENABLED: 'false', GATEWAY_SESSION_IDLE_MS: '8000' } });
}, 60_000);

afterAll(async () => {
  proxy.blackhole(false);
  await gateway?.close().catch(() => undefined);
  await proxy?.close();
  await db?.$disconnect();
}, 30_000);

describe('a legacy HTTP+SSE message while the session store is out of reach', () => {
  it('is answered as unavailable (try again), as on Streamable HTTP, not as an internal error', async () => {
    const headers = { authorization: `Bearer ${key}` };
    const client = new Client({ name: 'legacy-outage', version: '1.0.0' });
    const transport = new SSEClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/sse`), {
      requestInit: { headers },
      eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...headers } }) },
    });
    await client.connect(transport);
    await client.ping();
    await new Promise((resolve) => setTimeout(resolve, 3_000));

    proxy.blackhole(true);
    const outcome = await client.ping({ timeout: 15_000 }).then(
      () => ({ code: 'answered' as unknown }),
      (error: { code?: unknown }) => ({ code: error.code }),
    );
    proxy.blackhole(false);
    await client.close().catch(() => undefined);
    expect(outcome).toEqual({ code: -32053 });
  }, 40_000);
});
