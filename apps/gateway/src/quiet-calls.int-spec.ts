/**
 * Calls whose answer is slow in coming (a slow tool, a call held for approval) behind a proxy that closes idle
 * connections, as load balancers do: the gateway keeps the POST's response alive (GATEWAY_SSE_KEEPALIVE_MS), so the
 * official SDK client gets the answer, where a gateway that stays silent loses the call. A 2025-11-25 agent whose
 * connection is cut anyway resumes the kept-alive stream with Last-Event-ID and still gets the answer, even when it
 * comes long after the replay log's lifetime (the log is renewed while the call runs).
 * Needs `npx nx build demo-upstreams`.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  kitchenSinkTenant,
  resumptionsOn,
  startDemoUpstreams,
  startProxy,
  startTestGateway,
  type DemoUpstreams,
  type TestGateway,
} from './testing/gateway-harness';

const ctx = testContext();
const KEEP_ALIVE_MS = 150;
/** The replay log's lifetime on the gateway that keeps answers alive: a sixth of the slow call's silence. */
const REPLAY_TTL_MS = 500;
/** The idle timeout of the proxy in front: several keep-alive intervals, far below the slow call's silence. */
const PROXY_IDLE_MS = 1_000;
/** How long the slow tool stays silent before it answers. */
const SILENT_MS = 3_000;

let db: SystemPrismaClient;
let demo: DemoUpstreams;
/** Keeps quiet responses alive every KEEP_ALIVE_MS. */
let kept: TestGateway;
/** Keeps them alive only after 5 minutes: silent for the whole slow call. */
let silent: TestGateway;
let tenant: TestTenant;
let key: string;

function text(result: unknown): string {
  const content = (result as { content?: { text?: string }[] }).content ?? [];
  return content.map((item) => item.text ?? '').join('');
}

function sdkClient(base: string): { client: Client; transport: StreamableHTTPClientTransport } {
  const client = new Client({ name: 'quiet-calls-spec', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/t/${tenant.slug}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
    reconnectionOptions: { initialReconnectionDelay: 100, maxReconnectionDelay: 500, reconnectionDelayGrowFactor: 1.5, maxRetries: 3 },
  });
  return { client, transport };
}

const slowCall = { name: 'ks__slow_count', arguments: { steps: 1, interval_ms: SILENT_MS } };

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  ({ tenant, key } = await kitchenSinkTenant(db, demo, 'quiet-agent'));
  kept = await startTestGateway({
    systemDb: db,
    redisUrl: ctx.redisUrl,
    env: { GATEWAY_SSE_KEEPALIVE_MS: String(KEEP_ALIVE_MS), GATEWAY_SSE_REPLAY_TTL_MS: String(REPLAY_TTL_MS) },
  });
  silent = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_SSE_KEEPALIVE_MS: '300000', GATEWAY_SSE_REPLAY_TTL_MS: '900000' } });
}, 60_000);

afterAll(async () => {
  await kept?.close();
  await silent?.close();
  await demo?.stop();
  await db?.$disconnect();
});

describe('a slow call behind a proxy that closes idle connections', () => {
  it('is answered: the gateway keeps the response alive (and a silent one loses the call)', async () => {
    const proxy = await startProxy(kept.url, { idleTimeoutMs: PROXY_IDLE_MS });
    const { client, transport } = sdkClient(proxy.url);
    await client.connect(transport);
    expect(text(await client.callTool(slowCall))).toBe('Counted to 1.');
    // The session goes on.
    expect(text(await client.callTool({ name: 'ks__echo', arguments: { message: 'after' } }))).toBe('after');
    await client.close();
    await proxy.close();

    // The same call through the same kind of proxy to a gateway that stays silent: the proxy cuts it.
    const control = await startProxy(silent.url, { idleTimeoutMs: PROXY_IDLE_MS });
    const other = sdkClient(control.url);
    await other.client.connect(other.transport);
    await expect(other.client.callTool(slowCall, undefined, { timeout: 10_000 })).rejects.toThrow();
    expect(control.idleCuts).toBeGreaterThan(0);
    await other.client.close();
    await control.close();
  }, 30_000);

  it('is answered after the connection is cut anyway, past the log lifetime: the agent resumes the kept-alive stream', async () => {
    const proxy = await startProxy(kept.url);
    const resumedFrom = resumptionsOn(kept);
    const { client, transport } = sdkClient(proxy.url);
    await client.connect(transport);
    let primed!: () => void;
    const priming = new Promise<void>((resolve) => (primed = resolve));
    const started = Date.now();
    // The first id the agent holds is the priming event's, sent with the first keep-alive.
    const call = client.callTool(slowCall, undefined, { timeout: 15_000, onresumptiontoken: () => primed() });
    await priming;
    proxy.breakAll();
    expect(text(await call)).toBe('Counted to 1.');
    // The answer came several log lifetimes after the cut: the log was renewed while the agent was away.
    expect(Date.now() - started).toBeGreaterThan(4 * REPLAY_TTL_MS);
    // Resumed from the priming event's id: the position before the stream's first message.
    expect(resumedFrom.some((id) => /^p\w+_0$/.test(id))).toBe(true);
    await client.close();
    await proxy.close();
  }, 30_000);
});

