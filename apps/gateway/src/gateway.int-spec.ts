/**
 * The data plane end to end: the official MCP SDK client → gateway (in-process Fastify, real Postgres
 * snapshots, real Redis sessions, the real upstream connector) → the built demo upstreams (Streamable
 * HTTP, legacy SSE and stdio). Needs `npx nx build demo-upstreams`.
 */
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentWithKey, demoDist, startDemoUpstreams, startTestGateway, type DemoUpstreams, type TestGateway } from './testing/gateway-harness';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let gatewayA: TestGateway;
let gatewayB: TestGateway;
let tenant: TestTenant;
let otherTenant: TestTenant;
let key: string;
let sameTenantOtherAgentKey: string;
let otherTenantKey: string;

async function makeKey(t: TestTenant, agentName: string): Promise<string> {
  return (await createAgentWithKey(db, t.id, agentName)).key;
}

function text(result: unknown): string {
  const content = (result as { content?: { text?: string }[] }).content ?? [];
  return content.map((item) => item.text ?? '').join('');
}

async function connect(base: string, apiKey = key, options: { capabilities?: Record<string, unknown>; fetch?: typeof fetch } = {}) {
  const client = new Client({ name: 'int-spec', version: '1.0.0' }, { capabilities: options.capabilities ?? {} });
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/t/${tenant.slug}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${apiKey}` } },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  await client.connect(transport);
  return { client, transport };
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  tenant = await createTestTenant(db);
  otherTenant = await createTestTenant(db);
  // These tests are about routing, not policy: both tenants allow everything (policy.int-spec.ts covers enforcement).
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await writeActiveSnapshot(db, otherTenant.id, ALLOW_ALL);
  const upstream = (name: string, data: Record<string, unknown>) =>
    db.upstream.create({ data: { tenantId: tenant.id, name, toolPrefix: name, connectTimeoutMs: 3_000, callTimeoutMs: 10_000, ...data } as never });
  await upstream('tickets', { transport: 'streamable_http', url: `${demo.url}/tickets/mcp` });
  await upstream('ks', { transport: 'streamable_http', url: `${demo.url}/kitchen-sink/mcp` });
  await upstream('files', { transport: 'sse', url: `${demo.url}/files/sse` });
  await upstream('math', { transport: 'stdio', command: process.execPath, args: [path.join(demoDist, 'stdio.js'), 'math'] });
  await upstream('dead', { transport: 'streamable_http', url: 'http://127.0.0.1:1/mcp', connectTimeoutMs: 500 });
  key = await makeKey(tenant, 'agent-one');
  sameTenantOtherAgentKey = await makeKey(tenant, 'agent-two');
  otherTenantKey = await makeKey(otherTenant, 'agent-other');
  gatewayA = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_ALLOWED_ORIGINS: 'https://allowed.example' } });
  gatewayB = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gatewayA?.close();
  await gatewayB?.close();
  await demo?.stop();
  await db?.$disconnect();
});

describe('Streamable HTTP → upstreams over every transport', () => {
  it('initialize advertises what the upstreams support; tools/list merges and prefixes the healthy ones', async () => {
    const { client } = await connect(gatewayA.url);
    expect(client.getServerCapabilities()).toMatchObject({ tools: {}, prompts: {}, resources: { subscribe: true }, logging: {} });
    expect(client.getServerVersion()).toMatchObject({ name: 'portcullis' });
    const { tools, nextCursor } = await client.listTools();
    expect(nextCursor).toBeUndefined();
    const names = tools.map((tool) => tool.name);
    expect(names).toEqual(expect.arrayContaining(['tickets__create_ticket', 'ks__echo', 'files__read_file', 'math__add']));
    expect(names.every((name) => /^[A-Za-z0-9_.-]{1,128}$/.test(name))).toBe(true);
    // Deterministic order: by prefix (dead dropped out), then the upstream's own order.
    const prefixes = [...new Set(names.map((name) => name.split('__')[0]))];
    expect(prefixes).toEqual(['files', 'ks', 'math', 'tickets']);
    expect((await client.listTools()).tools.map((tool) => tool.name)).toEqual(names);
    expect(gatewayA.logs()).toContain('upstream dropped out');
    await client.close();
  });

  it('a long listing (written item by item into a reused buffer) reaches the SDK client whole, twice alike', async () => {
    const { client } = await connect(gatewayA.url);
    const before = (await client.listTools()).tools.length;
    // 70 more tools on this session's kitchen sink: past the 64 items from which listings skip the one big string.
    for (let i = 0; i < 70; i += 1) await client.callTool({ name: 'ks__add_tool', arguments: {} });
    const tools = await waitFor(
      async () => {
        const listed = (await client.listTools()).tools;
        return listed.length >= before + 70 ? listed : undefined;
      },
      { timeoutMs: 15_000, description: 'the added tools listed' },
    );
    const added = tools.filter((tool) => /^ks__extra_\d+$/.test(tool.name));
    expect(added).toHaveLength(70);
    expect(added.every((tool) => tool.inputSchema.type === 'object' && typeof tool.description === 'string')).toBe(true);
    expect(tools.map((tool) => tool.name)).toEqual(expect.arrayContaining(['tickets__create_ticket', 'files__read_file', 'math__add']));
    // The next answer reuses the pooled buffer: the same listing again, not a mix of two.
    expect((await client.listTools()).tools).toEqual(tools);
    await client.close();
  });

  it('routes tools/call with the original names to Streamable HTTP, legacy SSE and stdio upstreams', async () => {
    const { client } = await connect(gatewayA.url);
    expect(text(await client.callTool({ name: 'ks__echo', arguments: { message: 'hello' } }))).toBe('hello');
    expect(text(await client.callTool({ name: 'math__add', arguments: { a: 2, b: 3 } }))).toContain('5');
    const files = await client.callTool({ name: 'files__list_files', arguments: {} });
    expect(files.isError).not.toBe(true);
    const created = await client.callTool({ name: 'tickets__create_ticket', arguments: { title: 'Printer on fire', body: 'Third floor', priority: 'high' } });
    expect(created.isError).not.toBe(true);
    await expect(client.callTool({ name: 'nope__echo', arguments: {} })).rejects.toThrow(/Unknown tool/);
    await client.close();
  });

  it('serves prompts, resources (routed by URI), templates, completion and ping', async () => {
    const { client } = await connect(gatewayA.url);
    const { prompts } = await client.listPrompts();
    expect(prompts.map((p) => p.name)).toEqual(expect.arrayContaining(['tickets__triage_ticket', 'ks__greeting']));
    const prompt = await client.getPrompt({ name: 'ks__greeting', arguments: { name: 'Ada', language: 'french' } });
    expect(JSON.stringify(prompt.messages)).toContain('Ada');
    const completion = await client.complete({ ref: { type: 'ref/prompt', name: 'ks__greeting' }, argument: { name: 'language', value: 'fr' } });
    expect(completion.completion.values).toEqual(['french']);
    const { resources } = await client.listResources();
    expect(resources.length).toBeGreaterThan(1);
    const counter = resources.find((r) => r.uri.includes('counter'));
    expect(counter).toBeDefined();
    const read = await client.readResource({ uri: counter?.uri ?? '' });
    expect(JSON.stringify(read.contents)).toContain('value');
    const { resourceTemplates } = await client.listResourceTemplates();
    expect(resourceTemplates.length).toBeGreaterThan(0);
    expect(await client.ping()).toEqual({});
    await client.setLoggingLevel('debug');
    await expect(client.readResource({ uri: 'nowhere://x' })).rejects.toThrow(/Resource not found/);
    await client.close();
  });

  it('relays progress, and sampling and elicitation round trips on the POST stream', async () => {
    const { client } = await connect(gatewayA.url, key, { capabilities: { sampling: {}, elicitation: {} } });
    client.setRequestHandler(CreateMessageRequestSchema, async () => ({
      role: 'assistant',
      content: { type: 'text', text: 'A short summary.' },
      model: 'spec-model',
    }));
    client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { confirm: true } }));
    const progress: number[] = [];
    const counted = await client.callTool({ name: 'ks__slow_count', arguments: { steps: 3, interval_ms: 20 } }, undefined, {
      onprogress: (p) => progress.push(p.progress),
    });
    expect(counted.isError).not.toBe(true);
    expect(progress).toEqual([1, 2, 3]);
    expect(text(await client.callTool({ name: 'ks__summarize_with_llm', arguments: { text: 'long text' } }))).toContain('A short summary.');
    expect(text(await client.callTool({ name: 'ks__confirm_action', arguments: { action: 'deploy' } }))).toContain('confirmed');
    await client.close();
  });

  it('cancels the upstream call when the agent cancels', async () => {
    const { client } = await connect(gatewayA.url);
    const controller = new AbortController();
    const call = client.callTool({ name: 'ks__slow_count', arguments: { steps: 50, interval_ms: 100 } }, undefined, { signal: controller.signal });
    setTimeout(() => controller.abort('enough'), 300);
    await expect(call).rejects.toThrow();
    expect(await client.ping()).toEqual({});
    await client.close();
  });

  it('two replicas sharing Redis serve one SDK session round-robin', async () => {
    let turn = 0;
    const servedBy: string[] = [];
    const roundRobin: typeof fetch = (input, init) => {
      const target = turn++ % 2 === 0 ? gatewayA.url : gatewayB.url;
      servedBy.push(target);
      const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
      return fetch(`${target}${url.pathname}${url.search}`, init);
    };
    const { client } = await connect(gatewayA.url, key, { fetch: roundRobin });
    for (let i = 0; i < 3; i++) {
      expect(text(await client.callTool({ name: 'ks__echo', arguments: { message: `m${i}` } }))).toBe(`m${i}`);
      expect((await client.listTools()).tools.length).toBeGreaterThan(5);
    }
    expect(text(await client.callTool({ name: 'math__multiply', arguments: { a: 6, b: 7 } }))).toContain('42');
    expect(new Set(servedBy).size).toBe(2);
    await client.close();
  });

  it("relays an upstream's request tied to no call through the replica holding the agent's GET stream", async () => {
    // Every POST to A (so A holds the upstream session and its GET stream), the agent's GET stream on B.
    let streamOpened: () => void = () => undefined;
    const opened = new Promise<void>((resolve) => (streamOpened = resolve));
    const split: typeof fetch = async (input, init) => {
      const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
      const get = (init?.method ?? 'GET').toUpperCase() === 'GET';
      const res = await fetch(`${get ? gatewayB.url : gatewayA.url}${url.pathname}${url.search}`, init);
      if (get && res.status === 200) streamOpened();
      return res;
    };
    const client = new Client({ name: 'int-spec', version: '1.0.0' }, { capabilities: { roots: { listChanged: true } } });
    client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: 'file:///across-replicas', name: 'x' }] }));
    const transport = new StreamableHTTPClientTransport(new URL(`${gatewayA.url}/t/${tenant.slug}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${key}` } },
      fetch: split,
    });
    await client.connect(transport);
    await opened;
    // The upstream asks for the roots when told they changed: on its own GET stream, held by A's upstream session.
    await client.sendRootsListChanged();
    const seen = await waitFor(
      async () => {
        const result = await client.callTool({ name: 'ks__observed_events', arguments: {} });
        const observed = JSON.parse(text(result)) as { roots: string[] | null; rootsError: string | null };
        return observed.roots !== null || observed.rootsError !== null ? observed : undefined;
      },
      { timeoutMs: 10_000, description: 'the upstream got an answer to roots/list' },
    );
    expect(seen).toEqual({ ...seen, roots: ['file:///across-replicas'], rootsError: null });
    await client.close();
  });

  it('DELETE ends the session on every replica', async () => {
    const { client, transport } = await connect(gatewayA.url);
    const sessionId = transport.sessionId ?? '';
    await transport.terminateSession();
    for (const gateway of [gatewayA, gatewayB]) {
      const res = await fetch(`${gateway.url}/t/${tenant.slug}/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
      });
      expect(res.status).toBe(404);
    }
    await client.close();
  });
});

