/**
 * Two official SDK clients on one session (the SDK's `sessionId` option: a second worker or tab that picks up a stored
 * session and its stream with `resumeStream`). The gateway closes a session's standalone stream when another one opens;
 * the SDK client reconnects a GET stream the server ends, with its last event id. Taken as a new stream, that closed
 * the other client's, which reconnected in turn, once a second for as long as both ran. A stream another one took the
 * place of (without resuming it) is not resumed: 409, and the evictions stop.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kitchenSinkTenant, startDemoUpstreams, startTestGateway, type DemoUpstreams, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  ({ tenant, key } = await kitchenSinkTenant(db, demo, 'evictions'));
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await demo?.stop();
  await db?.$disconnect();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('two SDK clients listening on one session', () => {
  it('do not evict each other\'s standalone stream in a loop', async () => {
    const gets: number[] = [];
    gateway.app.server.on('request', (req) => {
      if (req.method === 'GET') gets.push(Date.now());
    });
    const url = new URL(`${gateway.url}/t/${tenant.slug}/mcp`);
    const first = new Client({ name: 'first', version: '1' });
    const firstTransport = new StreamableHTTPClientTransport(url, { requestInit: { headers: { authorization: `Bearer ${key}` } } });
    await first.connect(firstTransport);
    await sleep(300);
    // The second client joins the session and opens its stream (public SDK API).
    const second = new StreamableHTTPClientTransport(url, { requestInit: { headers: { authorization: `Bearer ${key}` } }, sessionId: firstTransport.sessionId });
    second.onerror = () => undefined;
    firstTransport.onerror = () => undefined;
    await second.start();
    await second.resumeStream('none');
    // Whatever the gateway does with the second stream, a few seconds settle it (SDK retries: 2, 1 s apart).
    await sleep(4_000);
    const settledAt = Date.now();
    await sleep(6_000);
    const later = gets.filter((at) => at >= settledAt).length;
    await first.close();
    await second.close();
    // GETs still arriving 4 to 10 s later: the two clients are still evicting each other.
    expect(later).toBe(0);
  }, 30_000);
});
