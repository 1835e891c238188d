/**
 * A legacy HTTP+SSE agent that stops reading its stream: the gateway holds what it wrote (up to 8 MiB per stream, 32
 * streams per key) for as long as the agent holds the connection, with the session and its upstream sessions, since
 * keep-alives never push an SSE response past its bound. A POST answer nobody reads is dropped once its unsent bytes
 * have not moved for ANSWER_GRACE_MS (30 s); the legacy stream, which carries every answer of the session, should be
 * held to the same rule, not kept forever.
 */
import { request as httpRequest } from 'node:http';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { testContext } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kitchenSinkTenant, startDemoUpstreams, startTestGateway, type DemoUpstreams, type TestGateway } from './testing/gateway-harness';

/** sinks.ts ANSWER_GRACE_MS: how long a POST answer may wait with none of its unsent bytes taken. */
const ANSWER_GRACE_MS = 30_000;

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let gateway: TestGateway;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_RATE_LIMITS_ENABLED: 'false' } });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await demo?.stop();
  await db?.$disconnect();
});

describe('a legacy SSE stream its agent stopped reading', () => {
  it('is dropped once its unsent answers have not moved for the answer grace, as a POST answer is', async () => {
    const { tenant, key } = await kitchenSinkTenant(db, demo, 'unread-agent');
    await gateway.dataPlane.refreshAll();
    const url = new URL(gateway.url);
    let text = '';
    let ended = false;
    let response: import('node:http').IncomingMessage | undefined;
    const stream = httpRequest({ host: url.hostname, port: url.port, path: `/t/${tenant.slug}/sse`, headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream' } });
    stream.on('error', () => undefined);
    stream.on('response', (res) => {
      response = res;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => (ended = true));
      res.on('close', () => (ended = true));
      res.on('error', () => (ended = true));
    });
    stream.end();
    const until = async (what: () => boolean, ms: number, description: string) => {
      const deadline = Date.now() + ms;
      while (!what()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${description}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    await until(() => text.includes('sessionId='), 5_000, 'the endpoint event');
    const endpoint = /data: (\S+)/.exec(text)?.[1] ?? '';
    const post = (message: Record<string, unknown>) =>
      fetch(new URL(endpoint, gateway.url), { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', ...message }) });
    expect((await post({ id: 1, method: 'initialize', params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'unread', version: '1' } } })).status).toBe(202);
    await until(() => text.includes('"id":1,'), 10_000, 'the initialize answer');
    expect((await post({ method: 'notifications/initialized' })).status).toBe(202);

    // The agent stops reading; 160 answers of 60 KB (about 9.6 MB) are written to it, more than the sockets' buffers take.
    response?.pause();
    const message = 'm'.repeat(60_000);
    const calls = 160;
    for (let id = 100; id < 100 + calls; id++) {
      expect((await post({ id, method: 'tools/call', params: { name: 'ks__echo', arguments: { message } } })).status).toBe(202);
      if (id % 64 === 0) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    // Past the grace (plus the look's own period): the gateway should have let go of the connection by now.
    await new Promise((resolve) => setTimeout(resolve, 2 * ANSWER_GRACE_MS + 2_000));
    response?.resume();
    const answered = () => (text.match(/"id":\d+,"result"/g) ?? []).length;
    await until(() => ended || answered() >= calls + 1, 10_000, 'the stream to end or every answer to arrive');
    expect(ended, `the stream was held open for ${2 * ANSWER_GRACE_MS + 2_000} ms unread, all ${answered() - 1} answers kept for the agent`).toBe(true);
    stream.destroy();
  }, 120_000);
});
