/**
 * A legacy HTTP+SSE session's stream carrying one large answer (an upstream may answer up to 16 MiB) to an agent that
 * reads it steadily: any other message written while that answer is still going out (another call's answer, a
 * progress notification, a keep-alive) must not cut the agent off. The legacy stream has no replay log: cut, the
 * session ends with its upstream sessions, and every answer still due is lost.
 */
import { request as httpRequest } from 'node:http';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, initializeResult, startJsonUpstream, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let upstream: Awaited<ReturnType<typeof startJsonUpstream>>;

/** 10 MiB of text: past the 8 MiB the gateway lets an SSE response hold unsent, within the 16 MiB an upstream may answer. */
const LARGE = 'x'.repeat(10 * 1024 * 1024);

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  upstream = await startJsonUpstream({
    sessionId: 'large-1',
    onRequest: (request) => {
      if (request.message.method === 'initialize') return request.answer({ result: initializeResult(request, 'large') });
      if (request.message.method === 'tools/list') return request.answer({ result: { tools: [{ name: 'big', inputSchema: { type: 'object' } }] } });
      if (request.message.method === 'tools/call') return request.answer({ result: { content: [{ type: 'text', text: LARGE }] } });
      return request.answer({ result: {} });
    },
  });
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  upstream?.server.closeAllConnections();
  await new Promise((resolve) => upstream?.server.close(resolve));
  await db?.$disconnect();
});

describe('legacy SSE stream with a large answer to a steady reader', () => {
  it('delivers the large answer and the answer written after it, and keeps the stream open', async () => {
    const tenant = await createTestTenant(db);
    await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
    await db.upstream.create({
      data: { tenantId: tenant.id, name: 'large', toolPrefix: 'large', transport: 'streamable_http', url: upstream.url, connectTimeoutMs: 5_000, callTimeoutMs: 20_000 } as never,
    });
    const { key } = await createAgentWithKey(db, tenant.id, 'large-agent');
    await gateway.dataPlane.refreshAll();
    const url = new URL(gateway.url);

    // The agent's stream, read steadily at about 4 MiB/s (a client on a slower link than loopback).
    let text = '';
    let ended = false;
    const stream = httpRequest({ host: url.hostname, port: url.port, path: `/t/${tenant.slug}/sse`, headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream' } });
    stream.on('error', () => undefined);
    stream.on('response', (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        // Each chunk taken at 4 MiB/s.
        res.pause();
        setTimeout(() => res.resume(), Math.ceil((chunk.length / (4 * 1024 * 1024)) * 1000));
      });
      res.on('end', () => (ended = true));
      res.on('close', () => (ended = true));
      res.on('aborted', () => (ended = true));
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

    expect((await post({ id: 1, method: 'initialize', params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'large', version: '1' } } })).status).toBe(202);
    await until(() => text.includes('"id":1,'), 10_000, 'the initialize answer');
    expect((await post({ method: 'notifications/initialized' })).status).toBe(202);

    expect((await post({ id: 2, method: 'tools/call', params: { name: 'large__big', arguments: {} } })).status).toBe(202);
    // The large answer starts arriving; meanwhile the agent pings (any message would do: a progress notification, a
    // log line, another call's answer, the stream's own keep-alive).
    await until(() => text.includes('"id":2'), 15_000, 'the large answer to start');
    expect((await post({ id: 3, method: 'ping' })).status).toBe(202);

    await until(() => text.includes('"id":3') || ended, 20_000, 'the ping answer or the stream end');
    expect(ended, 'the legacy stream was cut while the agent was reading it').toBe(false);
    expect(text).toContain(LARGE);
    expect(text).toContain('{"jsonrpc":"2.0","id":3,"result":{}}');
    stream.destroy();
  }, 60_000);
});