describe('legacy HTTP+SSE endpoint', () => {
  it('serves an SDK SSEClientTransport session', async () => {
    const client = new Client({ name: 'legacy', version: '1.0.0' });
    const headers = { authorization: `Bearer ${key}` };
    const transport = new SSEClientTransport(new URL(`${gatewayA.url}/t/${tenant.slug}/sse`), {
      requestInit: { headers },
      eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...headers } }) },
    });
    await client.connect(transport);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toContain('ks__echo');
    expect(text(await client.callTool({ name: 'ks__echo', arguments: { message: 'legacy' } }))).toBe('legacy');
    await client.close();
  });
});

describe('graceful shutdown', () => {
  it('turns new requests away with 503 while a call under way finishes, within the drain time', async () => {
    const leaving = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
    try {
      const { client, transport } = await connect(leaving.url);
      const progress: number[] = [];
      const slow = client.callTool({ name: 'ks__slow_count', arguments: { steps: 5, interval_ms: 200 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
      await waitFor(() => progress.length >= 1, { description: 'the slow call under way' });
      const closed = leaving.dataPlane.close(10_000);
      const refused = await fetch(`${leaving.url}/t/${tenant.slug}/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'late', version: '1' } } }),
      });
      expect(refused.status).toBe(503);
      // Answers and notifications still go through: calls under way may be waiting for them.
      const notified = await fetch(`${leaving.url}/t/${tenant.slug}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': transport.sessionId ?? '',
          'mcp-protocol-version': transport.protocolVersion ?? '2025-06-18',
        },
        body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/roots/list_changed' }),
      });
      expect(notified.status).toBe(202);
      const refusedStream = await fetch(`${leaving.url}/t/${tenant.slug}/sse`, { headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream' } });
      expect(refusedStream.status).toBe(503);
      expect(text(await slow)).toMatch(/5/);
      await closed;
      await client.close().catch(() => undefined);
    } finally {
      await leaving.close();
    }
  });
});

describe('open streams and credentials', () => {
  it('ends the SSE streams of a key once it is revoked (standalone GET and legacy), and leaves other keys\' streams open', async () => {
    const doomed = await createAgentWithKey(db, tenant.id, 'agent-doomed');
    const kept = await makeKey(tenant, 'agent-kept');
    await gatewayA.dataPlane.refreshAll();
    /** Opens an SSE response and resolves `ended` when the server ends it. */
    const openStream = async (url: string, headers: Record<string, string>) => {
      const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers } });
      expect(res.status).toBe(200);
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      const ended = (async () => {
        for (;;) if ((await reader.read()).done) return 'ended';
      })().catch(() => 'ended');
      return { ended, cancel: () => reader.cancel().catch(() => undefined) };
    };
    const standaloneOf = async (apiKey: string) => {
      const { transport, client } = await connect(gatewayA.url, apiKey);
      const stream = await openStream(`${gatewayA.url}/t/${tenant.slug}/mcp`, {
        authorization: `Bearer ${apiKey}`,
        'mcp-session-id': transport.sessionId ?? '',
        'mcp-protocol-version': transport.protocolVersion ?? '2025-06-18',
      });
      return { ...stream, client };
    };
    const standalone = await standaloneOf(doomed.key);
    const other = await standaloneOf(kept);
    const legacy = await openStream(`${gatewayA.url}/t/${tenant.slug}/sse`, { authorization: `Bearer ${doomed.key}` });

    await db.apiKey.updateMany({ where: { tenantId: tenant.id, agentClientId: doomed.agentId }, data: { revokedAt: new Date() } });
    await gatewayA.dataPlane.refreshAll();
    expect(await Promise.race([Promise.all([standalone.ended, legacy.ended]), new Promise((resolve) => setTimeout(() => resolve('still open'), 5_000))])).toEqual(['ended', 'ended']);
    expect(await Promise.race([other.ended, new Promise((resolve) => setTimeout(() => resolve('still open'), 300))])).toBe('still open');
    await other.cancel();
    await Promise.all([standalone.client.close(), other.client.close()]).catch(() => undefined);
  });
});