describe('the raw responses', () => {
  const headers = (version: string, sessionId?: string) => ({
    authorization: `Bearer ${key}`,
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': version,
    ...(sessionId === undefined ? {} : { 'mcp-session-id': sessionId }),
  });

  async function session(version: string): Promise<string> {
    const res = await fetch(`${kept.url}/t/${tenant.slug}/mcp`, {
      method: 'POST',
      headers: headers(version),
      body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
    });
    expect(res.status).toBe(200);
    await res.text();
    return res.headers.get('mcp-session-id') ?? '';
  }

  const call = (version: string, sessionId: string, params: object) =>
    fetch(`${kept.url}/t/${tenant.slug}/mcp`, {
      method: 'POST',
      headers: headers(version, sessionId),
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params }),
    });

  it('answers a quick call as plain JSON, and a slow one as a stream: priming event, keep-alives, then the answer', async () => {
    const sessionId = await session('2025-11-25');
    const quick = await call('2025-11-25', sessionId, { name: 'ks__echo', arguments: { message: 'hi' } });
    expect(quick.headers.get('content-type')).toContain('application/json');
    expect(await quick.json()).toMatchObject({ id: 7, result: { content: [{ text: 'hi' }] } });

    const started = Date.now();
    const slow = await call('2025-11-25', sessionId, { name: 'ks__slow_count', arguments: { steps: 1, interval_ms: 1_000 } });
    expect(slow.headers.get('content-type')).toBe('text/event-stream');
    expect(slow.headers.get('x-accel-buffering')).toBe('no');
    const events = (await slow.text()).split('\n\n').filter(Boolean);
    const elapsed = Date.now() - started;
    const stream = /^id: (p\w+)_0\nretry: 1000\ndata: $/.exec(events[0] ?? '')?.[1];
    expect(stream).toBeDefined();
    const comments = events.filter((event) => event === ': keep-alive').length;
    // At least 1 s of silence, never more than 150 ms of it without a byte; at most one comment per 75 ms tick.
    expect(comments).toBeGreaterThanOrEqual(4);
    expect(comments).toBeLessThanOrEqual(Math.ceil(elapsed / (KEEP_ALIVE_MS / 2)));
    // The answer last, under the next id of the same stream (the tool's log message comes before it).
    const last = events.at(-1) ?? '';
    expect(last).toMatch(new RegExp(`^id: ${stream}_\\d+\ndata: `));
    expect(JSON.parse(last.slice(last.indexOf('data: ') + 6))).toMatchObject({ id: 7, result: { content: [{ text: 'Counted to 1.' }] } });
  });

  it('keeps an older agent\'s slow call alive without a priming event', async () => {
    const sessionId = await session('2025-06-18');
    const slow = await call('2025-06-18', sessionId, { name: 'ks__slow_count', arguments: { steps: 1, interval_ms: 600 } });
    expect(slow.headers.get('content-type')).toBe('text/event-stream');
    const events = (await slow.text()).split('\n\n').filter(Boolean);
    expect(events[0]).toBe(': keep-alive');
    expect(events.some((event) => event.includes('_0\n'))).toBe(false);
    expect(JSON.parse((events.at(-1) ?? '').split('data: ')[1] ?? '')).toMatchObject({ id: 7, result: { content: [{ text: 'Counted to 1.' }] } });
  });
});
