/**
 * The session store out of reach (Redis partitioned) while a legacy HTTP+SSE agent sends a message: its request is
 * answered "try again shortly" (-32053) on the stream, as a Streamable HTTP request is told 503 (the session may well
 * exist). It used to get a bare -32603 "Internal error", logged as an unexpected failure, which clients take as final
 * (found by review).
 */
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, startTestGateway, type TestGateway } from './testing/gateway-harness';

/** A TCP proxy to Redis that can stop passing bytes either way (a partition: the connection stays open). */
async function startProxy(targetPort: number): Promise<{ port: number; blackhole(on: boolean): void; close(): Promise<void> }> {
  const pairs = new Set<[Socket, Socket]>();
  let holed = false;
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(targetPort, '127.0.0.1');
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.pipe(upstream).pipe(client);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    if (holed) for (const socket of pair) socket.pause();
    client.on('close', () => {
      pairs.delete(pair);
      upstream.destroy();
    });
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return {
    port: address.port,
    blackhole(on) {
      holed = on;
      for (const pair of pairs) for (const socket of pair) if (on) socket.pause(); else socket.resume();
    },
    close: () => {
      for (const pair of pairs) for (const socket of pair) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const ctx = testContext();
let db: SystemPrismaClient;
let proxy: Awaited<ReturnType<typeof startProxy>>;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  ({ key } = await createAgentWithKey(db, tenant.id, 'legacy-outage'));
  proxy = await startProxy(Number(new URL(ctx.redisUrl).port || '6379'));
  // Idle 8 s: records are cached for 2 s, so a message 3 s later needs the store.
  gateway = await startTestGateway({ systemDb: db, redisUrl: `redis://127.0.0.1:${proxy.port}`, env: { GATEWAY_RATE_LIMITS_ENABLED: 'false', GATEWAY_SESSION_IDLE_MS: '8000' } });
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