describe('bad input', () => {
  const post = (body: string, headers: Record<string, string> = {}, slug = tenant.slug, base = gatewayA.url) =>
    fetch(`${base}/t/${slug}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      body,
    });
  const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
  let sessionId = '';

  beforeAll(async () => {
    const res = await post(init);
    expect(res.status).toBe(200);
    sessionId = res.headers.get('mcp-session-id') ?? '';
    const body = await res.json();
    expect(body.result.protocolVersion).toBe('2025-06-18');
  });

  async function expectError(res: Response, status: number, code: number) {
    expect(res.status).toBe(status);
    const raw = await res.text();
    expect(raw).not.toContain(demo.url);
    expect(raw).not.toContain('127.0.0.1:1');
    expect(raw).not.toMatch(/at .*\.(js|ts):\d+/);
    const body = JSON.parse(raw);
    expect(body.error.code).toBe(code);
    expect(body.error.data.traceId).toMatch(/^[0-9a-f]{32}$/);
    return body;
  }

  it('authentication: 401 with WWW-Authenticate; another tenant key or unknown tenant 404 alike', async () => {
    const none = await fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, { method: 'POST', body: init, headers: { 'content-type': 'application/json' } });
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    await expectError(none, 401, -32001);
    await expectError(await post(init, { authorization: 'Bearer pcs_' + 'x'.repeat(40) }), 401, -32001);
    const wrongTenant = await expectError(await post(init, { authorization: `Bearer ${otherTenantKey}` }), 404, -32004);
    const noTenant = await expectError(await post(init, {}, 'no-such-tenant'), 404, -32004);
    expect(wrongTenant.error.message).toBe(noTenant.error.message);
  });

  it('Origin, Accept, Content-Type, body size, JSON and JSON-RPC shape', async () => {
    await expectError(await post(init, { origin: 'https://evil.example' }), 403, -32003);
    expect((await post(init, { origin: 'https://allowed.example' })).status).toBe(200);
    await expectError(await post(init, { accept: 'application/json' }), 406, -32006);
    await expectError(await post(init, { 'content-type': 'text/plain' }), 415, -32015);
    await expectError(await post(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', params: { x: 'y'.repeat(70_000) } })), 413, -32013);
    await expectError(await post('{"jsonrpc":'), 400, -32700);
    await expectError(await post(JSON.stringify({ jsonrpc: '1.0', id: 1, method: 'ping' }), { 'mcp-session-id': sessionId }), 400, -32600);
    await expectError(await post(JSON.stringify({ id: 1 }), { 'mcp-session-id': sessionId }), 400, -32600);
  });

  it('CORS: an allowed origin\'s preflight and answers carry what a browser client needs; other origins get none', async () => {
    const url = `${gatewayA.url}/t/${tenant.slug}/mcp`;
    const allowed = 'https://allowed.example';
    const preflight = await fetch(url, { method: 'OPTIONS', headers: { origin: allowed, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, mcp-session-id' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(allowed);
    expect(preflight.headers.get('access-control-allow-methods')).toBe('GET, POST, DELETE');
    expect(preflight.headers.get('access-control-allow-headers')?.split(', ')).toEqual(expect.arrayContaining(['mcp-session-id', 'traceparent', 'tracestate']));
    const refused = await fetch(url, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    expect(refused.status).toBe(403);
    expect(refused.headers.get('access-control-allow-origin')).toBeNull();
    for (const path of ['sse', 'messages']) {
      const other = await fetch(`${gatewayA.url}/t/${tenant.slug}/${path}`, { method: 'OPTIONS', headers: { origin: allowed, 'access-control-request-method': path === 'sse' ? 'GET' : 'POST' } });
      expect(other.status).toBe(204);
      expect(other.headers.get('access-control-allow-origin')).toBe(allowed);
    }

    // The answers (the raw POST path, errors, an SSE stream) let the page read them, the session id included.
    const initialized = await post(init, { origin: allowed });
    expect(initialized.status).toBe(200);
    expect(initialized.headers.get('access-control-allow-origin')).toBe(allowed);
    expect(initialized.headers.get('access-control-expose-headers')).toContain('mcp-session-id');
    expect(initialized.headers.get('vary')).toContain('Origin');
    const session = initialized.headers.get('mcp-session-id') ?? '';
    await initialized.text();
    const unauthenticated = await fetch(url, { method: 'POST', body: init, headers: { origin: allowed, 'content-type': 'application/json', accept: 'application/json, text/event-stream' } });
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.headers.get('access-control-allow-origin')).toBe(allowed);
    // A body announced too large is refused before it is read, readably too.
    const tooLarge = await fetch(url, { method: 'POST', body: 'x'.repeat(70_000), headers: { origin: allowed, authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' } });
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.headers.get('access-control-allow-origin')).toBe(allowed);
    const controller = new AbortController();
    const stream = await fetch(url, { headers: { origin: allowed, authorization: `Bearer ${key}`, accept: 'text/event-stream', 'mcp-session-id': session }, signal: controller.signal });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('access-control-allow-origin')).toBe(allowed);
    controller.abort();
    // Without an Origin (agents that are not browsers), no CORS headers at all.
    const plain = await post(init);
    expect(plain.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('sessions: initialize with a session id, requests without one, unknown, foreign, bad protocol version', async () => {
    const ping = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' });
    await expectError(await post(init, { 'mcp-session-id': sessionId }), 400, -32600);
    await expectError(await post(ping), 400, -32600);
    await expectError(await post(ping, { 'mcp-session-id': 'x'.repeat(43) }), 404, -32004);
    await expectError(await post(ping, { 'mcp-session-id': 'not-even-well-formed' }), 404, -32004);
    await expectError(await post(ping, { 'mcp-session-id': sessionId, authorization: `Bearer ${sameTenantOtherAgentKey}` }), 404, -32004);
    await expectError(await post(ping, { 'mcp-session-id': sessionId, 'mcp-protocol-version': '1999-01-01' }), 400, -32600);
    // A missing version header means 2025-03-26: accepted.
    const ok = await post(ping, { 'mcp-session-id': sessionId });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ jsonrpc: '2.0', id: 2, result: {} });
    const unknown = await post(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/explode' }), { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' });
    expect(unknown.status).toBe(200);
    const body = await unknown.json();
    expect(body.error.code).toBe(-32601);
    expect(body.error.data.traceId).toMatch(/^[0-9a-f]{32}$/);
    const notification = await post(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), { 'mcp-session-id': sessionId });
    expect(notification.status).toBe(202);
  });

  it('upstream errors never reveal upstream addresses', async () => {
    const res = await post(JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'dead__anything', arguments: {} } }), {
      'mcp-session-id': sessionId,
    });
    const raw = await res.text();
    expect(raw).not.toContain('127.0.0.1');
    expect(JSON.parse(raw).error.code).toBe(-32602);
  });
});
