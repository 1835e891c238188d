import { createLogger } from '@portcullis/shared/util-logger';
import { GATEWAY_RPC } from '../http/gateway-error';
import { MAX_SUBSCRIBED_URI_CHARS, MAX_SUBSCRIPTIONS_PER_SESSION, MemoryTaskRouteStore, UpstreamRpcError, UpstreamUnavailableError, type JsonRpcRequest, type SessionRecord, type UpstreamConfig, type UpstreamRequestOptions, type UpstreamSession } from '@portcullis/gateway/mcp';
import { waitFor } from '@portcullis/shared/util-testing';
import { describe, expect, it, vi } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore, type FakeUpstream, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { isDeepFrozen } from '../listing/immutable';
import { GatewayRequestError, MAX_IN_FLIGHT_PER_PRINCIPAL, MAX_RELAYED_PER_SESSION, SessionEngine, type BusMessage } from './session-engine';
import { NO_STREAM, type MessageSink } from './sinks';

let logs = '';
const { principal, req, initialize, makeEngine, openSession: open, recordOn } = engineSpecs({
  logger: createLogger({ service: 'spec', level: 'info', destination: { write: (line: string) => void (logs += line) } }),
});

const tools = (...names: string[]) => names.map((name) => ({ name, inputSchema: { type: 'object' } }));

function build(
  upstreams: Record<string, FakeUpstream & { prefix: string }>,
  listCacheMs = 0,
  listCacheMaxPages?: number,
  configure: (config: UpstreamConfig) => UpstreamConfig = (config) => config,
  options: { joinRetryMs?: number; listTimeoutMs?: number; initializeWaitMs?: number; maxSessionsPerPrincipal?: number; relayTimeoutMs?: number } = {},
) {
  const registry = new UpstreamRegistry('__');
  registry.replace(
    Object.entries(upstreams).map(([id, u]) => configure(fakeConfig(id, u.prefix))),
    () => undefined,
  );
  const connector = new FakeConnector(upstreams);
  const sessions = new MemorySessionStore();
  const engine = makeEngine({ registry, connector, sessions, options: { listCacheMs, listCacheMaxPages, ...options } });
  return { engine, connector, registry, sessions };
}

/** A new session on `engine` and its record. */
const openSession = async (engine: SessionEngine, capabilities?: Record<string, unknown>) => (await open(engine, { capabilities })).record;

/** The tools a listing of the session answers. */
async function listedTools(engine: SessionEngine, record: Awaited<ReturnType<typeof openSession>>) {
  const response = await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
  if (!('result' in response)) throw new Error(`tools/list failed: ${JSON.stringify(response)}`);
  return response.result['tools'] as Record<string, unknown>[];
}

/**
 * An upstream's `sampling/createMessage` during a call, through the handler the engine gave it: 'answered', or the
 * message of the error it was refused or cancelled with.
 */
const askSampling = (options: UpstreamRequestOptions | undefined, id: number): Promise<string> =>
  (options?.onServerRequest?.({ jsonrpc: '2.0', id, method: 'sampling/createMessage', params: { messages: [], maxTokens: 1 } }, new AbortController().signal) ?? Promise.reject(new Error('no relay'))).then(
    () => 'answered',
    (error: Error) => error.message,
  );

/** An upstream ('llm') listing one tool, `tool`, whose calls run `call` (given the call's options: its relay to the agent). */
function llmUpstream(tool: string, call: (options: UpstreamRequestOptions | undefined) => Promise<Record<string, unknown>>): FakeUpstream & { prefix: string } {
  return {
    prefix: 'llm',
    capabilities: { tools: {} },
    handle: async (method, _params, options) => (method === 'tools/call' ? call(options) : { tools: tools(tool) }),
  };
}

/** The next page cursor of a listing's answer (none for an error). */
const cursorOf = (response: Awaited<ReturnType<SessionEngine['request']>>) => ('result' in response ? response.result['nextCursor'] : undefined);

/** A tools/list page of the session: the first, or the one `params` name. */
const toolsPage = (engine: SessionEngine, record: SessionRecord, params?: Record<string, unknown>) => engine.request(record, req('tools/list', params), NO_STREAM, 'trace');

/**
 * An upstream ('a') listing two pages whose cursors hold until it `restart`s (as a restarted upstream's, or expired
 * ones): a cursor from before is then refused (-32602), and its pages are new ones.
 */
function restartingLister() {
  let epoch = 1;
  const upstream: FakeUpstream & { prefix: string } = {
    prefix: 'a',
    capabilities: { tools: {} },
    handle: async (method, params) => {
      if (method !== 'tools/list') return {};
      if (params?.['cursor'] === undefined) return { tools: tools(`one-${epoch}`), nextCursor: `epoch-${epoch}` };
      if (params['cursor'] !== `epoch-${epoch}`) throw new UpstreamRpcError(-32602, 'Invalid cursor');
      return { tools: tools(`two-${epoch}`) };
    },
  };
  return { upstream, restart: () => void (epoch = 2) };
}

/** Resolves after `ms`, or rejects when the request is aborted first (as a listing's deadline aborts a slow upstream's part). */
const answerAfter = (ms: number, options: UpstreamRequestOptions | undefined) =>
  new Promise((resolve, reject) => {
    setTimeout(resolve, ms);
    options?.signal?.addEventListener('abort', () => reject(options.signal?.reason ?? new Error('aborted')));
  });

const init = initialize();

/**
 * An upstream ('files') whose next `refusals` tool calls are answered as for a session it forgot (HTTP 404: nothing
 * ran); every other request goes to `answer`.
 */
function forgetfulUpstream(
  answer: (method: string, params?: Record<string, unknown>) => Promise<Record<string, unknown>> | Record<string, unknown>,
  capabilities: Record<string, unknown> = { tools: {} },
) {
  const upstream = {
    prefix: 'files',
    refusals: 0,
    capabilities,
    handle: async (method: string, params?: Record<string, unknown>): Promise<Record<string, unknown>> => {
      if (method === 'tools/call' && upstream.refusals > 0) {
        upstream.refusals -= 1;
        throw new UpstreamUnavailableError('session_expired', 'The upstream no longer knows this session');
      }
      return answer(method, params);
    },
  };
  return upstream;
}

describe('SessionEngine with in-memory upstreams', () => {
  it(`refuses a request past ${MAX_IN_FLIGHT_PER_PRINCIPAL} under way for the principal, over its sessions, with -32029 and a retry hint, and takes requests again as they end`, async () => {
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    const { engine } = build({
      u1: {
        prefix: 'slow',
        capabilities: { tools: {} },
        handle: async (method) => {
          if (method === 'tools/list') return { tools: [{ name: 'wait', inputSchema: { type: 'object' } }] };
          await finished;
          return { content: [] };
        },
      },
    });
    const record = await openSession(engine);
    const another = await openSession(engine);
    const call = (session: typeof record) => engine.request(session, req('tools/call', { name: 'slow__wait', arguments: {} }), NO_STREAM, 'trace');
    const under = Array.from({ length: MAX_IN_FLIGHT_PER_PRINCIPAL }, (_, i) => call(i % 2 === 0 ? record : another));
    await new Promise((resolve) => setImmediate(resolve));
    for (const session of [record, another]) expect(await call(session)).toMatchObject({ error: { code: GATEWAY_RPC.RATE_LIMITED, data: { retryAfterSeconds: 1 } } });
    // Another principal is not held to this one's requests.
    const other = await engine.initialize({ ...principal, id: 'someone-else' }, init, 'trace');
    const theirs = await engine.session(other.sessionId ?? '', { ...principal, id: 'someone-else' });
    if (!theirs) throw new Error('no session');
    const theirCall = call(theirs);
    finish();
    expect('result' in (await theirCall)).toBe(true);
    expect((await Promise.all(under)).every((response) => 'result' in response)).toBe(true);
    expect('result' in (await call(record))).toBe(true);
  });

  it('refuses names no listing could show and over-long URIs before any hook sees them', async () => {
    const seen: string[] = [];
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'docs')], () => undefined);
    const engine = makeEngine({
      registry,
      connector: new FakeConnector({ u1: { capabilities: { tools: {}, resources: {} }, handle: async () => ({ tools: [], resources: [], resourceTemplates: [] }) } }),
      hooks: { admit: (info) => void seen.push(info.target?.name ?? info.method) },
    });
    const record = await openSession(engine);
    seen.length = 0;
    for (const name of [`docs__${'x'.repeat(1_000_000)}`, 'docs__a/b', 'docs__é']) {
      const response = await engine.request(record, req('tools/call', { name, arguments: {} }), NO_STREAM, 'trace');
      expect('error' in response && response.error.code).toBe(-32602);
      expect(JSON.stringify(response).length).toBeLessThan(1_000);
    }
    const longUri = await engine.request(record, req('resources/read', { uri: `file:///${'a'.repeat(9_000)}` }), NO_STREAM, 'trace');
    expect('error' in longUri && longUri.error.message).toMatch(/uri longer than/);
    // Paths an upstream would resolve to another resource than the one policy matched.
    // Each of these reads another resource through Node's URL parser (`new URL(uri)`, `fileURLToPath`) than the URI
    // policy matched: file:///srv/secret/... or https://internal.example/x.
    const rewritten = [
      'file:///srv/public/..\\secret/k',
      'file:///srv/sec\tret/k',
      'file:///srv/sec\nret/k',
      ' file:///srv/secret/k',
      'file:///srv/secret/k\u0000',
      'FILE:///srv/secret/k',
      'file:/srv/secret/k',
      'file:srv/secret/k',
      'file://localhost/srv/secret/k',
      'https:internal.example/x',
      'https://INTERNAL.example/x',
      'https://intern%61l.example/x',
      'https://\uff49nternal.example/x',
      'https://internal.example:443/x',
      'https://evil.example\\@internal.example/x',
      // A user or password before the host, or the host's root dot: the same resource upstream, another text to policy.
      'https://evil@internal.example/x',
      'https://evil:pw@internal.example/x',
      'https://:@internal.example/x',
      'https://internal.example./x',
      'postgres://reader@db.internal/orders',
      'file:///srv/\ud800',
      // A file has no query or fragment: a file server reads these as key.pem, which `*.pem` would not have matched.
      'file:///srv/secret/key.pem?',
      'file:///srv/secret/key.pem?/',
      'file:///srv/secret/key.pem#/',
      'FILE:///srv/secret/key.pem#',
    ];
    for (const uri of ['file:///srv/public/../secret/k', 'file:///srv/./secret', 'file:///srv//secret/k', 'file:///srv/%73ecret/k', 'file:///srv/x%2Fk', 'file:///srv/%2e%2e/x', 'db://host/a/..', ...rewritten]) {
      const refused = await engine.request(record, req('resources/read', { uri }), NO_STREAM, 'trace');
      expect('error' in refused && refused.error.message, uri).toMatch(/dot segments/);
    }
    // Ordinary URIs (dots inside names, a query with slashes, spaces and non-ASCII the parser only percent-encodes, a
    // scheme the parser does not know) are routed as before (here: not found).
    for (const uri of ['file:///srv/report.v2.csv', 'https://host/a?next=/b//c', 'mem://notes/..hidden', 'file:///srv/a%20b%25', 'file:///srv/my report.txt', 'https://host/caf\u00e9/men\u00fc', 'postgres://db.internal/orders', 'urn:isbn:0451450523', 'https://docs.example.com', 'https://docs.example.com?page=2', 'file:///a/{id}', 'https://x/search?q="a"&r=\'b\'', 'note://Host/Path', 'file:///srv/sec%20ret/k']) {
      const routed = await engine.request(record, req('resources/read', { uri }), NO_STREAM, 'trace');
      expect('error' in routed && routed.error.message, uri).not.toMatch(/dot segments/);
    }
    expect(seen.filter((name) => name !== 'tools/call' && name !== 'resources/read')).toEqual([]);
  });

  it('shifts the upstream’s progress past what a hook already reported, so progress only increases', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'job')], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: {} },
        handle: async (method, params, options) => {
          if (method !== 'tools/call') return { tools: tools('run') };
          const progressToken = (params?.['_meta'] as { progressToken?: unknown } | undefined)?.progressToken;
          for (const progress of [0, 1, 2]) options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken, progress, total: 2 } });
          return { content: [] };
        },
      },
    });
    const engine = makeEngine({
      registry,
      connector,
      hooks: {
        // As the approval gate does while a call waits: its own progress, then the count in the admission.
        admit: (info, sink) => {
          if (info.method !== 'tools/call') return undefined;
          for (const progress of [0, 1, 2]) sink.send({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: info.progressToken, progress } });
          return { progressSent: 3 };
        },
      },
    });
    const record = await openSession(engine);
    const seen: unknown[] = [];
    await engine.request(record, req('tools/call', { name: 'job__run', arguments: {}, _meta: { progressToken: 'agent-token' } }), { canStream: true, send: (m) => seen.push(m) > 0 }, 'trace');
    const progress = seen.map((m) => (m as { params: { progress: number; total?: number; progressToken: unknown } }).params);
    // The upstream's 0 comes after the gate's last (2): progress only increases (MCP).
    expect(progress.map((p) => p.progress)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(progress.map((p) => p.progressToken)).toEqual(Array(6).fill('agent-token'));
    expect(progress[5]?.total).toBe(5);
  });

  it('closes the agent’s standalone stream when the session ends, here or on another replica', async () => {
    const { engine } = build({ u1: { prefix: 'p', capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    const stream = () => {
      const sink = { closed: 0, canStream: true, send: () => true, close: () => void (sink.closed += 1) };
      return sink;
    };
    const ended = await openSession(engine);
    const first = stream();
    engine.attachStandalone(ended, first);
    await engine.end(ended, 'trace');
    expect(first.closed).toBe(1);

    const elsewhere = await openSession(engine);
    const second = stream();
    engine.attachStandalone(elsewhere, second);
    engine.forget(elsewhere.id);
    expect(second.closed).toBe(1);
  });

  it('keeps one standalone stream per session: a new one closes the one before', async () => {
    const { engine } = build({ u1: { prefix: 'p', capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    const record = await openSession(engine);
    const streams = Array.from({ length: 3 }, () => {
      const sink = { closed: 0, canStream: true, send: () => true, close: () => void (sink.closed += 1) };
      return sink;
    });
    for (const sink of streams) engine.attachStandalone(record, sink);
    expect(streams.map((sink) => sink.closed)).toEqual([1, 1, 0]);
    // Attaching the same stream again closes nothing.
    engine.attachStandalone(record, streams[2] as (typeof streams)[number]);
    expect(streams[2]?.closed).toBe(0);
  });

  it('refuses an initialize whose capabilities or clientInfo are too long or nest too deeply for the session record', async () => {
    const { engine, connector } = build({ u1: { prefix: 'files', capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    const nested = (depth: number): Record<string, unknown> => (depth <= 1 ? {} : { x: nested(depth - 1) });
    const initialize = (capabilities: unknown, clientInfo: unknown = { name: 'spec', version: '1' }) =>
      engine.initialize(principal, req('initialize', { protocolVersion: '2025-06-18', capabilities, clientInfo }), 'trace').then((outcome) => outcome.response);
    expect(await initialize({ experimental: { blob: 'x'.repeat(17 * 1024) } })).toMatchObject({ error: { code: -32602, message: expect.stringContaining('characters of JSON') } });
    expect(await initialize({ experimental: nested(40) })).toMatchObject({ error: { code: -32602, message: expect.stringContaining('32 levels') } });
    expect(await initialize({}, { name: 'spec', version: '1', extra: nested(40) })).toMatchObject({ error: { code: -32602, message: expect.stringContaining('32 levels') } });
    expect(connector.opened).toEqual([]);
    // A few levels, as real clients send: a session.
    expect(await initialize({ experimental: nested(8) })).toMatchObject({ result: { protocolVersion: '2025-06-18' } });
  });

  it('refuses an initialize past maxSessionsPerPrincipal with RATE_LIMITED before any upstream is contacted, and takes one again once a session ended', async () => {
    const { engine, connector } = build({ u1: { prefix: 'files', capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } }, 0, undefined, undefined, { maxSessionsPerPrincipal: 2 });
    const first = await openSession(engine);
    await openSession(engine);
    // Another principal of the tenant has its own count.
    expect((await engine.initialize({ ...principal, id: 'a2' }, init, 'trace')).sessionId).toEqual(expect.any(String));
    const opened = connector.opened.length;
    const refused = await engine.initialize(principal, init, 'trace');
    expect(refused.sessionId).toBeUndefined();
    expect(refused.response).toMatchObject({ error: { code: -32029, message: expect.stringContaining('Too many sessions'), data: { limit: 2, scope: 'principal', retryAfterSeconds: 30 } } });
    expect(connector.opened).toHaveLength(opened);
    await engine.end(first, 'trace');
    expect((await engine.initialize(principal, init, 'trace')).sessionId).toEqual(expect.any(String));
  });

  it('refuses initializes in parallel past maxSessionsPerPrincipal while they connect, and gives a place back when one fails', async () => {
    const { engine, connector, sessions } = build({ u1: { prefix: 'files', capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } }, 0, undefined, undefined, { maxSessionsPerPrincipal: 2 });
    connector.openDelayMs.set('u1', 100);
    const outcomes = await Promise.all([1, 2, 3, 4].map(() => engine.initialize(principal, init, 'trace')));
    expect(outcomes.filter((outcome) => outcome.sessionId !== undefined)).toHaveLength(2);
    expect(outcomes.filter((outcome) => 'error' in outcome.response && outcome.response.error.code === -32029)).toHaveLength(2);
    // An initialize that fails after taking its place (the store refuses the record) gives it back.
    const { engine: other, sessions: otherStore } = build({ u1: { prefix: 'files', capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } }, 0, undefined, undefined, { maxSessionsPerPrincipal: 1 });
    const create = otherStore.create.bind(otherStore);
    otherStore.create = () => Promise.reject(new Error('store down'));
    expect((await other.initialize(principal, init, 'trace')).response).toMatchObject({ error: { code: GATEWAY_RPC.UNAVAILABLE } });
    otherStore.create = create;
    expect((await other.initialize(principal, init, 'trace')).sessionId).toEqual(expect.any(String));
    expect(sessions.reserved.size).toBe(0);
  });

  it('refuses an initialize whose clientInfo or capabilities are too large to keep in a session record', async () => {
    const { engine } = build({ u1: { prefix: 'p', capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    const initialize = (params: Record<string, unknown>) =>
      engine.initialize(principal, req('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' }, ...params }), 'trace');
    for (const params of [
      { clientInfo: { name: 'n'.repeat(257), version: '1' } },
      { clientInfo: { name: 'spec', version: 'v'.repeat(257) } },
      { capabilities: { experimental: { blob: 'x'.repeat(20_000) } } },
    ]) {
      const refused = await initialize(params);
      expect(refused.sessionId).toBeUndefined();
      expect(refused.response).toMatchObject({ error: { code: -32602 } });
    }
    expect((await initialize({ clientInfo: { name: 'n'.repeat(256), version: '1' }, capabilities: { sampling: {}, roots: { listChanged: true } } })).sessionId).toEqual(expect.any(String));
  });

  it('bounds the upstream requests waiting on an agent per session, and fails them when the session ends', async () => {
    const outcomes: string[] = [];
    const { engine } = build({
      u1: llmUpstream('ask', async (options) => {
        const asks = Array.from({ length: MAX_RELAYED_PER_SESSION + 3 }, (_, i) => askSampling(options, i));
        outcomes.push(...(await Promise.all(asks)));
        return { content: [] };
      }),
    });
    const record = await openSession(engine, { sampling: {} });
    const relayed: unknown[] = [];
    // The agent takes the requests and never answers; then its session ends.
    const call = engine.request(record, req('tools/call', { name: 'llm__ask', arguments: {} }), { canStream: true, send: (m) => relayed.push(m) > 0 }, 'trace');
    await vi.waitFor(() => expect(relayed).toHaveLength(MAX_RELAYED_PER_SESSION));
    await engine.end(record, 'trace');
    await call;
    expect(outcomes.filter((outcome) => /already/.test(outcome))).toHaveLength(3);
    expect(outcomes.filter((outcome) => outcome === 'The client session ended')).toHaveLength(MAX_RELAYED_PER_SESSION);
  });

  it("cancels an upstream's requests to the agent when the call they were made for settles, telling the agent first", async () => {
    let asked: Promise<string> | undefined;
    const { engine } = build({
      u1: llmUpstream('ask', async (options) => {
        // The upstream asks, and answers its call without waiting for the agent.
        asked = askSampling(options, 1);
        await new Promise((resolve) => setTimeout(resolve, 10));
        return { content: [] };
      }),
    });
    const record = await openSession(engine, { sampling: {} });
    const sent: Record<string, unknown>[] = [];
    const response = await engine.request(record, req('tools/call', { name: 'llm__ask', arguments: {} }), { canStream: true, send: (m) => sent.push(m as unknown as Record<string, unknown>) > 0 }, 'trace');
    expect(response).toMatchObject({ result: { content: [] } });
    const relayedId = sent[0]?.['id'];
    expect(sent).toEqual([
      { jsonrpc: '2.0', id: relayedId, method: 'sampling/createMessage', params: { messages: [], maxTokens: 1 } },
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: relayedId, reason: 'the call it was made for ended' } },
    ]);
    expect(await asked).toBe('Request cancelled: the call it was made for ended');
  });

  it("gives an upstream's request made outside any call relayTimeoutMs to be answered, then cancels it at the agent", async () => {
    const { engine, connector } = build({ u1: { prefix: 'llm', capabilities: { tools: {} }, handle: async () => ({ tools: tools('ask') }) } }, 0, undefined, undefined, { relayTimeoutMs: 80 });
    const record = await openSession(engine, { roots: {} });
    const standalone: Record<string, unknown>[] = [];
    // The agent listens and never answers.
    engine.attachStandalone(record, { canStream: true, send: (m) => standalone.push(m as unknown as Record<string, unknown>) > 0 });
    const started = performance.now();
    const outcome = await connector.ask('u1', { jsonrpc: '2.0', id: 'r1', method: 'roots/list' }).then(
      () => ({ code: 0, message: 'answered' }),
      (error: { code: number; message: string }) => ({ code: error.code, message: error.message }),
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(70);
    expect(outcome).toEqual({ code: -32603, message: 'The client did not answer in time' });
    const relayedId = standalone[0]?.['id'];
    expect(standalone).toEqual([
      { jsonrpc: '2.0', id: relayedId, method: 'roots/list' },
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: relayedId, reason: 'timed out' } },
    ]);
  });

  it("refuses an upstream's request in a mode or with a feature the agent did not declare, before the agent sees it", async () => {
    const { engine, connector } = build({ u1: { prefix: 'llm', capabilities: { tools: {} }, handle: async () => ({ tools: tools('ask') }) } });
    const { record } = await open(engine, { protocolVersion: '2025-11-25', capabilities: { sampling: {}, elicitation: {} } });
    const standalone: unknown[] = [];
    engine.attachStandalone(record, { canStream: true, send: (m) => standalone.push(m) > 0 });
    const code = (request: JsonRpcRequest) => connector.ask('u1', request).then(() => 0, (error: { code: number }) => error.code);
    expect(await code({ jsonrpc: '2.0', id: 1, method: 'elicitation/create', params: { mode: 'url', message: 'Sign in', url: 'https://example.test/', elicitationId: 'e1' } })).toBe(-32602);
    expect(await code({ jsonrpc: '2.0', id: 2, method: 'sampling/createMessage', params: { messages: [], maxTokens: 1, tools: [{ name: 't', inputSchema: { type: 'object' } }] } })).toBe(-32602);
    expect(await code({ jsonrpc: '2.0', id: 3, method: 'roots/list' })).toBe(-32601);
    expect(standalone).toEqual([]);
  });

  it("tells the agent when an upstream fails its part of a later listing page, rather than ending that upstream's listing unannounced", async () => {
    let second: 'expired' | 'slow' | 'down' | 'ok' = 'expired';
    const { engine } = build({
      u1: {
        prefix: 'zeta',
        capabilities: { tools: {} },
        handle: async (method, params, options) => {
          if (method !== 'tools/list') return { content: [] };
          if (second === 'down' && params?.['cursor'] === undefined) throw new UpstreamUnavailableError('connect_failed', 'connection refused');
          if (params?.['cursor'] === undefined) return { tools: tools('first'), nextCursor: 'p2' };
          if (second === 'expired') throw new UpstreamRpcError(-32602, 'Invalid cursor');
          // Past the listing's 100 ms: the transport gives up when the gateway's deadline aborts the request.
          if (second === 'slow') await new Promise((_resolve, reject) => options?.signal?.addEventListener('abort', () => reject(new UpstreamUnavailableError('timeout', 'timed out'))));
          if (second === 'down') throw new UpstreamUnavailableError('connect_failed', 'connection refused');
          return { tools: tools('second') };
        },
      },
      u2: { prefix: 'alpha', capabilities: { tools: {} }, handle: async (method, params) => (params?.['cursor'] === undefined ? { tools: tools('a1'), nextCursor: 'q2' } : { tools: tools('a2') }) },
    });
    const record = await openSession(engine);
    const page1 = await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    const cursor = 'result' in page1 ? page1.result['nextCursor'] : undefined;
    expect(typeof cursor).toBe('string');
    const page2 = () => engine.request(record, req('tools/list', { cursor }), NO_STREAM, 'trace');
    // The upstream forgot its cursor: the gateway's cursor is no longer valid either (MCP: -32602), list again.
    expect(await page2()).toMatchObject({ error: { code: -32602, message: expect.stringContaining('list again without a cursor') } });
    second = 'slow';
    expect(await page2()).toMatchObject({ error: { code: -32054, message: expect.stringContaining('ask again with the same cursor') } });
    second = 'down';
    expect(await page2()).toMatchObject({ error: { code: -32050 } });
    // The same cursor works once the upstream does: nothing of either upstream was skipped.
    second = 'ok';
    expect(await page2()).toMatchObject({ result: { tools: [{ name: 'alpha__a2' }, { name: 'zeta__second' }] } });
    // A first page still leaves a failing upstream out, logged, and answers with the others.
    second = 'down';
    logs = '';
    const firstAgain = await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    expect(firstAgain).toMatchObject({ result: { tools: [{ name: 'alpha__a1' }] } });
    expect(logs).toContain('upstream dropped out of the request');
  });

  it('lists a refused cursor\'s upstream afresh on the next first page, cached pages or not (it restarted, or its cursors expire)', async () => {
    const lister = restartingLister();
    const { engine } = build({ u1: lister.upstream }, 15_000);
    const record = await openSession(engine);
    const first = await toolsPage(engine, record);
    lister.restart();
    expect(await toolsPage(engine, record, { cursor: cursorOf(first) })).toMatchObject({ error: { code: -32602 } });
    // As told, the agent lists again from the start: the upstream's new first page, whose cursor it takes.
    const again = await toolsPage(engine, record);
    expect(again).toMatchObject({ result: { tools: [{ name: 'a__one-2' }] } });
    expect(await toolsPage(engine, record, { cursor: cursorOf(again) })).toMatchObject({ result: { tools: [{ name: 'a__two-2' }] } });
  });

  it('has every replica drop the refused cursor\'s cached pages: the agent lists again from the start wherever it lands', async () => {
    const lister = restartingLister();
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'a')], () => undefined);
    const connector = new FakeConnector({ u1: lister.upstream });
    // Streamable HTTP (heard on a GET stream): its pages are reused on A while the agent listens there.
    connector.listenable.add('u1');
    const [a, b] = twoReplicas(connector, registry, 15_000);
    const onA = await openSession(a);
    const onB = await recordOn(b, onA.id);
    a.attachStandalone(onA, { canStream: true, send: () => true, close: () => undefined });
    const first = await toolsPage(a, onA);
    lister.restart();
    expect(await toolsPage(b, onB, { cursor: cursorOf(first) })).toMatchObject({ error: { code: -32602 } });
    const again = await toolsPage(a, onA);
    expect(again).toMatchObject({ result: { tools: [{ name: 'a__one-2' }] } });
    expect(await toolsPage(b, onB, { cursor: cursorOf(again) })).toMatchObject({ result: { tools: [{ name: 'a__two-2' }] } });
  });

  it('seals the merged cursor to the session: what the upstreams put in theirs stays unreadable, and another session cannot use it', async () => {
    const { engine } = build({
      u1: {
        prefix: 'files',
        capabilities: { tools: {} },
        handle: async (_method, params) =>
          params?.['cursor'] === undefined ? { tools: tools('open'), nextCursor: 'after=file:///srv/hr/layoffs-2027.xlsx' } : { tools: tools('later') },
      },
    });
    const record = await openSession(engine);
    const page1 = await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    const cursor = 'result' in page1 ? String(page1.result['nextCursor']) : '';
    // Not `u1`: two bytes that sealed (random-looking) text holds by chance about once in a few hundred runs.
    expect(Buffer.from(cursor, 'base64url').toString('latin1')).not.toMatch(/layoffs|after=file/);
    expect(await engine.request(record, req('tools/list', { cursor }), NO_STREAM, 'trace')).toMatchObject({ result: { tools: [{ name: 'files__later' }] } });
    const other = await openSession(engine);
    expect(await engine.request(other, req('tools/list', { cursor }), NO_STREAM, 'trace')).toMatchObject({ error: { code: -32602, message: 'Invalid cursor' } });
  });

  it('answers -32601 to methods of a capability no upstream of the session has, without asking an upstream', async () => {
    const { engine, connector } = build({
      u1: { prefix: 'files', capabilities: { tools: {} }, handle: async () => ({ tools: tools('read') }) },
      u2: { prefix: 'logs', capabilities: { tools: {}, logging: {} }, handle: async () => ({}) },
    });
    const record = await openSession(engine);
    const before = connector.calls.length;
    for (const [method, params] of [
      ['prompts/list', {}],
      ['prompts/get', { name: 'files__p' }],
      ['resources/list', {}],
      ['resources/templates/list', {}],
      ['resources/read', { uri: 'file:///x' }],
      ['resources/subscribe', { uri: 'file:///x' }],
      ['resources/unsubscribe', { uri: 'file:///x' }],
    ] as const) {
      expect(await engine.request(record, req(method, params), NO_STREAM, 'trace')).toMatchObject({ error: { code: -32601, message: `Method not found: ${method}` } });
    }
    expect(connector.calls.length).toBe(before);
    // One upstream has logging: the level goes to it alone. Tools are always listed, if only as none.
    expect(await engine.request(record, req('logging/setLevel', { level: 'debug' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(connector.calls.slice(before).map((call) => `${call.upstreamId} ${call.method}`)).toEqual(['u2 logging/setLevel']);
  });

  it('answers logging/setLevel with -32601 when no upstream has logging', async () => {
    const { engine } = build({ u1: { prefix: 'files', capabilities: { tools: {} }, handle: async () => ({ tools: tools('read') }) } });
    const record = await openSession(engine);
    expect(await engine.request(record, req('logging/setLevel', { level: 'debug' }), NO_STREAM, 'trace')).toMatchObject({ error: { code: -32601 } });
    expect(await engine.request(record, req('tools/list'), NO_STREAM, 'trace')).toMatchObject({ result: { tools: [expect.objectContaining({ name: 'files__read' })] } });
  });

  it('refuses tool and prompt arguments that are not an object before any hook or upstream sees them', async () => {
    const seen: unknown[] = [];
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'fs')], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: {}, prompts: {} },
        handle: async (method) => (method === 'tools/list' ? { tools: tools('run') } : method === 'prompts/list' ? { prompts: [{ name: 'p' }] } : { content: [], messages: [] }),
      },
    });
    const engine = makeEngine({
      registry,
      connector,
      hooks: { admit: (info) => void (info.method === 'tools/call' || info.method === 'prompts/get' ? seen.push(info.arguments) : undefined) },
    });
    const record = await openSession(engine);
    await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    await engine.request(record, req('prompts/list'), NO_STREAM, 'trace');
    const calls = () => connector.calls.filter((call) => call.method === 'tools/call' || call.method === 'prompts/get');
    seen.length = 0;
    for (const [method, name] of [['tools/call', 'fs__run'], ['prompts/get', 'fs__p']] as const) {
      for (const bad of [['rm -rf /x'], 'rm -rf /x', 42, true]) {
        const response = await engine.request(record, req(method, { name, arguments: bad }), NO_STREAM, 'trace');
        expect('error' in response && response.error).toMatchObject({ code: -32602, message: 'arguments must be an object' });
      }
    }
    expect(calls()).toEqual([]);
    expect(seen).toEqual([]);
    // An object, none at all or null (taken as none) go through, and the hooks see what the upstream gets.
    for (const args of [{ path: '/x' }, undefined, null]) {
      const response = await engine.request(record, req('tools/call', { name: 'fs__run', ...(args === undefined ? {} : { arguments: args }) }), NO_STREAM, 'trace');
      expect('result' in response).toBe(true);
    }
    expect(calls()).toHaveLength(3);
    expect(seen).toEqual([{ path: '/x' }, undefined, undefined]);
  });

  it('connects again after an upstream session ended by itself (a legacy SSE stream dropped), not before', async () => {
    const { engine, connector } = build({ u1: { prefix: 'files', capabilities: { tools: {} }, handle: async (method) => (method === 'tools/list' ? { tools: tools('read') } : { content: [] }) } });
    const record = await openSession(engine);
    const call = () => engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
    expect('result' in (await call())).toBe(true);
    expect(connector.opened).toEqual([{ upstreamId: 'u1', how: 'connect' }]);
    expect('result' in (await call())).toBe(true);
    expect(connector.opened).toHaveLength(1);
    // The upstream's stream ends: the next call opens a new upstream session (a fresh one: the ended session's state
    // cannot be resumed), then keeps using it.
    connector.breakSession('u1');
    await new Promise((resolve) => setImmediate(resolve));
    expect('result' in (await call())).toBe(true);
    expect(connector.opened).toEqual([
      { upstreamId: 'u1', how: 'connect' },
      { upstreamId: 'u1', how: 'connect' },
    ]);
    expect('result' in (await call())).toBe(true);
    expect(connector.opened).toHaveLength(2);
    // A stale notice (the old session's, again) changes nothing.
    connector.closedHandlers.get('u1')?.[0]?.();
    await new Promise((resolve) => setImmediate(resolve));
    expect('result' in (await call())).toBe(true);
    expect(connector.opened).toHaveLength(2);
  });

  it('still notices a session that ends after an edit (same connection) made while it was connecting', async () => {
    const { engine, connector, registry } = build({ u1: { prefix: 'files', capabilities: { tools: {} }, handle: async (method) => (method === 'tools/list' ? { tools: tools('read') } : { content: [] }) } });
    const record = await openSession(engine);
    const call = () => engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
    // The transport ends; connecting again takes a while, and a rename is applied meanwhile.
    connector.openDelayMs.set('u1', 100);
    connector.breakSession('u1');
    const first = call();
    await new Promise((resolve) => setTimeout(resolve, 10));
    registry.replace([{ ...fakeConfig('u1', 'files'), name: 'renamed', version: 2 }], () => undefined);
    await Promise.all([first, call()]);
    connector.openDelayMs.delete('u1');
    // That new session's transport ends too: the next call connects again instead of using the dead session.
    const opened = connector.opened.length;
    connector.breakSession('u1');
    expect('result' in (await call())).toBe(true);
    expect(connector.opened.length).toBe(opened + 1);
  });

  it('ends the upstream session made under an old configuration when the upstream is reconfigured (new URL, credentials)', async () => {
    for (const transport of ['sse', 'streamable_http'] as const) {
      const configured = (version: number) => ({ ...fakeConfig('u1', 'files'), transport, version });
      const timeouts: (number | undefined)[] = [];
      const { engine, connector, registry } = build(
        {
          u1: {
            prefix: 'files',
            capabilities: { tools: {} },
            handle: async (method, _params, options) => {
              if (method === 'tools/call') timeouts.push(options?.timeoutMs);
              return method === 'tools/list' ? { tools: tools('read') } : { content: [] };
            },
          },
        },
        0,
        undefined,
        () => configured(1),
      );
      const record = await openSession(engine);
      const call = () => engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
      expect('result' in (await call())).toBe(true);
      expect(connector.ended).toEqual([]);
      // Edited where it does not change the connection (a timeout): the session and its calls under way go on.
      registry.replace([{ ...configured(2), callTimeoutMs: 5_000 }], () => undefined);
      expect('result' in (await call())).toBe(true);
      await new Promise((resolve) => setImmediate(resolve));
      expect(connector.ended).toEqual([]);
      expect(connector.opened.map((opened) => opened.how)).toEqual(['connect']);
      // The kept session's calls take the new call timeout (rate-limit slots are sized by it too).
      expect(timeouts).toEqual([1_000, 5_000]);
      registry.replace([{ ...configured(3), url: 'http://moved.example/mcp' }], () => undefined);
      expect('result' in (await call())).toBe(true);
      await new Promise((resolve) => setImmediate(resolve));
      // Before, the old session stayed open (its streams reconnecting to the old host with the old credentials). It is
      // ended at the old server (close: DELETE), a Streamable HTTP one too: no replica has a use for it any more.
      expect(connector.ended, transport).toEqual([{ upstreamId: 'u1', how: 'close' }]);
      // A Streamable HTTP session id belongs to the old URL: the new one gets a session of its own, never that id.
      expect(connector.opened.map((opened) => opened.how)).toEqual(['connect', transport === 'sse' ? 'resume' : 'connect']);
      expect('result' in (await call())).toBe(true);
      expect(connector.ended).toHaveLength(1);
    }
  });

  it('reports an initialize that failed after admission (session store down) and ends the upstream sessions it opened', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    const sessions = new MemorySessionStore();
    sessions.create = async () => Promise.reject(new Error('redis unreachable'));
    const reported: string[] = [];
    const engine = makeEngine({
      registry,
      connector,
      sessions,
      hooks: { admit: () => undefined, completed: (info, outcome) => void reported.push(`${info.method}:${outcome.outcome}`) },
    });
    // Unavailable, try again (503 with Retry-After at the route): not the gateway's own failure (500).
    const refused = await engine.initialize(principal, init, 'trace');
    expect(refused.sessionId).toBeUndefined();
    expect(refused.response).toMatchObject({ error: { code: GATEWAY_RPC.UNAVAILABLE, message: expect.stringMatching(/session store is unavailable/) } });
    // The hooks hear of it (audit records it; a fail-closed tenant's count of calls in flight goes down again).
    expect(reported).toEqual(['initialize:error']);
    await vi.waitFor(() => expect(connector.ended).toEqual([{ upstreamId: 'u1', how: 'close' }]));
  });

  it('tells the hooks which credential each request presented: initialize, a routed call, and a call refused before the hooks', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: tools('read'), content: [] }) } });
    const reported: [string, string | undefined][] = [];
    const engine = makeEngine({
      registry,
      connector,
      hooks: { admit: () => undefined, completed: (info) => void reported.push([info.method, info.credentialId]) },
    });
    const { sessionId } = await engine.initialize({ ...principal, credentialId: 'key-1' }, init, 'trace');
    const record = await engine.session(sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    // Any of the principal's keys may use its session: each request names its own.
    await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace', undefined, 'key-2');
    expect(await engine.request(record, req('tools/call', { name: 'zz__nope', arguments: {} }), NO_STREAM, 'trace', undefined, 'key-2')).toMatchObject({ error: {} });
    await engine.request(record, req('ping'), NO_STREAM, 'trace');
    expect(reported).toEqual([
      ['initialize', 'key-1'],
      ['tools/call', 'key-2'],
      ['tools/call', 'key-2'],
      ['ping', undefined],
    ]);
  });

  it('refuses an initialize at once when the session store cannot take its place under the cap: no upstream is contacted', async () => {
    const { engine, connector, sessions } = build({ u1: { prefix: 'files', capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } }, 0, undefined, undefined, { maxSessionsPerPrincipal: 2 });
    sessions.reserve = () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6379'));
    const refused = await engine.initialize(principal, init, 'trace');
    expect(refused.sessionId).toBeUndefined();
    expect(refused.response).toMatchObject({ error: { code: GATEWAY_RPC.UNAVAILABLE, data: { retryAfterSeconds: 1 } } });
    expect(connector.opened).toEqual([]);
  });

  it("passes an upstream's error data on as it wrote it, its own traceId kept; the gateway's is added only where it has none", async () => {
    let data: unknown;
    const { engine } = build({
      u1: {
        prefix: 'files',
        capabilities: { tools: {} },
        handle: async (method) => {
          if (method === 'tools/list') return { tools: [{ name: 'read', inputSchema: { type: 'object' } }] };
          throw new UpstreamRpcError(-32099, 'no', data);
        },
      },
    });
    const record = await openSession(engine);
    const call = () => engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'gateway-trace');
    data = { traceId: 'upstream-trace', detail: 'x' };
    expect(await call()).toMatchObject({ error: { code: -32099, data: { traceId: 'upstream-trace', detail: 'x' } } });
    data = { detail: 'x' };
    expect(await call()).toMatchObject({ error: { code: -32099, data: { traceId: 'gateway-trace', detail: 'x' } } });
    data = 'text';
    expect(await call()).toMatchObject({ error: { code: -32099, data: 'text' } });
  });

  it("marks an upstream's own error as the upstream's, for the hooks (its data is not the gateway's to trust)", async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: {} },
        handle: async (method) => {
          if (method === 'tools/list') return { tools: [{ name: 'read', inputSchema: { type: 'object' } }] };
          throw new UpstreamRpcError(-32000, 'no', { approvalId: '0190f0a1-b2c3-7d4e-8f90-a1b2c3d4e5f6' });
        },
      },
    });
    const reported: { outcome: string; fromUpstream: boolean | undefined }[] = [];
    const engine = makeEngine({
      registry,
      connector,
      hooks: { admit: () => undefined, completed: (info, outcome) => void (info.method === 'tools/call' && reported.push({ outcome: outcome.outcome, fromUpstream: outcome.fromUpstream })) },
    });
    const record = await openSession(engine);
    await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
    await engine.request(record, req('tools/call', { name: 'nosuch__read', arguments: {} }), NO_STREAM, 'trace');
    // The upstream's error, and the gateway's own (a tool of no upstream).
    expect(reported).toEqual([
      { outcome: 'upstream_error', fromUpstream: true },
      { outcome: 'error', fromUpstream: undefined },
    ]);
  });

  it('relays an upstream’s sampling request only to an agent that declared sampling', async () => {
    const { engine } = build({
      u1: llmUpstream('summarize', async (options) => {
        const ask = { jsonrpc: '2.0' as const, id: 7, method: 'sampling/createMessage', params: { messages: [], maxTokens: 10 } };
        try {
          return await (options?.onServerRequest?.(ask, new AbortController().signal) ?? Promise.reject(new Error('no relay')));
        } catch (error) {
          return { content: [{ type: 'text', text: `refused: ${(error as { code?: number }).code}` }] };
        }
      }),
    });
    const call = () => req('tools/call', { name: 'llm__summarize', arguments: {} });

    // Declared nothing: the upstream's request is refused as the client would (method not found), never relayed.
    const plain = await openSession(engine);
    const relayedToPlain: unknown[] = [];
    const refused = await engine.request(plain, call(), { canStream: true, send: (m) => relayedToPlain.push(m) > 0 }, 'trace');
    expect(JSON.stringify(refused)).toContain('refused: -32601');
    expect(relayedToPlain).toEqual([]);

    // Declared sampling: relayed to the agent's stream, and its answer goes back upstream.
    const sampling = await openSession(engine, { sampling: {} });
    const answered = engine.request(
      sampling,
      call(),
      {
        canStream: true,
        send: (message) => {
          const relayed = message as { id?: string; method?: string };
          if (relayed.method === 'sampling/createMessage' && typeof relayed.id === 'string') {
            queueMicrotask(() => engine.answer(sampling, { jsonrpc: '2.0', id: relayed.id as string, result: { role: 'assistant', content: { type: 'text', text: 'a summary' }, model: 'm' } }));
          }
          return true;
        },
      },
      'trace',
    );
    expect(JSON.stringify(await answered)).toContain('a summary');
  });

  it('asks the agent for no context of "this server" or "all servers" on an upstream\'s behalf, and tells upstreams the client has none to give', async () => {
    // The agent sees one server, the gateway: its context is every upstream's, which would go back to the asking one.
    const asked = ['thisServer', 'allServers', 'none', undefined];
    const { engine, connector } = build({
      u1: llmUpstream('summarize', async (options) => {
        for (const [n, includeContext] of asked.entries()) {
          const params = { messages: [{ role: 'user', content: { type: 'text', text: 'sum up' } }], maxTokens: 10, ...(includeContext === undefined ? {} : { includeContext }) };
          await options?.onServerRequest?.({ jsonrpc: '2.0', id: n, method: 'sampling/createMessage', params }, new AbortController().signal);
        }
        return { content: [] };
      }),
      u2: { prefix: 'crm', capabilities: { tools: {} }, handle: async () => ({ tools: tools('customers') }) },
    });
    const connected = vi.spyOn(connector, 'connect');
    // 2025-11-25: the version of sampling with tools (an older agent's `tools` is cut, as its version lacks them).
    const { record } = await open(engine, { capabilities: { sampling: { context: {}, tools: {} }, roots: {} }, protocolVersion: '2025-11-25' });
    // Upstreams are told the client samples (with tools), not that it adds context.
    const told = connected.mock.calls.map((call) => ((call as unknown[])[1] as { capabilities: unknown }).capabilities);
    expect(told).toEqual([{ sampling: { tools: {} }, roots: {} }, { sampling: { tools: {} }, roots: {} }]);
    const relayed: Record<string, unknown>[] = [];
    const response = await engine.request(
      record,
      req('tools/call', { name: 'llm__summarize', arguments: {} }),
      {
        canStream: true,
        send: (message) => {
          const m = message as { id?: string; method?: string; params?: Record<string, unknown> };
          if (m.method !== 'sampling/createMessage') return true;
          relayed.push(m.params ?? {});
          queueMicrotask(() => engine.answer(record, { jsonrpc: '2.0', id: m.id as string, result: { role: 'assistant', content: { type: 'text', text: 'x' }, model: 'm' } }));
          return true;
        },
      },
      'trace',
    );
    expect(response).toMatchObject({ result: { content: [] } });
    expect(relayed.map((params) => params['includeContext'])).toEqual(['none', 'none', 'none', undefined]);
    // Nothing else of the request changes.
    expect(relayed[0]).toEqual({ messages: [{ role: 'user', content: { type: 'text', text: 'sum up' } }], maxTokens: 10, includeContext: 'none' });
  });

  it('relays the agent\'s progress on a relayed request back to the upstream that asked, under the upstream\'s own token', async () => {
    const { engine, connector } = build({
      u1: llmUpstream('summarize', async (options) => {
        const ask = { jsonrpc: '2.0' as const, id: 7, method: 'sampling/createMessage', params: { messages: [], maxTokens: 10, _meta: { progressToken: 1 } } };
        return (await options?.onServerRequest?.(ask, new AbortController().signal)) ?? {};
      }),
    });
    const record = await openSession(engine, { sampling: {} });
    let seenToken: unknown;
    const answered = engine.request(
      record,
      req('tools/call', { name: 'llm__summarize', arguments: {} }),
      {
        canStream: true,
        send: (message) => {
          const relayed = message as { id?: string; method?: string; params?: { _meta?: { progressToken?: unknown } } };
          if (relayed.method !== 'sampling/createMessage' || typeof relayed.id !== 'string') return true;
          const id = relayed.id;
          seenToken = relayed.params?._meta?.progressToken;
          queueMicrotask(() => {
            // Another session's progress with the same token is not this request's.
            engine.notification({ ...record, id: 'someone-else' }, { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: id, progress: 9 } });
            engine.notification(record, { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: id, progress: 1, total: 2 } });
            engine.answer(record, { jsonrpc: '2.0', id, result: { role: 'assistant', content: { type: 'text', text: 'ok' }, model: 'm' } });
            // Too late: the request is answered.
            engine.notification(record, { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: id, progress: 2, total: 2 } });
          });
          return true;
        },
      },
      'trace',
    );
    expect(JSON.stringify(await answered)).toContain('ok');
    // The agent saw the relayed request's own id as the token (two upstreams' tokens cannot collide at the agent).
    expect(typeof seenToken).toBe('string');
    expect(String(seenToken)).toMatch(/^pcs\.r1\./);
    expect(connector.notified).toEqual([{ upstreamId: 'u1', method: 'notifications/progress', params: { progressToken: 1, progress: 1, total: 2 } }]);
  });

  it('ends a request the agent cancels as cancelled, not as an internal error, and keeps its reason short', async () => {
    const { engine } = build({
      u1: {
        prefix: 'slow',
        capabilities: { tools: {} },
        // As the real upstream sessions do: a call rejects with its signal's reason once aborted.
        handle: (method, _params, options) =>
          method === 'tools/call'
            ? new Promise((_resolve, reject) => options?.signal?.addEventListener('abort', () => reject(options.signal?.reason)))
            : Promise.resolve({ tools: tools('wait') }),
      },
    });
    const record = await openSession(engine);
    logs = '';
    const call = req('tools/call', { name: 'slow__wait', arguments: {} });
    const pending = engine.request(record, call, NO_STREAM, 'trace');
    await new Promise((resolve) => setTimeout(resolve, 20));
    engine.notification(record, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: call.id, reason: 'r'.repeat(100_000) } });
    const response = await pending;
    expect('error' in response && response.error.code).not.toBe(-32603);
    expect(JSON.stringify(response)).toMatch(/cancelled/);
    expect(logs).not.toContain('unexpected error');
    expect(logs).not.toContain('r'.repeat(300));
  });

  it('cancels a listing\'s page requests upstream when the agent cancels the listing, and no other listing\'s', async () => {
    // Pages that come only when their request is aborted (as the real upstream sessions reject: with the signal's reason).
    const pending: { signal: { aborted: boolean } | undefined; answer: (page: Record<string, unknown>) => void }[] = [];
    const page: FakeUpstream['handle'] = (_method, _params, options) =>
      new Promise((resolve, reject) => {
        pending.push({ signal: options?.signal, answer: resolve });
        options?.signal?.addEventListener('abort', () => reject(options.signal?.reason));
      });
    // listTimeoutMs long enough that only the cancellation can end a page request here.
    const { engine } = build({ u1: { prefix: 'one', capabilities: { tools: {} }, handle: page }, u2: { prefix: 'two', capabilities: { tools: {} }, handle: page } }, 0, undefined, undefined, { listTimeoutMs: 10_000 });
    const record = await openSession(engine);
    logs = '';
    const cancelled = req('tools/list');
    const first = engine.request(record, cancelled, NO_STREAM, 'trace');
    await waitFor(() => pending.length === 2);
    // Another listing of the same upstreams, under way at the same time.
    const second = engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    await waitFor(() => pending.length === 4);
    engine.notification(record, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: cancelled.id, reason: 'not needed' } });
    expect(pending.map((p) => p.signal?.aborted)).toEqual([true, true, false, false]);
    const response = await first;
    expect('error' in response && response.error.code).not.toBe(-32603);
    expect(JSON.stringify(response)).toMatch(/cancelled/);
    // The upstreams did not fail the listing: they were told to stop.
    expect(logs).not.toContain('upstream dropped out');
    for (const p of pending.slice(2)) p.answer({ tools: tools('read') });
    expect(await second).toMatchObject({ result: { tools: [{ name: 'one__read' }, { name: 'two__read' }] } });
  });

  it('merges listings in prefix order, paginates across upstreams with one opaque cursor, and routes calls with original names', async () => {
    const { engine, connector } = build({
      u1: {
        prefix: 'zeta',
        capabilities: { tools: {} },
        handle: async (method, params) =>
          method === 'tools/list'
            ? params?.['cursor'] === 'p2'
              ? { tools: tools('third') }
              : { tools: tools('first', 'second'), nextCursor: 'p2' }
            : { content: [{ type: 'text', text: `called ${String(params?.['name'])}` }] },
      },
      u2: { prefix: 'alpha', capabilities: { tools: { listChanged: true }, logging: {} }, handle: async () => ({ tools: tools('only') }) },
    });
    const { sessionId, response } = await engine.initialize(principal, init, 'trace');
    expect(response).toMatchObject({ result: { protocolVersion: '2025-06-18', capabilities: { tools: { listChanged: true }, logging: {} } } });
    const record = await engine.session(sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    expect(await engine.session(record.id, { ...principal, id: 'someone-else' })).toBeUndefined();

    const page1 = await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    if (!('result' in page1)) throw new Error('error');
    expect((page1.result['tools'] as { name: string }[]).map((t) => t.name)).toEqual(['alpha__only', 'zeta__first', 'zeta__second']);
    const cursor = page1.result['nextCursor'];
    expect(typeof cursor).toBe('string');
    const page2 = await engine.request(record, req('tools/list', { cursor }), NO_STREAM, 'trace');
    expect(page2).toMatchObject({ result: { tools: [{ name: 'zeta__third' }] } });
    expect('nextCursor' in (page2 as { result: object }).result).toBe(false);

    const bad = await engine.request(record, req('tools/list', { cursor: 'junk' }), NO_STREAM, 'trace');
    expect(bad).toMatchObject({ error: { code: -32602, data: { traceId: 'trace' } } });

    const call = await engine.request(record, req('tools/call', { name: 'zeta__second', arguments: {} }), NO_STREAM, 'trace');
    expect(call).toMatchObject({ result: { content: [{ text: 'called second' }] } });
    expect(connector.calls.at(-1)).toMatchObject({ upstreamId: 'u1', method: 'tools/call', params: { name: 'second' } });
    expect(await engine.request(record, req('ping'), NO_STREAM, 't')).toMatchObject({ result: {} });
    expect(await engine.request(record, req('bogus/method'), NO_STREAM, 't')).toMatchObject({ error: { code: -32601 } });
  });

  it('drops a slow or failing upstream from listings (logged) without blocking the others', async () => {
    const { engine } = build({
      fast: { prefix: 'fast', capabilities: { tools: {} }, handle: async () => ({ tools: tools('a') }) },
      slow: {
        prefix: 'slow',
        capabilities: { tools: {} },
        handle: (_m, _p, options?: UpstreamRequestOptions) =>
          new Promise((_resolve, reject) => options?.signal?.addEventListener('abort', () => reject(options.signal?.reason))),
      },
      broken: { prefix: 'broken', capabilities: { tools: {} }, handle: async () => Promise.reject(new Error('boom at http://internal')) },
    });
    const record = await openSession(engine);
    const started = Date.now();
    const page = await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    // listTimeoutMs is 100: generous for a loaded machine, while waiting on the silent upstream would never end.
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(page).toMatchObject({ result: { tools: [{ name: 'fast__a' }] } });
    expect(logs).toContain('upstream dropped out');
  });

  it('drops only the upstream whose page the filter cannot take (an item nested past the stack), not the whole listing', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'good'), fakeConfig('u2', 'bad')], () => undefined);
    const engine = makeEngine({
      registry,
      connector: new FakeConnector({
        u1: { capabilities: { tools: {} }, handle: async () => ({ tools: tools('ok') }) },
        u2: { capabilities: { tools: {} }, handle: async () => ({ tools: tools('deep') }) },
      }),
      // As tool pinning's hash of a definition nested thousands of levels deep: the recursion runs out of stack.
      hooks: {
        filter: (_record, _target, config, list) => {
          if (config.id === 'u2') throw new RangeError('Maximum call stack size exceeded');
          return list;
        },
      },
    });
    const record = await openSession(engine);
    logs = '';
    expect((await listedTools(engine, record)).map((tool) => tool['name'])).toEqual(['good__ok']);
    expect(logs).toContain('upstream dropped out');
  });

  it('answers a listing within listTimeoutMs while an upstream reconnects slowly, and that upstream joins once it is back', async () => {
    const { engine, connector } = build({
      u1: { prefix: 'fast', capabilities: { tools: {} }, handle: async () => ({ tools: tools('a') }) },
      u2: { prefix: 'slow', capabilities: { tools: {} }, handle: async () => ({ tools: tools('b') }) },
    });
    const record = await openSession(engine);
    expect((await listedTools(engine, record)).map((tool) => tool['name'])).toEqual(['fast__a', 'slow__b']);
    // u2's transport ends; connecting it again takes 600 ms (a stdio process starting, a slow handshake).
    connector.openDelayMs.set('u2', 600);
    connector.breakSession('u2');
    const started = Date.now();
    expect((await listedTools(engine, record)).map((tool) => tool['name'])).toEqual(['fast__a']);
    expect(Date.now() - started).toBeLessThan(450);
    // The connect went on meanwhile: once it is done the upstream is listed again.
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect((await listedTools(engine, record)).map((tool) => tool['name'])).toEqual(['fast__a', 'slow__b']);
  });

  it('asks an upstream left out of a first listing page again, and tells the agent its list changed once it answers', async () => {
    let slowAnswers = 1;
    const pageRequests: string[] = [];
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('a', 'fast'), fakeConfig('b', 'slow')], () => undefined);
    const connector = new FakeConnector({
      a: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: tools('x') }) },
      b: {
        capabilities: { tools: { listChanged: true } },
        handle: async (method, _params, options) => {
          pageRequests.push(method);
          // Slow once (a pause, a cold cache): past the listing's deadline, which aborts the request.
          if (slowAnswers-- > 0) await answerAfter(400, options);
          return { tools: tools('y') };
        },
      },
    });
    const engine = makeEngine({ registry, connector, options: { listTimeoutMs: 150 } });
    const record = await openSession(engine);
    const toAgent: string[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => toAgent.push('method' in message ? message.method : 'answer') > 0 });

    expect((await listedTools(engine, record)).map((item) => item['name'])).toEqual(['fast__x']);
    await waitFor(() => toAgent.includes('notifications/tools/list_changed'), { timeoutMs: 3_000 });
    expect(toAgent).toEqual(['notifications/tools/list_changed']);
    expect((await listedTools(engine, record)).map((item) => item['name'])).toEqual(['fast__x', 'slow__y']);
    // The listing's own request, the recheck, and the agent's listing after the announcement: nothing more.
    expect(pageRequests).toEqual(['tools/list', 'tools/list', 'tools/list']);
  });

  it('announces an upstream always slower than the listing deadline once, with its page kept for the listing that follows', async () => {
    const pageRequests: string[] = [];
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('a', 'fast'), fakeConfig('b', 'slow')], () => undefined);
    const connector = new FakeConnector({
      a: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: tools('x') }) },
      b: {
        capabilities: { tools: { listChanged: true } },
        // Always a little slower than the listing's deadline, well within its call timeout.
        handle: async (method, _params, options) => {
          pageRequests.push(method);
          await answerAfter(250, options);
          return { tools: tools('y') };
        },
      },
    });
    const engine = makeEngine({ registry, connector, options: { listTimeoutMs: 150, listCacheMs: 15_000 } });
    const record = await openSession(engine);
    // An agent as the SDK's clients are: it lists again on every list_changed.
    const listings: string[][] = [];
    let announcements = 0;
    const list = async () => (await listedTools(engine, record)).map((item) => String(item['name']));
    engine.attachStandalone(record, {
      canStream: true,
      send: (message) => {
        if ('method' in message && message.method === 'notifications/tools/list_changed') {
          announcements += 1;
          void list().then((names) => listings.push(names));
        }
        return true;
      },
    });
    listings.push(await list());
    await waitFor(() => listings.length >= 2, { timeoutMs: 3_000 });
    // The announcement is true: the listing it prompts has the slow upstream, from the page the recheck kept.
    expect(listings).toEqual([['fast__x'], ['fast__x', 'slow__y']]);
    await new Promise((resolve) => setTimeout(resolve, 800));
    // Not again and again: the listing's own request and the recheck's.
    expect({ announcements, pageRequests: pageRequests.length }).toEqual({ announcements: 1, pageRequests: 2 });
  });

  it('passes on a resource template\'s completions the listing filter would show, adjusts the total, and none when the filter fails', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'repos')], () => undefined);
    let failing = false;
    const engine = makeEngine({
      registry,
      connector: new FakeConnector({
        u1: {
          capabilities: { resources: {}, completions: {} },
          handle: async (method) => {
            if (method === 'resources/list') return { resources: [] };
            if (method === 'resources/templates/list') return { resourceTemplates: [{ uriTemplate: 'repo://{org}/{name}', name: 'repo' }] };
            return { completion: { values: ['acme', 'secret-org', 'public'], total: 10, hasMore: true } };
          },
        },
      }),
      hooks: {
        filter: (_record, kind, _upstream, items) => {
          if (failing) throw new Error('policy store unreachable');
          return kind === 'resource' ? items.filter((item) => !String(item['uri']).startsWith('repo://secret-org/')) : items;
        },
      },
    });
    const record = await openSession(engine);
    const complete = () => engine.request(record, req('completion/complete', { ref: { type: 'ref/resource', uri: 'repo://{org}/{name}' }, argument: { name: 'org', value: '' } }), NO_STREAM, 'trace');
    // Judged at `repo://<value>/` (the name not given yet is left out): a deny on the subtree hides the org's name.
    expect(await complete()).toMatchObject({ result: { completion: { values: ['acme', 'public'], total: 9, hasMore: true } } });
    failing = true;
    expect(await complete()).toMatchObject({ result: { completion: { values: [] } } });
  });

  it('passes on a read\'s contents of other URIs only where the hooks would let the request read them, and none of them when a hook fails', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    let failing = false;
    const asked: string[] = [];
    const engine = makeEngine({
      registry,
      connector: new FakeConnector({
        u1: {
          capabilities: { resources: {} },
          handle: async (method) => {
            if (method === 'resources/list') return { resources: [{ uri: 'file:///srv/docs', name: 'docs' }] };
            if (method === 'resources/templates/list') return { resourceTemplates: [] };
            // A directory's read: the directory itself and its entries, one of them under a denied subtree.
            return {
              contents: [
                { uri: 'file:///srv/docs', text: 'readme.md key.pem' },
                { uri: 'file:///srv/docs/readme.md', text: '# hello' },
                { uri: 'file:///srv/secret/key.pem', text: 'PRIVATE KEY' },
              ],
            };
          },
        },
      }),
      hooks: {
        alsoReadable: (info, uri) => {
          if (failing) throw new Error('policy store unreachable');
          asked.push(`${info.method} ${info.target?.name} ${uri}`);
          return !uri.startsWith('file:///srv/secret/');
        },
      },
    });
    const record = await openSession(engine);
    const read = async () => {
      const answer = await engine.request(record, req('resources/read', { uri: 'file:///srv/docs' }), NO_STREAM, 'trace');
      return ((answer as unknown as { result: { contents: { uri: string }[] } }).result.contents ?? []).map((item) => item.uri);
    };
    expect(await read()).toEqual(['file:///srv/docs', 'file:///srv/docs/readme.md']);
    // Asked about the other URIs only, with the request that read their parent.
    expect(asked).toEqual(['resources/read file:///srv/docs file:///srv/docs/readme.md', 'resources/read file:///srv/docs file:///srv/secret/key.pem']);
    // Fails closed: only what was asked for, which the policy itself decided.
    failing = true;
    expect(await read()).toEqual(['file:///srv/docs']);
  });

  it('reads a listed resource from the upstream that lists it, before another upstream\'s matching template; the first lister keeps a URI two list', async () => {
    const reads: string[] = [];
    const upstream = (id: string, resources: string[], templates: string[]): FakeUpstream & { prefix: string } => ({
      prefix: id,
      capabilities: { resources: {} },
      handle: async (method) => {
        if (method === 'resources/list') return { resources: resources.map((uri) => ({ uri, name: uri })) };
        if (method === 'resources/templates/list') return { resourceTemplates: templates.map((uriTemplate) => ({ uriTemplate, name: uriTemplate })) };
        reads.push(id);
        return { contents: [] };
      },
    });
    const { engine } = build({
      a: upstream('a', ['mem://shared'], ['file:///{path}']),
      b: upstream('b', ['file:///project/readme.md', 'mem://shared'], []),
    });
    const record = await openSession(engine);
    // The agent has seen the templates only: the template of `a` matches, but `b` lists this very resource.
    expect('result' in (await engine.request(record, req('resources/templates/list'), NO_STREAM, 'trace'))).toBe(true);
    expect('result' in (await engine.request(record, req('resources/read', { uri: 'file:///project/readme.md' }), NO_STREAM, 'trace'))).toBe(true);
    expect(reads).toEqual(['b']);
    // A URI no listing names goes by the template.
    expect('result' in (await engine.request(record, req('resources/read', { uri: 'file:///elsewhere.txt' }), NO_STREAM, 'trace'))).toBe(true);
    // Both list `mem://shared`: it stays with the first that listed it, however often the listing is fetched.
    for (let round = 0; round < 3; round += 1) {
      expect('result' in (await engine.request(record, req('resources/list'), NO_STREAM, 'trace'))).toBe(true);
      expect('result' in (await engine.request(record, req('resources/read', { uri: 'mem://shared' }), NO_STREAM, 'trace'))).toBe(true);
    }
    expect(reads).toEqual(['b', 'a', 'a', 'a', 'a']);
  });

  it('moves a URI to the upstream that lists it after the one that had it said its resources changed', async () => {
    const lists: Record<string, string[]> = { a: ['mem://doc'], b: [] };
    const reads: string[] = [];
    const upstream = (id: string): FakeUpstream & { prefix: string } => ({
      prefix: id,
      capabilities: { resources: { listChanged: true } },
      handle: async (method) => {
        if (method === 'resources/list') return { resources: (lists[id] ?? []).map((uri) => ({ uri, name: uri })) };
        if (method === 'resources/templates/list') return { resourceTemplates: [] };
        reads.push(id);
        return { contents: [] };
      },
    });
    const { engine, connector } = build({ a: upstream('a'), b: upstream('b') });
    const record = await openSession(engine);
    const read = () => engine.request(record, req('resources/read', { uri: 'mem://doc' }), NO_STREAM, 'trace');
    expect('result' in (await read())).toBe(true);
    lists['a'] = [];
    lists['b'] = ['mem://doc'];
    connector.emit('a', { jsonrpc: '2.0', method: 'notifications/resources/list_changed' });
    connector.emit('b', { jsonrpc: '2.0', method: 'notifications/resources/list_changed' });
    expect('result' in (await read())).toBe(true);
    expect(reads).toEqual(['a', 'b']);
  });

  it('learns no route from a listing page fetched across its upstream\'s resources change', async () => {
    const lists: Record<string, string[]> = { a: ['mem://doc'], b: [] };
    const reads: string[] = [];
    let slow = false;
    const upstream = (id: string): FakeUpstream & { prefix: string } => ({
      prefix: id,
      capabilities: { resources: { listChanged: true } },
      handle: async (method) => {
        if (method === 'resources/list') {
          const page = { resources: (lists[id] ?? []).map((uri) => ({ uri, name: uri })) };
          if (id === 'a' && slow) await new Promise((resolve) => setTimeout(resolve, 50));
          return page;
        }
        if (method === 'resources/templates/list') return { resourceTemplates: [] };
        reads.push(id);
        return { contents: [] };
      },
    });
    const { engine, connector } = build({ a: upstream('a'), b: upstream('b') });
    const record = await openSession(engine);
    slow = true;
    // The agent lists; a's page (still naming mem://doc) is in flight when both upstreams say their resources changed.
    const listing = engine.request(record, req('resources/list'), NO_STREAM, 'trace');
    await new Promise((resolve) => setTimeout(resolve, 10));
    lists['a'] = [];
    lists['b'] = ['mem://doc'];
    connector.emit('a', { jsonrpc: '2.0', method: 'notifications/resources/list_changed' });
    connector.emit('b', { jsonrpc: '2.0', method: 'notifications/resources/list_changed' });
    await listing;
    slow = false;
    expect('result' in (await engine.request(record, req('resources/read', { uri: 'mem://doc' }), NO_STREAM, 'trace'))).toBe(true);
    expect(reads).toEqual(['b']);
  });

  it('reads by template without walking every listing each time when an upstream has no resources/templates/list', async () => {
    const upstream = (id: string, templates: boolean): FakeUpstream & { prefix: string } => ({
      prefix: id,
      capabilities: { resources: {} },
      handle: async (method) => {
        if (method === 'resources/list') return { resources: [] };
        if (method === 'resources/templates/list') {
          if (!templates) throw new UpstreamRpcError(-32601, 'Method not found');
          return { resourceTemplates: [{ uriTemplate: 'file:///{path}', name: 'files' }] };
        }
        return { contents: [] };
      },
    });
    const { engine, connector } = build({ a: upstream('a', true), b: upstream('b', false) });
    const record = await openSession(engine);
    connector.calls.length = 0;
    for (let index = 0; index < 5; index += 1) {
      expect('result' in (await engine.request(record, req('resources/read', { uri: `file:///x${index}.txt` }), NO_STREAM, 'trace'))).toBe(true);
    }
    // One walk (two upstreams, two listings each), then the template for the other reads within the second.
    expect(connector.calls.filter((call) => call.method !== 'resources/read')).toHaveLength(4);
  });

  it('counts an upstream without resources/templates/list (-32601) as listing no templates: unknown URIs do not walk again and again', async () => {
    const { engine, connector } = build({
      a: {
        prefix: 'a',
        capabilities: { resources: {} },
        handle: async (method) => {
          if (method === 'resources/templates/list') throw new UpstreamRpcError(-32601, 'Method not found');
          return method === 'resources/list' ? { resources: [{ uri: 'mem://listed', name: 'listed' }] } : { contents: [] };
        },
      },
    });
    const record = await openSession(engine);
    expect(await engine.request(record, req('resources/templates/list', {}), NO_STREAM, 'trace')).toMatchObject({ result: { resourceTemplates: [] } });
    connector.calls.length = 0;
    for (let index = 0; index < 3; index += 1) {
      expect(await engine.request(record, req('resources/read', { uri: `mem://nobody-lists/${index}` }), NO_STREAM, 'trace')).toMatchObject({ error: { code: -32002 } });
    }
    // One complete walk (its two listings), then the unknown URIs within ROUTE_RELEARN_MS are answered from it.
    expect(connector.calls.map((call) => call.method)).toEqual(['resources/list', 'resources/templates/list']);
  });

  it('runs a call refused by a legacy SSE upstream that forgot its session (its POST answered 404) again on a new one, once per interval', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([{ ...fakeConfig('u1', 'files'), transport: 'sse' }], () => undefined);
    const upstream = forgetfulUpstream((method) => (method === 'tools/list' ? { tools: tools('read') } : { content: [{ type: 'text', text: 'done' }] }));
    const connector = new FakeConnector({ u1: upstream });
    connector.unresumable.add('u1');
    const engine = makeEngine({ registry, connector, sessions: new MemorySessionStore() });
    const record = await openSession(engine);
    const opened = connector.opened.length;
    upstream.refusals = 1;
    const call = () => engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
    expect(await call()).toMatchObject({ result: { content: [{ text: 'done' }] } });
    expect(connector.calls.filter((c) => c.method === 'tools/call')).toHaveLength(2);
    expect(connector.opened.length).toBe(opened + 1);
    // Refused again within 10 s: the call fails, and no session is opened at the agent's request rate.
    upstream.refusals = 1;
    expect(await call()).toMatchObject({ error: {} });
    expect(connector.calls.filter((c) => c.method === 'tools/call')).toHaveLength(3);
  });

  it('starts a new upstream session when the upstream forgot the old one (404), runs the refused call again there, and records it', async () => {
    const sessions = new MemorySessionStore();
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const upstream = forgetfulUpstream((method) => (method === 'tools/list' ? { tools: tools('read') } : { content: [{ type: 'text', text: 'done' }] }));
    const connector = new FakeConnector({ u1: upstream });
    const engine = makeEngine({ registry, connector, sessions });
    const record = await openSession(engine);
    upstream.refusals = 1;
    const response = await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
    expect(response).toMatchObject({ result: { content: [{ text: 'done' }] } });
    expect(connector.calls.filter((call) => call.method === 'tools/call')).toHaveLength(2);
    expect(connector.opened).toEqual([
      { upstreamId: 'u1', how: 'connect' },
      { upstreamId: 'u1', how: 'connect' },
    ]);
    expect(sessions.records.get(record.id)?.upstreams['u1']?.sessionId).toBe('upstream-session-u1-2');
    // Forgotten again within 10 s of the renewal (an upstream that answers 404 to every session): the call fails and no
    // new upstream session is started at the agent's request rate.
    upstream.refusals = 1;
    connector.calls.length = 0;
    const soon = await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
    expect('error' in soon).toBe(true);
    expect(connector.calls.filter((call) => call.method === 'tools/call')).toHaveLength(1);
    expect(connector.opened.filter((open) => open.how === 'connect')).toHaveLength(2);
    // Later, a renewal again; and once per request: a new session refused too fails the call, it does not loop.
    const later = vi.spyOn(Date, 'now').mockReturnValue(Date.now() + 11_000);
    try {
      upstream.refusals = 2;
      connector.calls.length = 0;
      const after = await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
      expect('error' in after).toBe(true);
      expect(connector.calls.filter((call) => call.method === 'tools/call')).toHaveLength(2);
      expect(connector.opened.filter((open) => open.how === 'connect')).toHaveLength(3);
    } finally {
      later.mockRestore();
    }
  });

  it('starts no new upstream session per request when the store cannot record one, and retries none after a failed connect', async () => {
    class FailingStore extends MemorySessionStore {
      failing = false;
      override async swapUpstream(...args: Parameters<MemorySessionStore['swapUpstream']>) {
        if (this.failing) throw new Error('redis down');
        return super.swapUpstream(...args);
      }
    }
    const sessions = new FailingStore();
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const upstream = forgetfulUpstream(() => ({ content: [] }));
    const connector = new FakeConnector({ u1: upstream });
    const engine = makeEngine({ registry, connector, sessions });
    const record = await openSession(engine);
    sessions.failing = true;
    upstream.refusals = 5;
    for (let index = 0; index < 5; index += 1) {
      expect('error' in (await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace'))).toBe(true);
    }
    // One attempt (ended again, as it could not be recorded), not one per request.
    expect(connector.opened.filter((open) => open.how === 'connect')).toHaveLength(2);
    expect(connector.ended.filter((end) => end.how === 'close')).toHaveLength(1);
  });

  it('connects again after a connect that failed while an edit (same connection) replaced the entry', async () => {
    class FailingConnector extends FakeConnector {
      failing = false;
      override async connect(config: UpstreamConfig): Promise<UpstreamSession> {
        const session = await super.connect(config);
        if (this.failing) throw new UpstreamUnavailableError('connect_failed', 'refused');
        return session;
      }
    }
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FailingConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ content: [] }) } });
    const engine = makeEngine({ registry, connector });
    const record = await openSession(engine);
    const call = () => engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
    connector.openDelayMs.set('u1', 100);
    connector.failing = true;
    connector.breakSession('u1');
    const first = call();
    await new Promise((resolve) => setTimeout(resolve, 10));
    registry.replace([{ ...fakeConfig('u1', 'files'), name: 'renamed', version: 2 }], () => undefined);
    await Promise.all([first, call()]);
    connector.failing = false;
    connector.openDelayMs.delete('u1');
    expect('result' in (await call())).toBe(true);
  });

  it('takes the session another replica stored when the one it renewed a moment ago is forgotten too', async () => {
    const dead = new Set<string>();
    const { a, b, connector, record } = await sessionOnTwoReplicas({ capabilities: { tools: {} }, handle: async () => ({ content: [] }) });
    // Sessions named in `dead` answer as an upstream that forgot them.
    for (const method of ['connect', 'resume'] as const) {
      const original = connector[method].bind(connector) as (...args: unknown[]) => Promise<UpstreamSession>;
      (connector as unknown as Record<string, unknown>)[method] = async (...args: unknown[]) => {
        const session = await original(...args);
        const request = session.request.bind(session);
        return {
          ...session,
          request: (m: string, p?: Record<string, unknown>, o?: UpstreamRequestOptions) =>
            dead.has(session.state().sessionId ?? '') ? Promise.reject(new UpstreamUnavailableError('session_expired', 'gone')) : request(m, p, o),
        };
      };
    }
    const onA = await a.session(record.id, principal);
    if (!onA) throw new Error('no session');
    const call = (engine: SessionEngine, on: typeof record) => engine.request(on, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
    // A's first upstream session ends; its next call starts -2 (and A counts that as a renewal).
    connector.breakSession('u1');
    expect('result' in (await call(a, onA))).toBe(true);
    dead.add('upstream-session-u1-2');
    const fresh = await b.session(record.id, principal);
    if (!fresh) throw new Error('no session');
    expect('result' in (await call(b, fresh))).toBe(true); // B renews: -3
    // A renewed within 10 s, but the stored record names B's newer session: A takes that one.
    expect('result' in (await call(a, onA))).toBe(true);
  });

  it('keeps the capabilities initialize advertised when an upstream session is renewed (the agent was told those)', async () => {
    const upstream = forgetfulUpstream((method) => (method === 'tools/list' ? { tools: tools('read') } : { content: [] }));
    const { engine, connector } = build({ u1: upstream });
    const record = await openSession(engine);
    const received: string[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => received.push('method' in message ? message.method : 'answer') > 0 });
    // The restarted upstream declares prompts now; the agent was never told of prompts, nor that their list may change.
    upstream.capabilities = { tools: {}, prompts: { listChanged: true } };
    upstream.refusals = 1;
    expect('result' in (await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace'))).toBe(true);
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/prompts/list_changed' });
    expect(received).toEqual([]);
  });

  it('ends, on DELETE, the upstream session the stored record names, also when this replica holds an older one or a stale record', async () => {
    const upstream = forgetfulUpstream(() => ({ content: [] }));
    const { a, b, connector, record } = await sessionOnTwoReplicas(upstream);
    const stale = await a.session(record.id, principal);
    if (!stale) throw new Error('no session');
    // B meets the 404 and renews: the record names -2; A still holds -1 (from initialize) and the record copy naming it.
    upstream.refusals = 1;
    expect('result' in (await b.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace'))).toBe(true);
    await a.end(stale, 'trace');
    expect(connector.closedSessions).toEqual(expect.arrayContaining(['upstream-session-u1', 'upstream-session-u1-2']));
  });

  it('keeps one new upstream session when two replicas find the old one forgotten: the second ends its own and continues the first\'s', async () => {
    const upstream = forgetfulUpstream((method) => (method === 'tools/list' ? { tools: tools('read') } : { content: [{ type: 'text', text: 'done' }] }));
    const { a, b, connector, record } = await sessionOnTwoReplicas(upstream);
    const call = () => req('tools/call', { name: 'files__read', arguments: {} });
    // Both replicas hold the upstream session (B resumes it).
    expect(await b.request(record, call(), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    // The upstream restarted: each replica's next call meets the 404, and both renew at once.
    upstream.refusals = 2;
    const [onA, onB] = await Promise.all([a.request(record, call(), NO_STREAM, 'trace'), b.request(record, call(), NO_STREAM, 'trace')]);
    expect(onA).toMatchObject({ result: { content: [{ text: 'done' }] } });
    expect(onB).toMatchObject({ result: { content: [{ text: 'done' }] } });
    // Initialize once, then one new session per replica; the one stored second was ended, and that replica continued
    // the stored one (a resume of the session the record names).
    expect(connector.opened.filter((open) => open.how === 'connect')).toHaveLength(3);
    expect(connector.ended.filter((end) => end.how === 'close')).toHaveLength(1);
    expect(connector.opened.at(-1)).toEqual({ upstreamId: 'u1', how: 'resume' });
  });

  it('passes a list change to the agent only for an area initialize advertised, listChanged or not upstream', async () => {
    const { engine, connector } = build({
      u1: { prefix: 'quiet', capabilities: { tools: {}, prompts: {}, logging: {} }, handle: async () => ({ tools: tools('a'), prompts: [] }) },
      u2: { prefix: 'loud', capabilities: { prompts: { listChanged: true } }, handle: async () => ({ prompts: [] }) },
    });
    const record = await openSession(engine);
    const received: string[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => received.push('method' in message ? message.method : 'answer') > 0 });
    await new Promise((resolve) => setImmediate(resolve));
    // Tools and prompts are advertised with listChanged (the gateway's own changes are announced too): passed on, from
    // any upstream. No upstream has resources, so the agent was not told of them: a resources change is not sent.
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/prompts/list_changed' });
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/list_changed' });
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'x' } });
    expect(received).toEqual(['notifications/tools/list_changed', 'notifications/prompts/list_changed', 'notifications/message']);
  });

  it("announces the gateway's own list changes (policy, upstreams) although no upstream declared listChanged", async () => {
    const { engine } = build({ u1: { prefix: 'quiet', capabilities: { tools: {}, prompts: {}, resources: {} }, handle: async () => ({ tools: [], prompts: [], resources: [] }) } });
    const record = await openSession(engine);
    const received: string[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => received.push('method' in message ? message.method : 'answer') > 0 });
    await new Promise((resolve) => setImmediate(resolve));
    received.length = 0;
    engine.listsChangedFor('t1');
    expect(received.sort()).toEqual(['notifications/prompts/list_changed', 'notifications/resources/list_changed', 'notifications/tools/list_changed']);
  });

  it('answers upstream failures on calls without internals', async () => {
    const { engine } = build({
      u: { prefix: 'u', capabilities: { tools: {} }, handle: async () => Promise.reject(new Error('ECONNREFUSED http://internal-u.example/mcp')) },
    });
    const record = await openSession(engine);
    const response = await engine.request(record, req('tools/call', { name: 'u__x' }), NO_STREAM, 'trace');
    expect(response).toMatchObject({ error: { code: -32603, message: 'Internal error', data: { traceId: 'trace' } } });
    expect(JSON.stringify(response)).not.toContain('internal-u');
  });
});

/**
 * Two engines (replicas ra and rb) over one registry, connector and session store, joined by an in-memory bus; with
 * `serialised`, one that copies each message through JSON as the Redis one does (and throws as it does).
 */
function twoReplicas(
  connector: FakeConnector,
  registry: UpstreamRegistry,
  listCacheMs = 0,
  sessions = new MemorySessionStore(),
  serialised = false,
  localIdleMs: number = SPEC_ENGINE_OPTIONS.localIdleMs,
): [SessionEngine, SessionEngine] {
  const replicas: SessionEngine[] = [];
  const byId = new Map<string, SessionEngine>();
  const copy = (message: BusMessage): BusMessage => (serialised ? (JSON.parse(JSON.stringify(message)) as BusMessage) : message);
  const bus = {
    broadcast: (message: BusMessage) => {
      const sent = copy(message);
      replicas.forEach((replica) => replica.onBusMessage(sent));
    },
    sendTo: (replicaId: string, message: BusMessage) => byId.get(replicaId)?.onBusMessage(copy(message)),
  };
  const make = (replicaId: string) => makeEngine({ registry, connector, sessions, bus, options: { replicaId, listCacheMs, localIdleMs } });
  const [a, b] = [make('ra'), make('rb')];
  replicas.push(a, b);
  byId.set('ra', a).set('rb', b);
  return [a, b];
}

/** One session opened on replica A of two sharing a bus and one upstream `u1`, and its record as B looks it up. */
async function sessionOnTwoReplicas(upstream: FakeUpstream) {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'files')], () => undefined);
  const connector = new FakeConnector({ u1: upstream });
  const [a, b] = twoReplicas(connector, registry);
  const { sessionId } = await a.initialize(principal, init, 'trace');
  const record = await recordOn(b, sessionId ?? '');
  return { a, b, connector, record };
}

/** One session opened on replica A of two with upstream `u1`, by an agent that declared roots; its record as B looks it up. */
async function rootsSessionOnTwoReplicas(localIdleMs?: number) {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'files')], () => undefined);
  const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
  const [a, b] = twoReplicas(connector, registry, 0, new MemorySessionStore(), true, localIdleMs);
  const withRoots = req('initialize', { protocolVersion: '2025-06-18', capabilities: { roots: {} }, clientInfo: { name: 'spec', version: '1' } });
  const { sessionId } = await a.initialize(principal, withRoots, 'trace');
  const record = await recordOn(b, sessionId ?? '');
  return { a, b, connector, record };
}

/**
 * A session opened on replica A of two with upstream `u1` only, looked up and listed on B; then the tenant gains `u2`
 * (answering with `handle`), which neither replica has joined yet.
 */
async function beforeJoinOnTwoReplicas(handle: FakeUpstream['handle'], sessions?: MemorySessionStore) {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'one')], () => undefined);
  const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: tools('a') }) }, u2: { capabilities: { tools: {} }, handle } });
  const [a, b] = twoReplicas(connector, registry, 0, sessions);
  const onA = await openSession(a);
  const onB = await recordOn(b, onA.id);
  await b.request(onB, req('tools/list'), NO_STREAM, 'trace');
  registry.replace([fakeConfig('u1', 'one'), fakeConfig('u2', 'two')], () => undefined);
  return { a, b, onA, onB, connector };
}

describe('SessionEngine: upstreams joining a session after its initialize', () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const names = (listed: Record<string, unknown>[]) => listed.map((tool) => tool['name']);
  const opens = (connector: FakeConnector, upstreamId: string) => connector.opened.filter((open) => open.upstreamId === upstreamId).map((open) => open.how);

  it('joins an upstream down at initialize on a listing once joinRetryMs passed, told the agent\'s log level, and keeps it joined through a renewal', async () => {
    let forget = false;
    const { engine, connector, sessions } = build(
      {
        u1: { prefix: 'one', capabilities: { tools: {}, logging: {} }, handle: async (method) => (method === 'tools/list' ? { tools: tools('a') } : {}) },
        u2: {
          prefix: 'two',
          capabilities: { tools: {}, logging: {}, completions: {} },
          handle: async (method) => {
            if (method === 'tools/list') return { tools: tools('b') };
            if (forget && method === 'tools/call') {
              forget = false;
              throw new UpstreamUnavailableError('session_expired', 'The upstream no longer knows this session');
            }
            return { content: [{ type: 'text', text: 'from two' }] };
          },
        },
      },
      0,
      undefined,
      undefined,
      { joinRetryMs: 1_000 },
    );
    connector.down.add('u2');
    const { sessionId, response } = await engine.initialize(principal, init, 'trace');
    const record = await engine.session(sessionId ?? '', principal);
    if (!record || !('result' in response)) throw new Error('no session');
    // u2 was missing: every list is advertised with listChanged (what joins later can be announced and used), and
    // nothing else of u2's (completions) ever is.
    const advertised = { tools: { listChanged: true }, prompts: { listChanged: true }, resources: { listChanged: true }, logging: {} };
    expect(response.result['capabilities']).toEqual(advertised);
    await engine.request(record, req('logging/setLevel', { level: 'debug' }), NO_STREAM, 'trace');
    // Not tried again by the listing that follows initialize, nor when it is back within joinRetryMs.
    expect(names(await listedTools(engine, record))).toEqual(['one__a']);
    connector.down.delete('u2');
    expect(names(await listedTools(engine, record))).toEqual(['one__a']);
    expect(opens(connector, 'u2')).toEqual(['connect']);
    await sleep(1_050);
    expect(names(await listedTools(engine, record))).toEqual(['one__a', 'two__b']);
    expect(opens(connector, 'u2')).toEqual(['connect', 'connect']);
    expect(connector.calls.filter((call) => call.upstreamId === 'u2' && call.method === 'logging/setLevel').map((call) => call.params)).toEqual([{ level: 'debug' }]);
    expect(logs).toContain('upstream joined the session');
    expect(await engine.request(record, req('tools/call', { name: 'two__b', arguments: {} }), NO_STREAM, 'trace')).toMatchObject({ result: { content: [{ text: 'from two' }] } });

    // u2 forgets its session: the new one is still a joined upstream's, so what the session advertises stays.
    forget = true;
    expect(await engine.request(record, req('tools/call', { name: 'two__b', arguments: {} }), NO_STREAM, 'trace')).toMatchObject({ result: { content: [{ text: 'from two' }] } });
    expect(sessions.records.get(record.id)?.upstreams['u2']).toMatchObject({ sessionId: 'upstream-session-u2-2', joined: true });

    // Ended with the session.
    await engine.end(record, 'trace');
    expect(connector.closedSessions).toEqual(['upstream-session-u1', 'upstream-session-u2-2']);
  });

  it('joins an upstream configured after initialize for an agent listening on its stream, and tells it which advertised lists changed', async () => {
    const { engine, connector, registry } = build({
      u1: { prefix: 'one', capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: tools('a') }) },
      u2: { prefix: 'two', capabilities: { tools: {}, prompts: {} }, handle: async () => ({ tools: tools('b') }) },
    });
    registry.replace([fakeConfig('u1', 'one')], () => undefined);
    const listening = await openSession(engine);
    const silent = await openSession(engine);
    const received: string[] = [];
    engine.attachStandalone(listening, { canStream: true, send: (message) => received.push('method' in message ? message.method : 'answer') > 0 });
    await sleep(10);

    registry.replace([fakeConfig('u1', 'one'), fakeConfig('u2', 'two')], () => undefined);
    engine.joinMissingUpstreams();
    await waitFor(() => received.length > 0, { timeoutMs: 5_000 });
    // Tools were advertised with listChanged; prompts were not advertised at all.
    expect(received).toEqual(['notifications/tools/list_changed']);
    // Only the listening session was joined in the background; the other joins on its next listing.
    expect(opens(connector, 'u2')).toEqual(['connect']);
    expect(names(await listedTools(engine, listening))).toEqual(['one__a', 'two__b']);
    expect(opens(connector, 'u2')).toEqual(['connect']);
    expect(names(await listedTools(engine, silent))).toEqual(['one__a', 'two__b']);
    expect(opens(connector, 'u2')).toEqual(['connect', 'connect']);
  });

  it('answers a listing within listTimeoutMs while a missing upstream joins slowly, and tells the agent once it has', async () => {
    let pageDelayMs = 0;
    const { engine, connector, registry } = build(
      {
        u1: { prefix: 'one', capabilities: { tools: { listChanged: true } }, handle: async () => (await sleep(pageDelayMs), { tools: tools('a') }) },
        u2: { prefix: 'two', capabilities: { tools: {} }, handle: async () => ({ tools: tools('b') }) },
      },
      0,
      undefined,
      undefined,
      { listTimeoutMs: 1_000 },
    );
    registry.replace([fakeConfig('u1', 'one')], () => undefined);
    const record = await openSession(engine);
    const received: string[] = [];
    registry.replace([fakeConfig('u1', 'one'), fakeConfig('u2', 'two')], () => undefined);
    // Not listening yet: nothing joins in the background.
    engine.joinMissingUpstreams();
    await sleep(50);
    expect(opens(connector, 'u2')).toEqual([]);
    engine.attachStandalone(record, { canStream: true, send: (message) => received.push('method' in message ? message.method : 'answer') > 0 });
    connector.openDelayMs.set('u2', 2_500);
    pageDelayMs = 700;
    const started = Date.now();
    expect(names(await listedTools(engine, record))).toEqual(['one__a']);
    // One listTimeoutMs (1 s) for the join and the other pages together: the join (2.5 s) is given up after 1 s while
    // u1's page (0.7 s) came meanwhile. It was one bound after the other: 1 s, then 0.7 s.
    expect(Date.now() - started).toBeLessThan(1_450);
    pageDelayMs = 0;
    expect(received).toEqual([]);
    await waitFor(() => received.length > 0, { timeoutMs: 5_000 });
    expect(received).toEqual(['notifications/tools/list_changed']);
    expect(names(await listedTools(engine, record))).toEqual(['one__a', 'two__b']);
    expect(opens(connector, 'u2')).toEqual(['connect']);
  });

  it('answers initialize without waiting past initializeWaitMs for a slow upstream, which joins once connected', async () => {
    const { engine, connector } = build(
      {
        u1: { prefix: 'one', capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: tools('a') }) },
        u2: { prefix: 'alpha', capabilities: { tools: {}, prompts: {} }, handle: async () => ({ tools: tools('b') }) },
      },
      0,
      undefined,
      undefined,
      { initializeWaitMs: 100, listTimeoutMs: 2_000 },
    );
    connector.openDelayMs.set('u2', 600);
    const started = Date.now();
    const { sessionId, response } = await engine.initialize(principal, init, 'trace');
    expect(Date.now() - started).toBeLessThan(500);
    if (!('result' in response)) throw new Error('initialize failed');
    // Told what the upstreams connected by then have, and of every list and logging (what joins later can be announced, and log).
    expect(response.result['capabilities']).toEqual({ tools: { listChanged: true }, prompts: { listChanged: true }, resources: { listChanged: true }, logging: {} });
    expect(logs).toContain('upstream still connecting when initialize answered');
    const record = await engine.session(sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    const received: string[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => received.push('method' in message ? message.method : 'answer') > 0 });
    // A listing waits for the join under way (within listTimeoutMs), opens no second session, and lists the joined
    // upstream in prefix order.
    expect(names(await listedTools(engine, record))).toEqual(['alpha__b', 'one__a']);
    expect(opens(connector, 'u2')).toEqual(['connect']);
    await waitFor(() => received.length >= 2, { timeoutMs: 5_000 });
    expect(received).toEqual(['notifications/tools/list_changed', 'notifications/prompts/list_changed']);
  });

  it('ends an upstream session that connects after initialize failed', async () => {
    const { engine, connector, sessions } = build(
      {
        u1: { prefix: 'one', capabilities: { tools: {} }, handle: async () => ({ tools: tools('a') }) },
        u2: { prefix: 'two', capabilities: { tools: {} }, handle: async () => ({ tools: tools('b') }) },
      },
      0,
      undefined,
      undefined,
      { initializeWaitMs: 50 },
    );
    connector.openDelayMs.set('u2', 200);
    sessions.create = () => Promise.reject(new Error('store down'));
    expect((await engine.initialize(principal, init, 'trace')).response).toMatchObject({ error: { code: GATEWAY_RPC.UNAVAILABLE } });
    await waitFor(() => connector.closedSessions.length >= 2, { timeoutMs: 5_000 });
    expect(connector.closedSessions).toEqual(['upstream-session-u1', 'upstream-session-u2']);
  });

  it('keeps nothing of an initialize\'s wait once it is answered (the shutdown wake-up is taken back)', async () => {
    const { engine } = build({ u1: { prefix: 'one', capabilities: { tools: {} }, handle: async () => ({ tools: tools('a') }) } });
    for (let i = 0; i < 20; i += 1) expect((await engine.initialize(principal, init, 'trace')).sessionId).toEqual(expect.any(String));
    expect((engine as unknown as { stopWaiters: Set<unknown> }).stopWaiters.size).toBe(0);
  });

  it('answers an initialize waiting on its upstreams when the engine shuts down: unavailable at once, no session, upstreams closed', async () => {
    const { engine, connector, sessions } = build({ u1: { prefix: 'one', capabilities: { tools: {} }, handle: async () => ({ tools: tools('a') }) } }, 0, undefined, undefined, { initializeWaitMs: 5_000 });
    connector.openDelayMs.set('u1', 400);
    const started = performance.now();
    const initialized = engine.initialize(principal, init, 'trace');
    await sleep(20);
    await engine.shutdown();
    const { sessionId, response } = await initialized;
    expect(performance.now() - started).toBeLessThan(300);
    expect(sessionId).toBeUndefined();
    expect(response).toMatchObject({ error: { code: GATEWAY_RPC.UNAVAILABLE, message: expect.stringMatching(/shutting down/) } });
    expect(sessions.records.size).toBe(0);
    await waitFor(() => connector.ended.length > 0, { timeoutMs: 3_000 });
    expect(connector.ended).toEqual([{ upstreamId: 'u1', how: 'close' }]);
  });

  it('closes an upstream session still connecting for an initialize that finishes after the engine shut down', async () => {
    const { engine, connector } = build({ u1: { prefix: 'one', capabilities: { tools: {} }, handle: async () => ({ tools: tools('a') }) } }, 0, undefined, undefined, { initializeWaitMs: 50 });
    connector.openDelayMs.set('u1', 300);
    const initialized = engine.initialize(principal, init, 'trace');
    await sleep(10);
    await engine.shutdown();
    await initialized;
    await waitFor(() => connector.ended.length > 0, { timeoutMs: 3_000 });
    expect(connector.ended).toEqual([{ upstreamId: 'u1', how: 'close' }]);
  });

  it('answers parallel calls to a joined upstream on a replica whose copy of the record predates the join', async () => {
    // Reading the stored record takes a while, as a Redis round trip does.
    const sessions = new MemorySessionStore();
    const reload = sessions.reload.bind(sessions);
    sessions.reload = async (id: string) => {
      await sleep(30);
      return reload(id);
    };
    const { a, b, onA, onB } = await beforeJoinOnTwoReplicas(async (method) => (method === 'tools/list' ? { tools: tools('b', 'c') } : { content: [] }), sessions);
    await a.request(onA, req('tools/list'), NO_STREAM, 'trace');
    const answers = await Promise.all(['two__b', 'two__c', 'two__b'].map((name) => b.request(onB, req('tools/call', { name, arguments: {} }), NO_STREAM, 'trace')));
    expect(answers).toEqual(answers.map(() => expect.objectContaining({ result: { content: [] } })));
  });

  it('uses the upstream session another replica joined, for calls, listings and cursors, instead of opening another', async () => {
    const { a, b, onA, onB, connector } = await beforeJoinOnTwoReplicas(async (method, params) =>
      method === 'tools/list' ? (params?.['cursor'] === undefined ? { tools: tools('b'), nextCursor: 'more' } : { tools: tools('c') }) : { content: [] },
    );

    const first = await a.request(onA, req('tools/list'), NO_STREAM, 'trace');
    if (!('result' in first)) throw new Error('tools/list failed');
    expect(names(first.result['tools'] as Record<string, unknown>[])).toEqual(['one__a', 'two__b']);
    expect(opens(connector, 'u2')).toEqual(['connect']);
    // B's copy of the record predates the join: the cursor A gave and a call to the joined upstream still work there.
    const rest = await b.request(onB, req('tools/list', { cursor: first.result['nextCursor'] }), NO_STREAM, 'trace');
    expect(rest).toMatchObject({ result: { tools: [{ name: 'two__c' }] } });
    expect(await b.request(onB, req('tools/call', { name: 'two__b', arguments: {} }), NO_STREAM, 'trace')).toMatchObject({ result: { content: [] } });
    expect(opens(connector, 'u2')).toEqual(['connect', 'resume']);
    expect(new Set(connector.calls.filter((call) => call.upstreamId === 'u2').map((call) => call.sessionId))).toEqual(new Set(['upstream-session-u2']));
  });

  it('joins an upstream down at initialize when the agent calls its tool without listing, instead of answering "Unknown tool"', async () => {
    const echo = (prefix: string): FakeUpstream & { prefix: string } => ({
      prefix,
      capabilities: { tools: {} },
      handle: async (method) => (method === 'tools/list' ? { tools: tools('echo') } : { content: [{ type: 'text', text: `from ${prefix}` }] }),
    });
    const { engine, connector } = build({ ua: echo('a'), ub: echo('b') }, 0, undefined, undefined, { joinRetryMs: 10 });
    connector.down.add('ub');
    const record = await openSession(engine);
    connector.down.delete('ub');
    await sleep(20);
    expect(await engine.request(record, req('tools/call', { name: 'b__echo', arguments: {} }), NO_STREAM, 'trace')).toMatchObject({ result: { content: [{ text: 'from b' }] } });
    // A prefix no upstream has is still unknown.
    expect(await engine.request(record, req('tools/call', { name: 'c__echo', arguments: {} }), NO_STREAM, 'trace')).toMatchObject({ error: { code: -32602, message: 'Unknown tool: c__echo' } });
  });

  it('waits for the called upstream\'s join only, not for another upstream still connecting', async () => {
    const echo = (prefix: string): FakeUpstream & { prefix: string } => ({
      prefix,
      capabilities: { tools: {} },
      handle: async (method) => (method === 'tools/list' ? { tools: tools('echo') } : { content: [{ type: 'text', text: `from ${prefix}` }] }),
    });
    const { engine, connector } = build({ ua: echo('a'), ub: echo('b'), uc: echo('c') }, 0, undefined, undefined, { joinRetryMs: 10, listTimeoutMs: 3_000 });
    connector.down.add('ub');
    connector.down.add('uc');
    const record = await openSession(engine);
    connector.down.delete('ub');
    connector.down.delete('uc');
    connector.openDelayMs.set('uc', 2_500);
    await sleep(20);
    const startedAt = performance.now();
    expect(await engine.request(record, req('tools/call', { name: 'b__echo', arguments: {} }), NO_STREAM, 'trace')).toMatchObject({ result: { content: [{ text: 'from b' }] } });
    expect(performance.now() - startedAt).toBeLessThan(1_000);
  });

  it('takes a cursor naming an upstream another replica joined though it read the record for joins a moment before', async () => {
    const { a, b, onA, onB, connector } = await beforeJoinOnTwoReplicas(async (method, params) =>
      method === 'tools/list' ? (params?.['cursor'] === undefined ? { tools: tools('b'), nextCursor: 'more' } : { tools: tools('c') }) : { content: [] },
    );
    // B tries to join the new upstream while it is still starting (reading the record for joins as it does).
    connector.down.add('u2');
    expect(await b.request(onB, req('tools/list'), NO_STREAM, 'trace')).toMatchObject({ result: { tools: [{ name: 'one__a' }] } });
    connector.down.delete('u2');
    const first = await a.request(onA, req('tools/list'), NO_STREAM, 'trace');
    if (!('result' in first)) throw new Error('tools/list failed');
    expect(names(first.result['tools'] as Record<string, unknown>[])).toEqual(['one__a', 'two__b']);
    // Within the second: the cursor, sealed by the gateway, proves the join, and B reads the record again for it.
    expect(await b.request(onB, req('tools/list', { cursor: first.result['nextCursor'] }), NO_STREAM, 'trace')).toMatchObject({ result: { tools: [{ name: 'two__c' }] } });
  });

  it('takes two continuations under way together whose cursor names an upstream another replica joined', async () => {
    /** The store's read takes a while, as a Redis round trip under load: the two reads overlap. */
    class SlowReload extends MemorySessionStore {
      override async reload(id: string) {
        await sleep(30);
        return super.reload(id);
      }
    }
    const { a, b, onA, onB } = await beforeJoinOnTwoReplicas(async (method, params) => (params?.['cursor'] === undefined ? { tools: tools('b'), nextCursor: 'more' } : { tools: tools('c') }), new SlowReload());
    const first = await a.request(onA, req('tools/list'), NO_STREAM, 'trace');
    const cursor = 'result' in first ? first.result['nextCursor'] : undefined;
    const pages = await Promise.all([0, 1].map(() => b.request(onB, req('tools/list', { cursor }), NO_STREAM, 'trace')));
    for (const page of pages) expect(page).toMatchObject({ result: { tools: [{ name: 'two__c' }] } });
  });
});

describe('SessionEngine: ending a subscription the policy no longer allows', () => {
  it('lets the agent unsubscribe from a resource it held once the policy denies it, and refuses a URI it never subscribed to', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities: { resources: { subscribe: true } },
        handle: async (method) => (method === 'resources/list' ? { resources: [{ uri: 'file:///a', name: 'a' }, { uri: 'file:///b', name: 'b' }] } : {}),
      },
    });
    const sessions = new MemorySessionStore();
    let denied = false;
    const engine = makeEngine({
      registry,
      connector,
      sessions,
      hooks: {
        admit: (info) => {
          if (denied && info.method.startsWith('resources/')) throw new GatewayRequestError(GATEWAY_RPC.POLICY_DENIED, 'denied by policy', undefined, 'denied');
          return undefined;
        },
      },
    });
    const record = await openSession(engine);
    expect(await engine.request(record, req('resources/subscribe', { uri: 'file:///a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    denied = true;
    // Access revoked: the subscription it holds still ends, upstream and in the record.
    expect(await engine.request(record, req('resources/unsubscribe', { uri: 'file:///a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(connector.calls.filter((call) => call.method === 'resources/unsubscribe').map((call) => call.params)).toEqual([{ uri: 'file:///a' }]);
    expect(sessions.records.get(record.id)?.subscriptions ?? {}).toEqual({});
    // A URI it holds no subscription to: the policy decides, as for any request.
    expect(await engine.request(record, req('resources/unsubscribe', { uri: 'file:///b' }), NO_STREAM, 'trace')).toMatchObject({ error: { code: GATEWAY_RPC.POLICY_DENIED } });
  });
});

describe('SessionEngine: resource updates only for the subscriptions the session holds', () => {
  const updated = (uri: string) => ({ jsonrpc: '2.0' as const, method: 'notifications/resources/updated', params: { uri } });
  const updatesIn = (messages: readonly unknown[]) =>
    messages.filter((m) => (m as { method?: string }).method === 'notifications/resources/updated').map((m) => (m as { params: { uri: string } }).params.uri);

  it('passes on updates of a subscribed resource and its parts, not of others, nor after an unsubscribe the upstream failed', async () => {
    const { engine, connector, sessions } = build({
      u1: {
        prefix: 'mem',
        capabilities: { resources: { subscribe: true } },
        handle: async (method) => {
          if (method === 'resources/list') return { resources: [{ uri: 'mem://a', name: 'a' }, { uri: 'file:///project', name: 'project' }] };
          if (method === 'resources/templates/list') return { resourceTemplates: [] };
          if (method === 'resources/unsubscribe') throw new UpstreamRpcError(-32603, 'try later');
          return {};
        },
      },
      u2: {
        prefix: 'other',
        capabilities: { resources: { subscribe: true } },
        handle: async (method) => (method === 'resources/list' ? { resources: [{ uri: 'other://b', name: 'b' }] } : method === 'resources/templates/list' ? { resourceTemplates: [] } : {}),
      },
    });
    const record = await openSession(engine);
    const toAgent: unknown[] = [];
    engine.attachStandalone(record, { canStream: true, send: (m) => toAgent.push(m) > 0 });
    const subscribe = (uri: string) => engine.request(record, req('resources/subscribe', { uri }), NO_STREAM, 'trace');
    expect(await subscribe('mem://a')).toMatchObject({ result: {} });
    expect(await subscribe('file:///project')).toMatchObject({ result: {} });

    // Subscribed: the resource itself, and a part of it (MCP), from the upstream it was subscribed on.
    connector.emit('u1', updated('mem://a'));
    connector.emit('u1', updated('file:///project/src/a.ts'));
    // Never subscribed: another URI, one that only starts like a subscribed one, a URI from another upstream, no URI.
    connector.emit('u1', updated('mem://never'));
    connector.emit('u1', updated('mem://ab'));
    connector.emit('u1', updated('file:///project-old/a.ts'));
    connector.emit('u2', updated('mem://a'));
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/updated', params: {} });
    expect(updatesIn(toAgent)).toEqual(['mem://a', 'file:///project/src/a.ts']);

    // The agent unsubscribes; the upstream fails it and may keep sending. The record no longer holds it, nor does the agent hear of it.
    toAgent.length = 0;
    await engine.request(record, req('resources/unsubscribe', { uri: 'mem://a' }), NO_STREAM, 'trace');
    expect(sessions.records.get(record.id)?.subscriptions?.['u1']).toEqual(['file:///project']);
    connector.emit('u1', updated('mem://a'));
    connector.emit('u1', updated('file:///project'));
    expect(updatesIn(toAgent)).toEqual(['file:///project']);
  });

  it('passes on an update the upstream sends while it takes the subscribe, before the record holds it', async () => {
    const { engine, connector } = build({
      u1: {
        prefix: 'mem',
        capabilities: { resources: { subscribe: true } },
        handle: async (method, params, options) => {
          if (method === 'resources/list') return { resources: [{ uri: 'mem://a', name: 'a' }] };
          if (method === 'resources/templates/list') return { resourceTemplates: [] };
          if (method === 'resources/subscribe') {
            // The state it has now, on the subscribe's stream and on the session's.
            options?.onNotification?.(updated(params?.['uri'] as string));
            connector.emit('u1', updated(params?.['uri'] as string));
          }
          return {};
        },
      },
    });
    const record = await openSession(engine);
    const onStandalone: unknown[] = [];
    engine.attachStandalone(record, { canStream: true, send: (m) => onStandalone.push(m) > 0 });
    const onCall: unknown[] = [];
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://a' }), { canStream: true, send: (m) => onCall.push(m) > 0 }, 'trace')).toMatchObject({ result: {} });
    expect(updatesIn(onCall)).toEqual(['mem://a']);
    expect(updatesIn(onStandalone)).toEqual(['mem://a']);
  });

  it('passes on updates of a subscription the upstream took but the store could not record, on this replica', async () => {
    class FailingStore extends MemorySessionStore {
      override async change(): Promise<never> {
        throw new Error('redis down');
      }
    }
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'mem')], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities: { resources: { subscribe: true } },
        handle: async (method) => (method === 'resources/list' ? { resources: [{ uri: 'mem://a', name: 'a' }] } : method === 'resources/templates/list' ? { resourceTemplates: [] } : {}),
      },
    });
    const engine = makeEngine({ registry, connector, sessions: new FailingStore() });
    const record = await openSession(engine);
    const toAgent: unknown[] = [];
    engine.attachStandalone(record, { canStream: true, send: (m) => toAgent.push(m) > 0 });
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    connector.emit('u1', updated('mem://a'));
    expect(updatesIn(toAgent)).toEqual(['mem://a']);
  });

  /** A store whose next `failures` writes of a record fail, as Redis unreachable for a moment. */
  class FlakyStore extends MemorySessionStore {
    failures = 0;
    override async change(...args: Parameters<MemorySessionStore['change']>): ReturnType<MemorySessionStore['change']> {
      if (this.failures > 0) {
        this.failures -= 1;
        throw new Error('redis down');
      }
      return super.change(...args);
    }
  }
  const subscribable: FakeUpstream = {
    capabilities: { resources: { subscribe: true }, logging: {} },
    handle: async (method) =>
      method === 'resources/list' ? { resources: [{ uri: 'mem://a', name: 'a' }, { uri: 'mem://b', name: 'b' }] } : method === 'resources/templates/list' ? { resourceTemplates: [] } : {},
  };

  /** One engine over the `subscribable` upstream and a `FlakyStore`, with a session open. */
  async function flakyStoreSession() {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'mem')], () => undefined);
    const connector = new FakeConnector({ u1: subscribable });
    const sessions = new FlakyStore();
    const engine = makeEngine({ registry, connector, sessions });
    return { engine, connector, sessions, record: await openSession(engine) };
  }

  it('goes on passing on updates of a subscription the store could not record once a later write succeeds, which records it', async () => {
    const { engine, connector, sessions, record } = await flakyStoreSession();
    const toAgent: unknown[] = [];
    engine.attachStandalone(record, { canStream: true, send: (m) => toAgent.push(m) > 0 });
    const stored = () => sessions.records.get(record.id)?.subscriptions ?? {};

    sessions.failures = 2;
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://b' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(stored()).toEqual({});
    connector.emit('u1', updated('mem://a'));
    expect(updatesIn(toAgent)).toEqual(['mem://a']);

    // The store is back. The agent ends one of them (the record never held it: nothing there to take out, and no later
    // write records it), then changes its log level: this replica's copy becomes the stored record.
    expect(await engine.request(record, req('resources/unsubscribe', { uri: 'mem://b' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(await engine.request(record, req('logging/setLevel', { level: 'info' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    toAgent.length = 0;
    connector.emit('u1', updated('mem://a'));
    connector.emit('u1', updated('mem://b'));
    expect(updatesIn(toAgent)).toEqual(['mem://a']);
    // Recorded with that write after all (for a renewed upstream session, and the other replicas), the ended one not.
    expect(stored()).toEqual({ u1: ['mem://a'] });
    expect(sessions.records.get(record.id)?.logLevel).toBe('info');
  });

  it('tells a new upstream session of a subscription the store could not record, with those it holds', async () => {
    const { engine, connector, sessions, record } = await flakyStoreSession();
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    sessions.failures = 1;
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://b' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(sessions.records.get(record.id)?.subscriptions).toEqual({ u1: ['mem://a'] });
    // The upstream session ends by itself (a stream dropped): the next request opens a new one, told both.
    connector.breakSession('u1');
    await new Promise((resolve) => setImmediate(resolve));
    connector.calls.length = 0;
    expect(await engine.request(record, req('resources/list'), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    await vi.waitFor(() => expect(connector.opened).toHaveLength(2));
    await vi.waitFor(() =>
      expect(connector.calls.filter((call) => call.method === 'resources/subscribe').map((call) => (call.params as { uri?: string } | undefined)?.uri).sort()).toEqual(['mem://a', 'mem://b']),
    );
  });

  it('goes on passing on updates of a subscription the store could not record when another replica\'s write reloads this one\'s copy', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'mem')], () => undefined);
    const connector = new FakeConnector({ u1: subscribable });
    const sessions = new FlakyStore();
    const [a, b] = twoReplicas(connector, registry, 0, sessions);
    const onA = await openSession(a);
    const onB = await recordOn(b, onA.id);
    const toAgent: unknown[] = [];
    a.attachStandalone(onA, { canStream: true, send: (m) => toAgent.push(m) > 0 });

    sessions.failures = 1;
    expect(await a.request(onA, req('resources/subscribe', { uri: 'mem://a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    // Through B, whose write is stored and announced (`agent-state`): A takes the stored record, which lacks the subscription.
    expect(await b.request(onB, req('logging/setLevel', { level: 'info' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    const logged = (level: string) => ({ jsonrpc: '2.0' as const, method: 'notifications/message', params: { level, data: level } });
    const levelsIn = (messages: readonly unknown[]) =>
      messages.filter((m) => (m as { method?: string }).method === 'notifications/message').map((m) => (m as { params: { level: string } }).params.level);
    // The upstream session A holds (B opened its own for the level).
    expect(connector.notificationHandlers.get('u1')).toHaveLength(2);
    const fromUpstreamOnA = connector.notificationHandlers.get('u1')?.[0];
    if (!fromUpstreamOnA) throw new Error('replica A did not attach to the upstream');
    // A has taken it: it filters by the level B recorded.
    await waitFor(() => {
      toAgent.length = 0;
      fromUpstreamOnA(logged('debug'));
      fromUpstreamOnA(logged('info'));
      return levelsIn(toAgent).join() === 'info';
    });
    toAgent.length = 0;
    fromUpstreamOnA(updated('mem://a'));
    expect(updatesIn(toAgent)).toEqual(['mem://a']);
  });

  it('passes on updates of a subscription made through another replica to the stream this one holds', async () => {
    const { a, b, connector, record } = await sessionOnTwoReplicas({
      capabilities: { resources: { subscribe: true } },
      handle: async (method) => (method === 'resources/list' ? { resources: [{ uri: 'mem://a', name: 'a' }] } : method === 'resources/templates/list' ? { resourceTemplates: [] } : {}),
    });
    // B holds an upstream session of its own and the agent's GET stream; the agent subscribes through A.
    await b.request(record, req('resources/list'), NO_STREAM, 'trace');
    const received: unknown[] = [];
    b.attachStandalone(record, { canStream: true, send: (message) => received.push(message) > 0 });
    const fromUpstreamOnB = connector.notificationHandlers.get('u1')?.at(-1);
    if (!fromUpstreamOnB) throw new Error('replica B did not attach to the upstream');
    fromUpstreamOnB(updated('mem://a'));
    expect(received).toEqual([]);
    const onA = await a.session(record.id, principal);
    if (!onA) throw new Error('no session');
    expect(await a.request(onA, req('resources/subscribe', { uri: 'mem://a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    await new Promise((resolve) => setImmediate(resolve));
    fromUpstreamOnB(updated('mem://a'));
    expect(updatesIn(received)).toEqual(['mem://a']);
    // And once the agent unsubscribed through A, B passes on no more.
    expect(await a.request(onA, req('resources/unsubscribe', { uri: 'mem://a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    await new Promise((resolve) => setImmediate(resolve));
    fromUpstreamOnB(updated('mem://a'));
    expect(updatesIn(received)).toEqual(['mem://a']);
  });
});

describe('SessionEngine: an upstream the hooks keep from the agent', () => {
  it('relays none of its messages outside a call, refusing its requests, while another upstream\'s go through', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u-open', 'open'), fakeConfig('u-hidden', 'hidden')], () => undefined);
    const upstream: FakeUpstream = { capabilities: { tools: { listChanged: true }, logging: {} }, handle: async () => ({ tools: [] }) };
    const connector = new FakeConnector({ 'u-open': upstream, 'u-hidden': upstream });
    const asked: string[] = [];
    const engine = makeEngine({
      registry,
      connector,
      hooks: {
        upstreamMessage: (_record, config, method) => {
          asked.push(`${config.name} ${method}`);
          if (config.name === 'hidden') throw new GatewayRequestError(GATEWAY_RPC.POLICY_DENIED, 'nothing there is yours', undefined, 'denied');
        },
      },
    });
    const record = await openSession(engine, { roots: {}, sampling: {}, elicitation: {} });
    const toAgent: string[] = [];
    engine.attachStandalone(record, {
      canStream: true,
      send: (message) => {
        toAgent.push('method' in message ? `${message.method} ${JSON.stringify(message.params ?? {})}` : 'answer');
        if ('id' in message && 'method' in message) queueMicrotask(() => engine.answer(record, { jsonrpc: '2.0', id: message.id, result: { roots: [] } }));
        return true;
      },
    });
    const outcome = (upstreamId: string, method: string) =>
      connector.ask(upstreamId, { jsonrpc: '2.0', id: `${upstreamId}-${method}`, method }).then(
        () => 'answered',
        (error: unknown) => (error instanceof UpstreamRpcError ? error.code : String(error)),
      );
    for (const method of ['roots/list', 'sampling/createMessage', 'elicitation/create']) expect(await outcome('u-hidden', method)).toBe(GATEWAY_RPC.POLICY_DENIED);
    expect(await outcome('u-open', 'roots/list')).toBe('answered');
    connector.emit('u-hidden', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'error', data: 'hidden log' } });
    connector.emit('u-hidden', { jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    connector.emit('u-open', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'error', data: 'open log' } });
    expect(toAgent).toEqual(['roots/list {}', 'notifications/message {"level":"error","data":"open log"}']);
    expect(asked).toContain('hidden notifications/message');
  });
});

describe('SessionEngine: the agent\'s roots changing', () => {
  it('tells no upstream when the agent declared no roots (upstreams were told the client has none)', async () => {
    const { engine, connector } = build({ u1: { prefix: 'files', capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    const record = await openSession(engine, {});
    engine.notification(record, { jsonrpc: '2.0', method: 'notifications/roots/list_changed' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(connector.notified.filter((n) => n.method === 'notifications/roots/list_changed')).toEqual([]);
  });

  it('tells each upstream at once, then at most once a second however often the agent says so, the last change included', async () => {
    const { engine, connector } = build({ u1: { prefix: 'files', capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    const record = await openSession(engine, { roots: { listChanged: true } });
    const notices = () => connector.notified.filter((n) => n.method === 'notifications/roots/list_changed').length;
    for (let i = 0; i < 50; i++) engine.notification(record, { jsonrpc: '2.0', method: 'notifications/roots/list_changed' });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(notices()).toBe(1);
    // The 49 after the first are told by one notice at the end of the interval.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect(notices()).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(notices()).toBe(2);
  });

  it('tells the upstream sessions each replica holds of its own (stdio), wherever the notice came in, and opens none to tell', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([{ ...fakeConfig('u1', 'files'), transport: 'stdio' as const, url: null }], () => undefined);
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    connector.unresumable.add('u1');
    const [a, b] = twoReplicas(connector, registry);
    const withRoots = req('initialize', { protocolVersion: '2025-06-18', capabilities: { roots: { listChanged: true } }, clientInfo: { name: 'spec', version: '1' } });
    const { sessionId } = await a.initialize(principal, withRoots, 'trace');
    const onA = await recordOn(a, sessionId ?? '');
    const onB = await recordOn(b, sessionId ?? '');
    const notices = () => connector.notified.filter((n) => n.method === 'notifications/roots/list_changed').length;
    const rootsChanged = { jsonrpc: '2.0' as const, method: 'notifications/roots/list_changed' };

    // Only A holds a process for the session: a notice reaching B tells A's, and B starts none of its own to tell it.
    const openedBefore = connector.opened.length;
    b.notification(onB, rootsChanged);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(notices()).toBe(1);
    expect(connector.opened).toHaveLength(openedBefore);

    // Once B holds its own process too, a notice reaching A tells both.
    await b.request(onB, req('tools/list'), NO_STREAM, 'trace');
    expect(connector.opened).toHaveLength(openedBefore + 1);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    a.notification(onA, rootsChanged);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(notices()).toBe(3);
  });
});

describe("SessionEngine: a storm of an upstream's list changes", () => {
  const toolsChanged = { jsonrpc: '2.0' as const, method: 'notifications/tools/list_changed' };
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  /** A session opened on replica A of two, upstream `u1` (tools with listChanged), and the lists-changed B heard of. */
  async function stormSetUp(handle: FakeUpstream['handle']) {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({ u1: { capabilities: { tools: { listChanged: true }, prompts: { listChanged: true } }, handle } });
    const [a, b] = twoReplicas(connector, registry, 60_000);
    const onBus: BusMessage[] = [];
    const heard = b.onBusMessage.bind(b);
    vi.spyOn(b, 'onBusMessage').mockImplementation((message) => {
      onBus.push(message);
      heard(message);
    });
    const onA = await openSession(a);
    const onB = await recordOn(b, onA.id);
    const busChanges = () => onBus.filter((message) => message.type === 'lists-changed').length;
    return { a, b, onA, onB, connector, busChanges };
  }
  const agentGot = () => {
    const got: string[] = [];
    const sink: MessageSink = { canStream: true, send: (message) => got.push('method' in message ? message.method : 'answer') > 0 };
    return { got, told: () => got.filter((method) => method === toolsChanged.method).length, sink };
  };

  it("puts one lists-changed on the bus for 5,000 on a call's stream (once more a second later), and tells the call's stream of each", async () => {
    const { a, b, onA, onB, connector, busChanges } = await stormSetUp(async (method, _params, options) => {
      if (method === 'tools/list') return { tools: tools('echo') };
      for (let i = 0; i < 5_000; i++) options?.onNotification?.(toolsChanged);
      return { content: [{ type: 'text', text: 'done' }] };
    });
    const listings = () => connector.calls.filter((call) => call.method === 'tools/list').length;
    // B caches its page of u1's tools.
    await listedTools(b, onB);
    await listedTools(b, onB);
    expect(listings()).toBe(1);
    // The call's stream, which ends with its answer, and the agent's standalone stream on A.
    let callStreams = true;
    const call = agentGot();
    const standalone = agentGot();
    a.attachStandalone(onA, standalone.sink);
    const answer = await a.request(onA, req('tools/call', { name: 'files__echo', arguments: {} }), { get canStream() { return callStreams; }, send: call.sink.send }, 'trace');
    callStreams = false;
    expect(answer).toMatchObject({ result: { content: [{ text: 'done' }] } });
    expect(busChanges()).toBe(1);
    // On the call's own stream, as they came (one held for later could find no stream to go on).
    expect(call.told()).toBe(5_000);
    expect(standalone.told()).toBe(0);
    // Every replica still drops its pages: B asks u1 again.
    await listedTools(b, onB);
    expect(listings()).toBe(2);
    // The 4,999 after the first: one more on the bus at the end of the interval; nothing more to the agent.
    await sleep(1_100);
    expect(busChanges()).toBe(2);
    expect(call.told()).toBe(5_000);
    expect(standalone.told()).toBe(0);
    await sleep(1_100);
    expect(busChanges()).toBe(2);
  });

  it("tells the agent on its stream of a change after the first within the interval, per kind, and nothing once the session ended", async () => {
    const { a, onA, connector, busChanges } = await stormSetUp(async () => ({ tools: [], prompts: [] }));
    const standalone = agentGot();
    a.attachStandalone(onA, standalone.sink);
    connector.emit('u1', toolsChanged, 'first');
    expect(busChanges()).toBe(1);
    expect(standalone.told()).toBe(1);
    for (let i = 0; i < 200; i++) connector.emit('u1', toolsChanged, 'first');
    // Another kind is not folded into the tools' interval.
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/prompts/list_changed' }, 'first');
    expect(standalone.got.filter((method) => method === 'notifications/prompts/list_changed')).toHaveLength(1);
    expect(busChanges()).toBe(2);
    expect(standalone.told()).toBe(1);
    await sleep(1_100);
    expect(busChanges()).toBe(3);
    expect(standalone.told()).toBe(2);

    // Changes folded into an interval when the session ends are not told after it.
    for (let i = 0; i < 5; i++) connector.emit('u1', toolsChanged, 'first');
    await a.end(onA, 'trace');
    const sent = busChanges();
    const told = standalone.told();
    await sleep(1_100);
    expect(busChanges()).toBe(sent);
    expect(standalone.told()).toBe(told);
  });
});

describe('SessionEngine across replicas', () => {
  it("tells a new log level to the stdio process another replica holds for the session (calls served there log at it too)", async () => {
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {}, logging: {} }, handle: async (method) => (method === 'tools/list' ? { tools: tools('echo') } : { content: [] }) },
    });
    // Stdio: no upstream session id to resume, so each replica runs a process of its own for the session.
    connector.unresumable.add('u1');
    const registry = new UpstreamRegistry('__');
    registry.replace([{ ...fakeConfig('u1', 'files'), transport: 'stdio', url: null, command: 'server' }], () => undefined);
    const [a, b] = twoReplicas(connector, registry);
    const onA = await openSession(a);
    const onB = await recordOn(b, onA.id);
    for (const [engine, record] of [[a, onA], [b, onB]] as const) {
      expect(await engine.request(record, req('tools/call', { name: 'files__echo', arguments: {} }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    }
    const processes = [...new Set(connector.calls.filter((call) => call.method === 'tools/call').map((call) => call.sessionId))].sort();
    expect(processes).toHaveLength(2);
    expect(await b.request(onB, req('logging/setLevel', { level: 'debug' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    const told = () => connector.calls.filter((call) => call.method === 'logging/setLevel').map((call) => `${call.sessionId} ${JSON.stringify(call.params)}`).sort();
    await expect.poll(told, { timeout: 1_000 }).toEqual(processes.map((process) => `${process} {"level":"debug"}`));
  });

  it('passes on only the MCP fields of an agent\'s progress, and no cancellation of an id no request could have', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    const sent: { to: string; message: BusMessage }[] = [];
    const broadcast: BusMessage[] = [];
    const bus = { broadcast: (message: BusMessage) => void broadcast.push(message), sendTo: (to: string, message: BusMessage) => void sent.push({ to, message }) };
    const engine = makeEngine({ registry, connector, bus, options: { replicaId: 'here' } });
    const opened = await engine.initialize(principal, init, 'trace');
    const record = await engine.session(opened.sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    // Nested too deep to serialise, and long: neither travels (it failed the agent's POST with a 500).
    let deep: unknown = 'bottom';
    for (let level = 0; level < 100_000; level++) deep = [deep];
    const progress = (params: Record<string, unknown>) => engine.notification(record, { jsonrpc: '2.0', method: 'notifications/progress', params });
    expect(() => progress({ progressToken: 'pcs.there.7', progress: 2, total: 5, message: 'm'.repeat(5_000), deep, _meta: { deep } })).not.toThrow();
    progress({ progressToken: 'pcs.there.8', progress: 'half' });
    progress({ progressToken: 'pcs.there.9' });
    expect(sent).toEqual([{ to: 'there', message: { type: 'relayed-progress', sessionId: record.id, params: { progressToken: 'pcs.there.7', progress: 2, total: 5, message: 'm'.repeat(1_024) } } }]);

    const cancel = (requestId: unknown) => engine.notification(record, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId } });
    cancel('x'.repeat(513));
    cancel(Number.NaN);
    cancel({ nested: true });
    expect(broadcast.filter((message) => message.type === 'cancel')).toEqual([]);
    cancel('r1');
    expect(broadcast.filter((message) => message.type === 'cancel')).toEqual([{ type: 'cancel', sessionId: record.id, requestId: 'r1', reason: 'cancelled by the client' }]);
  });

  it('tells the other replicas of at most 100 cancellations at once per principal, then 20 a second; another principal (of the same tenant too) keeps its own', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files'), fakeConfig('u2', 'files', 't2')], () => undefined);
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) }, u2: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    const broadcast: BusMessage[] = [];
    const bus = { broadcast: (message: BusMessage) => void broadcast.push(message), sendTo: () => undefined };
    const engine = makeEngine({ registry, connector, bus, options: { replicaId: 'here' } });
    const recordOf = async (as: typeof principal) => {
      const opened = await engine.initialize(as, init, 'trace');
      const record = await engine.session(opened.sessionId ?? '', as);
      if (!record) throw new Error('no session');
      return record;
    };
    const first = await recordOf(principal);
    const other = await recordOf({ ...principal, tenantId: 't2' });
    const colleague = await recordOf({ ...principal, id: 'a2' });
    const cancels = (sessionId: string) => broadcast.filter((message) => message.type === 'cancel' && message.sessionId === sessionId).length;
    const began = performance.now();
    for (let i = 0; i < 1_000; i += 1) engine.notification(first, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: i } });
    // The burst, and what refilled while the loop ran (20 a second).
    const looped = performance.now() - began;
    expect(cancels(first.id)).toBeGreaterThanOrEqual(100);
    expect(cancels(first.id)).toBeLessThanOrEqual(100 + Math.ceil(looped / 50) + 1);
    engine.notification(other, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1 } });
    expect(cancels(other.id)).toBe(1);
    // Per tenant, one agent's stray cancellations silenced every other agent's of the tenant (found by re-review).
    engine.notification(colleague, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'its-call' } });
    expect(cancels(colleague.id)).toBe(1);
  });

  it('filters log messages by the level the agent set through another replica, on the stream this one holds', async () => {
    const { a, b, connector, record } = await sessionOnTwoReplicas({ capabilities: { tools: {}, logging: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) });
    // B holds the session live (an upstream session and the agent's GET stream); the agent sets its level through A.
    await b.request(record, req('tools/list'), NO_STREAM, 'trace');
    const received: unknown[] = [];
    b.attachStandalone(record, { canStream: true, send: (message) => received.push(message) > 0 });
    const onA = await a.session(record.id, principal);
    if (!onA) throw new Error('no session');
    expect(await a.request(onA, req('logging/setLevel', { level: 'error' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    await new Promise((resolve) => setImmediate(resolve));
    const log = (level: string) => ({ jsonrpc: '2.0' as const, method: 'notifications/message', params: { level, data: `${level} line` } });
    connector.emit('u1', log('debug'));
    connector.emit('u1', log('error'));
    // Both replicas' upstream sessions heard the upstream here, and both hand what passes to B's stream.
    const levels = received.map((message) => (message as { params?: { level?: string } }).params?.level);
    expect(levels.length).toBeGreaterThan(0);
    expect(new Set(levels)).toEqual(new Set(['error']));
  });

  it('moves every replica to one new upstream session when the credentials are sealed again without a new version', async () => {
    const registry = new UpstreamRegistry('__');
    const sealed = { ...fakeConfig('u1', 'files'), sealedDigest: 'before' };
    registry.replace([sealed], () => undefined);
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async (method) => (method === 'tools/list' ? { tools: tools('read') } : { content: [] }) } });
    const [a, b] = twoReplicas(connector, registry);
    const onA = await openSession(a);
    const call = (engine: SessionEngine, record: typeof onA) => engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
    await call(a, onA);
    // secrets:reseal: the same version, other ciphertext.
    registry.replace([{ ...sealed, sealedDigest: 'after' }], () => undefined);
    const onB = await recordOn(b, onA.id);
    await call(b, onB);
    await call(a, (await a.session(onA.id, principal)) ?? onA);
    const used = connector.calls.filter((c) => c.method === 'tools/call').map((c) => c.sessionId);
    // One session before, one after, on both replicas: A does not go on with the old one beside B's new one.
    expect(used[0]).not.toBe(used[1]);
    expect(used[2]).toBe(used[1]);
  });

  it('hands a session-level upstream notification to the replica holding the agent’s standalone stream', async () => {
    const { b, connector, record } = await sessionOnTwoReplicas({ capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: [] }) });
    const received: unknown[] = [];
    const detach = b.attachStandalone(record, { canStream: true, send: (message) => received.push(message) > 0 });

    // Replica A holds the upstream session that receives the notification; B holds the agent's GET stream.
    const fromUpstreamOnA = connector.notificationHandlers.get('u1')?.[0];
    if (!fromUpstreamOnA) throw new Error('replica A did not attach to the upstream');
    const changed = { jsonrpc: '2.0' as const, method: 'notifications/tools/list_changed' };
    fromUpstreamOnA(changed);
    expect(received).toEqual([changed]);

    // Once the stream is gone nobody delivers it (and nothing throws).
    detach();
    fromUpstreamOnA(changed);
    expect(received).toHaveLength(1);
  });

  it("relays an upstream's request made outside any call through the replica holding the agent's stream, and its answer back", async () => {
    const { b, connector, record } = await rootsSessionOnTwoReplicas();
    const received: Record<string, unknown>[] = [];
    b.attachStandalone(record, { canStream: true, send: (message) => received.push(message as unknown as Record<string, unknown>) > 0 });

    // Replica A holds the upstream session that asks; B holds the agent's GET stream.
    const asked = connector.ask('u1', { jsonrpc: '2.0', id: 7, method: 'roots/list' }, 'first');
    await new Promise((resolve) => setImmediate(resolve));
    const relayedId = received[0]?.['id'];
    expect(received).toEqual([{ jsonrpc: '2.0', id: relayedId, method: 'roots/list' }]);
    expect(relayedId).toMatch(/^pcs\.ra\./);
    // The agent answers through B (any replica): the answer goes to A, which asked.
    b.answer(record, { jsonrpc: '2.0', id: relayedId as string, result: { roots: [{ uri: 'file:///work', name: 'work' }] } });
    expect(await asked).toEqual({ roots: [{ uri: 'file:///work', name: 'work' }] });
  });

  it('keeps the session on the replica that relayed a request while the agent has not answered, however long idle there', async () => {
    const { a, b, connector, record } = await rootsSessionOnTwoReplicas(50);
    const received: Record<string, unknown>[] = [];
    b.attachStandalone(record, { canStream: true, send: (message) => received.push(message as unknown as Record<string, unknown>) > 0 });
    // Replica A has seen nothing of the session for longer than it keeps idle sessions: the agent works through B.
    await new Promise((resolve) => setTimeout(resolve, 80));
    const asked = connector.ask('u1', { jsonrpc: '2.0', id: 7, method: 'roots/list' }, 'first').then(
      (result) => ({ result }),
      (error: Error) => ({ error: error.message }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    const relayedId = received[0]?.['id'];
    expect(relayedId).toMatch(/^pcs\.ra\./);
    // A user takes a while to answer; A sweeps meanwhile. Letting the session go would fail the upstream's request.
    await new Promise((resolve) => setTimeout(resolve, 80));
    await a.sweepNow();
    b.answer(record, { jsonrpc: '2.0', id: relayedId as string, result: { roots: [] } });
    expect(await asked).toEqual({ result: { roots: [] } });
  });

  it('refuses at once a request too deeply nested for the bus, leaving nothing waiting, and relays the next', async () => {
    const { b, connector, record } = await rootsSessionOnTwoReplicas();
    const received: Record<string, unknown>[] = [];
    b.attachStandalone(record, { canStream: true, send: (message) => received.push(message as unknown as Record<string, unknown>) > 0 });
    const depth = 100_000;
    const deep = JSON.parse(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`) as Record<string, unknown>;
    // More than the 32 a session may have waiting: none of them may stay waiting.
    for (let i = 0; i < 40; i++) {
      const outcome = await connector.ask('u1', { jsonrpc: '2.0', id: `deep-${i}`, method: 'roots/list', params: { _meta: deep } }, 'first').then(
        () => 'answered',
        (error: { code: number; message: string }) => `${error.code} ${error.message}`,
      );
      expect(outcome).toBe('-32601 The client cannot receive this request now');
    }
    expect(received).toEqual([]);
    const asked = connector.ask('u1', { jsonrpc: '2.0', id: 'plain', method: 'roots/list' }, 'first');
    await new Promise((resolve) => setImmediate(resolve));
    const relayedId = received[0]?.['id'];
    expect(relayedId).toMatch(/^pcs\.ra\./);
    b.answer(record, { jsonrpc: '2.0', id: relayedId as string, result: { roots: [] } });
    expect(await asked).toEqual({ roots: [] });
  });

  it('drops a standalone bus message that is not a message, delivering nothing and throwing nothing', async () => {
    const { b, record } = await rootsSessionOnTwoReplicas();
    const received: unknown[] = [];
    b.attachStandalone(record, { canStream: true, send: (message) => received.push(message) > 0 });
    for (const message of [null, 'text', 42, { id: 'pcs.ra.x' }, { method: 7 }]) {
      expect(() => b.onBusMessage({ type: 'standalone', sessionId: record.id, message } as unknown as BusMessage)).not.toThrow();
    }
    expect(received).toEqual([]);
  });

  it("tells an upstream at once when no replica holds a stream the agent listens on, rather than after the relay timeout", async () => {
    const { b, connector, record } = await rootsSessionOnTwoReplicas();
    // B's stream is parked (its agent gone): it does not deliver, so nobody confirms.
    const parked: unknown[] = [];
    b.attachStandalone(record, { canStream: true, away: true, send: (message) => parked.push(message) > 0 });
    const started = performance.now();
    const outcome = await connector.ask('u1', { jsonrpc: '2.0', id: 8, method: 'roots/list' }, 'first').then(
      () => ({ code: 0, message: 'answered' }),
      (error: { code: number; message: string }) => ({ code: error.code, message: error.message }),
    );
    const waited = performance.now() - started;
    expect(outcome).toEqual({ code: -32601, message: 'The client cannot receive this request now' });
    // About two seconds (the delivery wait), far below the relay timeout (60 s by default).
    expect(waited).toBeGreaterThanOrEqual(1_900);
    expect(waited).toBeLessThan(10_000);
    expect(parked).toEqual([]);
  });

  it('does not bring back a session ended (here or on another replica) for a request that looked it up just before', async () => {
    const { a, b, connector, record: onB } = await sessionOnTwoReplicas({ capabilities: { tools: {} }, handle: async (method) => (method === 'tools/list' ? { tools: tools('read') } : { content: [] }) });
    // Both replicas hold the record, as a request that passed the session lookup would.
    const onA = await a.session(onB.id, principal);
    if (!onA) throw new Error('no session');
    await a.end(onA, 'trace');
    const opened = connector.opened.length;
    for (const [engine, record] of [[a, onA], [b, onB]] as const) {
      const response = await engine.request(record, req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace');
      expect(response).toMatchObject({ error: { message: 'Session not found' } });
      const closed: string[] = [];
      engine.attachStandalone(record, { canStream: true, send: () => true, close: () => void closed.push('closed') });
      expect(closed).toEqual(['closed']);
      engine.notification(record, { jsonrpc: '2.0', method: 'notifications/roots/list_changed' });
      expect(await engine.session(record.id, principal)).toBeUndefined();
    }
    await new Promise((resolve) => setImmediate(resolve));
    expect(connector.opened).toHaveLength(opened);
    expect(connector.calls.filter((call) => call.method === 'tools/call')).toHaveLength(0);
  });

  it('keeps one standalone stream per session across replicas: the later one stays, the other replica closes its own', async () => {
    const { a, b, connector, record } = await sessionOnTwoReplicas({ capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: [] }) });
    const stream = (name: string, got: string[], closed: string[]) => ({
      canStream: true,
      send: () => got.push(name) > 0,
      close: () => void closed.push(name),
    });
    const got: string[] = [];
    const closed: string[] = [];
    a.attachStandalone(record, stream('on a', got, closed));
    b.attachStandalone(record, stream('on b', got, closed));
    expect(closed).toEqual(['on a']);
    // A notification from the upstream (on replica A, which holds the upstream session) goes out once, on B's stream.
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    expect(got).toEqual(['on b']);

    // In flight at once (each attached before the other's notice arrived): the bus's one order decides, the same on
    // every replica, whatever the replicas' clocks say.
    const queued: BusMessage[] = [];
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const quiet = new FakeConnector({ u1: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: [] }) } });
    const sessions = new MemorySessionStore();
    const bus = { broadcast: (message: BusMessage) => void queued.push(message), sendTo: () => undefined };
    const replica = (replicaId: string) => makeEngine({ registry, connector: quiet, sessions, bus, options: { replicaId } });
    const [x, y] = [replica('rx'), replica('ry')];
    const opened = await x.initialize(principal, init, 'trace');
    const shared = await y.session(opened.sessionId ?? '', principal);
    if (!shared) throw new Error('no session');
    const racing: string[] = [];
    y.attachStandalone(shared, stream('on y', got, racing));
    x.attachStandalone(shared, stream('on x', got, racing));
    for (const message of queued.splice(0)) for (const engine of [x, y]) engine.onBusMessage(message);
    // y's notice went out first: x's stream, announced later, is the one that stays.
    expect(racing).toEqual(['on y']);
  });

  it('counts a standalone stream\'s announcement as delivered when its echo never comes back, so a later stream still wins', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({ u1: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: [] }) } });
    const sessions = new MemorySessionStore();
    const replicas: SessionEngine[] = [];
    let dropFromX = true;
    // x's publishes are lost (a Redis hiccup); y's reach everyone.
    const bus = (from: string) => ({
      broadcast: (message: BusMessage) => {
        if (from === 'rx' && dropFromX) return;
        for (const replica of replicas) replica.onBusMessage(message);
      },
      sendTo: () => undefined,
    });
    const make = (replicaId: string) => makeEngine({ registry, connector, sessions, bus: bus(replicaId), options: { replicaId } });
    const [x, y] = [make('rx'), make('ry')];
    replicas.push(x, y);
    const { sessionId } = await x.initialize(principal, init, 'trace');
    const record = await recordOn(y, sessionId ?? '');
    const closed: string[] = [];
    x.attachStandalone(record, { canStream: true, send: () => true, close: () => void closed.push('on x') });
    dropFromX = false;
    await new Promise((resolve) => setTimeout(resolve, 3_100));
    y.attachStandalone(record, { canStream: true, send: () => true, close: () => void closed.push('on y') });
    expect(closed).toEqual(['on x']);
  });

  it('turns an agent\'s answer too deep to pass to the asking replica into an internal error for its upstream', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'llm')], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: {} },
        handle: async (method, _params, options) => {
          if (method !== 'tools/call') return { tools: tools('ask') };
          const ask = { jsonrpc: '2.0' as const, id: 3, method: 'sampling/createMessage', params: { messages: [], maxTokens: 10 } };
          try {
            await (options?.onServerRequest?.(ask, new AbortController().signal) ?? Promise.reject(new Error('no relay')));
            return { content: [{ type: 'text', text: 'answered' }] };
          } catch (error) {
            const { code, message } = error as { code?: number; message: string };
            return { content: [{ type: 'text', text: `refused: ${code} ${message}` }] };
          }
        },
      },
    });
    // A bus that serialises like the Redis one: JSON.stringify throws for a message nested too deeply.
    const replicas = new Map<string, SessionEngine>();
    const bus = {
      broadcast: (message: BusMessage) => replicas.forEach((replica) => replica.onBusMessage(message)),
      sendTo: (replicaId: string, message: BusMessage) => {
        const copy = JSON.parse(JSON.stringify(message)) as BusMessage;
        queueMicrotask(() => replicas.get(replicaId)?.onBusMessage(copy));
      },
    };
    const sessions = new MemorySessionStore();
    for (const replicaId of ['ra', 'rb']) {
      const engine = makeEngine({ registry, connector, sessions, bus, options: { replicaId } });
      replicas.set(replicaId, engine);
    }
    const [a, b] = [replicas.get('ra') as SessionEngine, replicas.get('rb') as SessionEngine];
    const onA = await openSession(a, { sampling: {} });
    const onB = await recordOn(b, onA.id);
    const depth = 100_000;
    const deep = JSON.parse(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`) as Record<string, unknown>;
    // The call runs on replica A; the agent's answer to the relayed request arrives on replica B.
    const answered = a.request(
      onA,
      req('tools/call', { name: 'llm__ask', arguments: {} }),
      {
        canStream: true,
        send: (message) => {
          const relayed = message as { id?: string };
          if (typeof relayed.id === 'string') queueMicrotask(() => b.answer(onB, { jsonrpc: '2.0', id: relayed.id as string, result: deep }));
          return true;
        },
      },
      'trace',
    );
    expect(JSON.stringify(await answered)).toContain('refused: -32603 The answer could not be relayed');
  });

  it('ends a session from a replica that holds none of it without opening stdio or legacy SSE upstreams just to close them', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace(
      [fakeConfig('u1', 'web'), { ...fakeConfig('u2', 'shell'), transport: 'stdio', url: null, command: '/bin/true' }, { ...fakeConfig('u3', 'files'), transport: 'sse' }],
      () => undefined,
    );
    const handle = async () => ({ tools: [] });
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle }, u2: { capabilities: { tools: {} }, handle }, u3: { capabilities: { tools: {} }, handle } });
    const [a, b] = twoReplicas(connector, registry);
    const { sessionId } = await a.initialize(principal, init, 'trace');
    const record = await recordOn(b, sessionId ?? '');
    expect(connector.opened.map((o) => `${o.upstreamId}:${o.how}`).sort()).toEqual(['u1:connect', 'u2:connect', 'u3:connect']);
    // DELETE arrives on B, which holds nothing: only the Streamable HTTP session is resumed to be ended (it outlives
    // replicas); A, told over the bus, ends the stdio and SSE sessions it holds.
    await b.end(record, 'trace');
    expect(connector.opened.filter((o) => o.how === 'resume')).toEqual([{ upstreamId: 'u1', how: 'resume' }]);
    expect(connector.ended.filter((e) => e.how === 'close').map((e) => e.upstreamId).sort()).toEqual(['u1', 'u2', 'u3']);
  });

  it('reuses an upstream session\'s listing pages until they age out or the upstream says its list changed', async () => {
    let version = 1;
    const { engine, connector } = build(
      { u1: { prefix: 'inv', capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: tools(`tool_v${version}`) }) } },
      60_000,
    );
    const record = await openSession(engine);
    const list = async () => (await listedTools(engine, record)).map((tool) => tool['name']);
    const asked = () => connector.calls.filter((call) => call.method === 'tools/list').length;
    expect(await list()).toEqual(['inv__tool_v1']);
    version = 2;
    expect(await list()).toEqual(['inv__tool_v1']);
    expect(asked()).toBe(1);
    // The upstream announces the change (session-level): the next listing asks again.
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    expect(await list()).toEqual(['inv__tool_v2']);
    expect(asked()).toBe(2);
  });

  it('walks the resource listings once for many unknown URIs, not again within a second, and again after a resources change', async () => {
    let listed = ['file:///docs/a'];
    const { engine, connector } = build({
      u1: {
        prefix: 'docs',
        capabilities: { resources: { listChanged: true }, tools: { listChanged: true } },
        handle: async (method, params) => {
          if (method === 'resources/list') return { resources: listed.map((uri) => ({ uri, name: uri })) };
          if (method === 'resources/templates/list') return { resourceTemplates: [] };
          if (method === 'resources/read') return { contents: [{ uri: params?.['uri'], text: 'body' }] };
          return {};
        },
      },
    }, 60_000);
    const record = await openSession(engine);
    const walks = () => connector.calls.filter((call) => call.method === 'resources/list').length;
    const read = (uri: string) => engine.request(record, req('resources/read', { uri }), NO_STREAM, 'trace');
    const now = vi.spyOn(performance, 'now');
    let clock = 1_000_000;
    now.mockImplementation(() => clock);
    try {
      // Twenty unknown URIs at once: one walk (resources and templates), every read refused as not found.
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => read(`file:///docs/missing-${i}`)));
      for (const answer of answers) expect('error' in answer && answer.error.code).toBe(-32002);
      expect(walks()).toBe(1);
      expect(connector.calls.filter((call) => call.method === 'resources/templates/list')).toHaveLength(1);
      // The walk taught the listed URI's route.
      expect('result' in (await read('file:///docs/a'))).toBe(true);
      expect(walks()).toBe(1);
      // Within a second of the last walk: answered without another, whatever the listing cache's lifetime.
      clock += 900;
      expect('error' in (await read('file:///docs/b'))).toBe(true);
      expect(walks()).toBe(1);
      // A tools list change does not count: resources are what routes are learned from.
      connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
      expect('error' in (await read('file:///docs/b'))).toBe(true);
      expect(walks()).toBe(1);
      // A second after it, a URI nobody routes walks again (the tools change dropped the cached pages: asked anew).
      clock += 200;
      listed = ['file:///docs/a', 'file:///docs/b'];
      expect('result' in (await read('file:///docs/b'))).toBe(true);
      expect(walks()).toBe(2);
      // A resources list change lets the next unknown URI walk at once.
      listed = ['file:///docs/a', 'file:///docs/b', 'file:///docs/c'];
      connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/list_changed' });
      expect('result' in (await read('file:///docs/c'))).toBe(true);
      expect(walks()).toBe(3);
      // So does one another replica heard of (over the bus); a bus notice of another list's change does not.
      expect('error' in (await read('file:///docs/d'))).toBe(true);
      expect(walks()).toBe(3);
      engine.onBusMessage({ type: 'lists-changed', sessionId: record.id, upstreamId: 'u1' });
      expect('error' in (await read('file:///docs/d'))).toBe(true);
      expect(walks()).toBe(3);
      engine.onBusMessage({ type: 'lists-changed', sessionId: record.id, upstreamId: 'u1', resources: true });
      expect('error' in (await read('file:///docs/d'))).toBe(true);
      expect(walks()).toBe(4);
    } finally {
      now.mockRestore();
    }
  });

  it('walks again at once after a walk that a resources change overtook; after one an upstream dropped out of, a second later', async () => {
    let listed = ['file:///docs/a'];
    let release: (() => void) | undefined;
    let failing = false;
    const { engine, connector } = build({
      u1: {
        prefix: 'docs',
        capabilities: { resources: { listChanged: true } },
        handle: async (method) => {
          if (method === 'resources/list') {
            if (failing) throw new Error('upstream down');
            const snapshot = listed;
            if (release === undefined) await new Promise<void>((resolve) => (release = resolve));
            return { resources: snapshot.map((uri) => ({ uri, name: uri })) };
          }
          if (method === 'resources/templates/list') return { resourceTemplates: [] };
          return { contents: [] };
        },
      },
    });
    const record = await openSession(engine);
    const walks = () => connector.calls.filter((call) => call.method === 'resources/list').length;
    const read = (uri: string) => engine.request(record, req('resources/read', { uri }), NO_STREAM, 'trace');
    // A walk is under way (its listing held) when the upstream says its resources changed, adding b.
    const first = read('file:///docs/b');
    await vi.waitFor(() => expect(release).toBeDefined());
    listed = ['file:///docs/a', 'file:///docs/b'];
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/list_changed' });
    // A read after the change does not join the stale walk: it starts its own, which sees b.
    const second = read('file:///docs/b');
    release?.();
    expect('result' in (await second)).toBe(true);
    await first; // answered either way: by the time its walk ends, the fresh one may have taught b's route
    expect(walks()).toBe(2);
    // The stale walk did not count as complete; the fresh one did: within a second, no third walk.
    expect('error' in (await read('file:///docs/z'))).toBe(true);
    expect(walks()).toBe(2);
    // A walk an upstream dropped out of counts too, for a second: while one upstream's listing fails, reads of unknown
    // URIs must not each walk every other upstream's listings again (found by re-review). A second later the next one
    // walks again, and the upstream back up is asked.
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/list_changed' });
    failing = true;
    expect('error' in (await read('file:///docs/y'))).toBe(true);
    expect(walks()).toBe(3);
    failing = false;
    expect('error' in (await read('file:///docs/x'))).toBe(true);
    expect(walks()).toBe(3);
    await new Promise((resolve) => setTimeout(resolve, 1_050));
    expect('error' in (await read('file:///docs/x'))).toBe(true);
    expect(walks()).toBe(4);
  });

  it('answers a cached listing with the same frozen exposed items, and new ones once the upstream listed again', async () => {
    let version = 1;
    const { engine, connector } = build(
      { u1: { prefix: 'inv', capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: tools(`tool_v${version}`, 'other') }) } },
      60_000,
    );
    const record = await openSession(engine);
    const list = () => listedTools(engine, record);
    const first = await list();
    const second = await list();
    expect(second.map((tool) => tool['name'])).toEqual(['inv__tool_v1', 'inv__other']);
    expect(second.every((tool, i) => tool === first[i] && isDeepFrozen(tool))).toBe(true);
    version = 2;
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    const third = await list();
    expect(third.map((tool) => tool['name'])).toEqual(['inv__tool_v2', 'inv__other']);
    expect(third[1]).not.toBe(first[1]);
  });

  it('caches no more pages than listCacheMaxPages for the whole replica: past it the oldest is asked for again', async () => {
    const { engine, connector } = build(
      {
        u1: { prefix: 'inv', capabilities: { tools: {} }, handle: async () => ({ tools: tools('one') }) },
        u2: { prefix: 'crm', capabilities: { tools: {} }, handle: async () => ({ tools: tools('two') }) },
      },
      60_000,
      1,
    );
    const record = await openSession(engine);
    const asked = (upstreamId: string) => connector.calls.filter((call) => call.method === 'tools/list' && call.upstreamId === upstreamId).length;
    for (let i = 0; i < 3; i++) await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    // One page fits: the first listing asks both, every later one finds only the page it stored last (2 + 1 + 1;
    // with no bound it would be 2).
    expect(asked('u1') + asked('u2')).toBe(4);
    expect([asked('u1'), asked('u2')]).toEqual([2, 2]);
  });

  it('lets a session\'s cached pages go when it ends, expires or goes idle on this replica', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const sessions = new MemorySessionStore();
      const registry = new UpstreamRegistry('__');
      const upstreams = { u1: { prefix: 'inv', capabilities: { tools: {} }, handle: async () => ({ tools: tools('one') }) } };
      registry.replace([fakeConfig('u1', 'inv')], () => undefined);
      const engine = makeEngine({ registry, connector: new FakeConnector(upstreams), sessions, options: { localIdleMs: 1_000, listCacheMs: 60_000 } });
      const [ended, expired, idle, kept] = [await openSession(engine), await openSession(engine), await openSession(engine), await openSession(engine)];
      for (const record of [ended, expired, idle, kept]) await listedTools(engine, record);
      expect(engine.cachedListingPages).toBe(4);
      // DELETE.
      await engine.end(ended, 'trace');
      expect(engine.cachedListingPages).toBe(3);
      // Idle expiry: the record is gone from the store; the sweep closes the session here.
      await sessions.delete(expired.id);
      await engine.sweepNow();
      expect(engine.cachedListingPages).toBe(2);
      // Idle on this replica only (another replica may serve it next): local state, pages included, is released.
      vi.setSystemTime(Date.now() + 2_000);
      await engine.session(kept.id, principal);
      await engine.sweepNow();
      expect(engine.cachedListingPages).toBe(1);
      expect(await listedTools(engine, kept)).toHaveLength(1);
      expect(await listedTools(engine, idle)).toHaveLength(1);
      expect(engine.cachedListingPages).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it("deletes an expired session's task routes, as DELETE does", async () => {
    const sessions = new MemorySessionStore();
    const tasks = new MemoryTaskRouteStore();
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'inv')], () => undefined);
    const engine = makeEngine({ registry, connector: new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: tools('one') }) } }), sessions, tasks });
    const record = await openSession(engine);
    const agentTaskId = await tasks.add(record.id, { upstreamId: 'u1', taskId: 't-1' }, 60_000);
    expect(await tasks.route(record.id, agentTaskId)).toBeDefined();
    // Idle expiry: the record is gone from the store; the sweep ends the session here.
    await sessions.delete(record.id);
    await engine.sweepNow();
    await expect.poll(() => tasks.route(record.id, agentTaskId)).toBeUndefined();
  });

  it('leaves no task route behind that was being stored when the session expired (re-review)', async () => {
    const sessions = new MemorySessionStore();
    /** A route store whose add waits until released (a Redis round trip under load). */
    const tasks = new (class extends MemoryTaskRouteStore {
      release: (() => void) | undefined;
      override async add(...args: Parameters<MemoryTaskRouteStore['add']>): Promise<string> {
        await new Promise<void>((resolve) => (this.release = resolve));
        return super.add(...args);
      }
    })();
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'up1')], () => undefined);
    const task = { taskId: 't-1', status: 'working', createdAt: '2026-12-03T00:00:00Z', lastUpdatedAt: '2026-12-03T00:00:00Z', ttl: 60_000 };
    const upstream = {
      prefix: 'up1',
      capabilities: { tools: {}, tasks: { cancel: {}, list: {}, requests: { tools: { call: {} } } } },
      handle: async (method: string) => {
        if (method === 'tools/list') return { tools: [{ name: 'slow', inputSchema: { type: 'object' }, execution: { taskSupport: 'optional' } }] };
        if (method === 'tools/call') return { task };
        if (method === 'tasks/cancel') return { ...task, status: 'cancelled' };
        throw new UpstreamRpcError(-32601, 'Method not found');
      },
    };
    const engine = makeEngine({ registry, connector: new FakeConnector({ u1: upstream }), sessions, tasks });
    const { record } = await open(engine, { protocolVersion: '2025-11-25' });
    const call = engine.request(record, req('tools/call', { name: 'up1__slow', arguments: {}, task: {} }), NO_STREAM, 'trace').catch(() => undefined);
    await expect.poll(() => tasks.release).toBeDefined();
    // The record lapses (idle), and the sweep ends the session here while the route is being stored.
    await sessions.delete(record.id);
    await engine.sweepNow();
    tasks.release?.();
    await call;
    await expect.poll(() => tasks.agentTaskId(record.id, { upstreamId: 'u1', taskId: 't-1' })).toBeUndefined();
  });

  it('drops a Streamable HTTP upstream session locally when its session goes idle here, and ends it on DELETE', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const registry = new UpstreamRegistry('__');
      registry.replace([fakeConfig('u1', 'inv')], () => undefined);
      const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: tools('one') }) } });
      const engine = makeEngine({ registry, connector, options: { localIdleMs: 1_000 } });
      await openSession(engine);
      vi.setSystemTime(Date.now() + 2_000);
      await engine.sweepNow();
      // Still open upstream (the agent may come back and resume it), but nothing of it is held here any more.
      expect(connector.ended).toEqual([{ upstreamId: 'u1', how: 'dispose' }]);
      const ended = await openSession(engine);
      await engine.end(ended, 'trace');
      expect(connector.ended.at(-1)).toEqual({ upstreamId: 'u1', how: 'close' });
    } finally {
      vi.useRealTimers();
    }
  });

  it('asks again once a cached page is older than listCacheMs', async () => {
    // A fake clock (Date only, timers stay real): a page's age is what Date.now() says, not how fast this machine runs.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const { engine, connector } = build({ u1: { prefix: 'inv', capabilities: { tools: {} }, handle: async () => ({ tools: tools('one') }) } }, 30);
      const record = await openSession(engine);
      const asked = () => connector.calls.filter((call) => call.method === 'tools/list').length;
      await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
      await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
      expect(asked()).toBe(1);
      vi.setSystemTime(Date.now() + 20);
      await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
      expect(asked()).toBe(1);
      vi.setSystemTime(Date.now() + 20);
      await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
      expect(asked()).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it('asks the upstreams on every listing when the cache is off', async () => {
    const { engine, connector } = build({ u1: { prefix: 'inv', capabilities: { tools: {} }, handle: async () => ({ tools: tools('one') }) } }, 0);
    const record = await openSession(engine);
    for (let i = 0; i < 3; i++) await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    expect(connector.calls.filter((call) => call.method === 'tools/list')).toHaveLength(3);
  });

  it('drops the cached pages of an upstream on every replica when it says its list changed', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'inv')], () => undefined);
    let version = 1;
    const connector = new FakeConnector({ u1: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: tools(`tool_v${version}`) }) } });
    const [a, b] = twoReplicas(connector, registry, 60_000);
    const { sessionId } = await a.initialize(principal, init, 'trace');
    const record = await recordOn(b, sessionId ?? '');
    const names = async (engine: SessionEngine) => {
      const response = await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
      return 'result' in response ? (response.result['tools'] as { name: string }[]).map((tool) => tool.name) : [];
    };
    expect(await names(a)).toEqual(['inv__tool_v1']);
    expect(await names(b)).toEqual(['inv__tool_v1']);
    version = 2;
    // Only replica A's upstream session hears it (the first handler registered is A's).
    connector.notificationHandlers.get('u1')?.[0]?.({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    expect(await names(b)).toEqual(['inv__tool_v2']);
    expect(await names(a)).toEqual(['inv__tool_v2']);
  });

  it('does not keep a page whose list changed while it was being fetched', async () => {
    let version = 1;
    let release: (() => void) | undefined;
    const { engine, connector } = build(
      {
        u1: {
          prefix: 'inv',
          capabilities: { tools: { listChanged: true } },
          handle: async () => {
            const answer = { tools: tools(`tool_v${version}`) };
            await new Promise<void>((resolve) => (release = resolve));
            return answer;
          },
        },
      },
      60_000,
    );
    const record = await openSession(engine);
    const first = engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    await new Promise((resolve) => setImmediate(resolve));
    version = 2;
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    release?.();
    expect(await first).toMatchObject({ result: { tools: [{ name: 'inv__tool_v1' }] } });
    const second = engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    await new Promise((resolve) => setImmediate(resolve));
    release?.();
    expect(await second).toMatchObject({ result: { tools: [{ name: 'inv__tool_v2' }] } });
    expect(connector.calls.filter((call) => call.method === 'tools/list')).toHaveLength(2);
  });
});

describe('SessionEngine: the agent\'s subscriptions and log level on a new upstream session', () => {
  /**
   * An upstream with a subscribable resource per URI given and logging, whose next `refusals` tool calls answer as for a
   * session it forgot (HTTP 404). `hang`: subscribes that never answer.
   */
  function restartingUpstream(capabilities: Record<string, unknown> = { tools: {}, resources: { subscribe: true }, logging: {} }) {
    const upstream = Object.assign(
      forgetfulUpstream((method) => {
        if (method === 'resources/subscribe' && upstream.hang) return new Promise(() => undefined);
        if (method === 'resources/list') return { resources: ['mem://a', 'mem://b'].map((uri) => ({ uri, name: uri })) };
        if (method === 'resources/templates/list') return { resourceTemplates: [{ uriTemplate: 'mem://many/{n}', name: 'many' }] };
        return method === 'tools/list' ? { tools: tools('read') } : { content: [] };
      }, capabilities),
      { hang: false },
    );
    return upstream;
  }
  const call = () => req('tools/call', { name: 'files__read', arguments: {} });
  /** The requests that reached upstream session `sessionId`, as `method uri-or-level`. */
  const sentTo = (connector: FakeConnector, sessionId: string) =>
    connector.calls
      .filter((sent) => sent.sessionId === sessionId && !sent.method.endsWith('/list'))
      .map((sent) => `${sent.method} ${String((sent.params as Record<string, unknown> | undefined)?.['uri'] ?? (sent.params as Record<string, unknown> | undefined)?.['level'] ?? '')}`.trim());

  it('subscribes a renewed upstream session again, and sets its log level, before the refused call goes again, also when the agent set them through another replica', async () => {
    const upstream = restartingUpstream();
    const { a, b, connector, record } = await sessionOnTwoReplicas(upstream);
    const onA = await a.session(record.id, principal);
    if (!onA) throw new Error('no session');
    // Through replica A: two subscriptions, one withdrawn again, and a log level.
    for (const [method, params] of [
      ['resources/subscribe', { uri: 'mem://a' }],
      ['resources/subscribe', { uri: 'mem://b' }],
      ['resources/unsubscribe', { uri: 'mem://b' }],
      ['logging/setLevel', { level: 'debug' }],
    ] as const) {
      expect(await a.request(onA, req(method, params), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    }
    // Replica B meets the upstream's 404 and starts a new upstream session: it learns of A's changes from the record.
    upstream.refusals = 1;
    expect(await b.request(record, call(), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(sentTo(connector, 'upstream-session-u1-2')).toEqual(['resources/subscribe mem://a', 'logging/setLevel debug', 'tools/call']);
    // Replica A, still on the forgotten session, continues B's: nothing is sent twice.
    upstream.refusals = 1;
    expect(await a.request(onA, call(), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(sentTo(connector, 'upstream-session-u1-2')).toEqual(['resources/subscribe mem://a', 'logging/setLevel debug', 'tools/call', 'tools/call']);
  });

  it('answers logging/setLevel with an invalid level as invalid params, without asking any upstream', async () => {
    const logging = { prefix: 'log', capabilities: { logging: {} }, handle: async () => ({}) };
    const { engine, connector } = build({ u1: logging });
    const record = await openSession(engine);
    for (const level of ['loud', 7, undefined]) {
      expect(await engine.request(record, req('logging/setLevel', level === undefined ? {} : { level }), NO_STREAM, 'trace')).toMatchObject({ error: { code: -32602 } });
    }
    expect(connector.calls.filter((call) => call.method === 'logging/setLevel')).toEqual([]);
    expect(await engine.request(record, req('logging/setLevel', { level: 'warning' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(connector.calls.filter((call) => call.method === 'logging/setLevel').map((call) => call.params)).toEqual([{ level: 'warning' }]);
  });

  it('replays nothing the new upstream session did not advertise, and only that upstream\'s subscriptions', async () => {
    const quiet = restartingUpstream({ tools: {}, resources: {} });
    const other = { prefix: 'other', capabilities: { resources: { subscribe: true }, logging: {} }, handle: async (method: string) => (method === 'resources/list' ? { resources: [{ uri: 'mem://other', name: 'o' }] } : {}) };
    const { engine, connector } = build({ u1: quiet, u2: other });
    const record = await openSession(engine);
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://other' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(await engine.request(record, req('logging/setLevel', { level: 'error' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    quiet.refusals = 1;
    expect(await engine.request(record, call(), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(sentTo(connector, 'upstream-session-u1-2')).toEqual(['tools/call']);
  });

  it('holds the refused call no longer than listTimeoutMs while the new upstream session does not answer the replay, and logs it', async () => {
    const upstream = restartingUpstream();
    const { engine } = build({ u1: upstream });
    const record = await openSession(engine);
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    upstream.hang = true;
    upstream.refusals = 1;
    logs = '';
    const startedAt = performance.now();
    expect(await engine.request(record, call(), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(performance.now() - startedAt).toBeLessThan(1_000);
    expect(logs).toContain('new upstream session not told');
    expect(logs).not.toContain('internal-u1.example');
  });

  it('tells a stdio or legacy SSE upstream session opened on another replica, or here again after an idle release, what the agent set', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([{ ...fakeConfig('u1', 'files'), transport: 'sse' }, fakeConfig('u2', 'logs')], () => undefined);
    const logsUpstream: FakeUpstream = { capabilities: { tools: {}, logging: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) };
    const connector = new FakeConnector({ u1: restartingUpstream(), u2: logsUpstream });
    // Legacy SSE, nothing to resume: each replica opens its own upstream session. u2 is a Streamable HTTP upstream
    // that issues no session id: nothing to tell it (it keeps no state between requests).
    connector.unresumable.add('u1');
    connector.unresumable.add('u2');
    const sessions = new MemorySessionStore();
    // B lets a session go once idle for 1 ms (at its sweep); A keeps it.
    const make = (replicaId: string, localIdleMs: number) =>
      makeEngine({ registry, connector, sessions, options: { listTimeoutMs: 200, localIdleMs, replicaId } });
    const [a, b] = [make('ra', 60_000), make('rb', 1)];
    const onA = await openSession(a);
    expect(await a.request(onA, call(), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    // A session with nothing set is told nothing when it opens elsewhere.
    const onB = await b.session(onA.id, principal);
    if (!onB) throw new Error('no session');
    expect(await b.request(onB, call(), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(sentTo(connector, 'upstream-session-u1-2')).toEqual(['tools/call']);
    expect(await a.request(onA, req('resources/subscribe', { uri: 'mem://a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(await a.request(onA, req('logging/setLevel', { level: 'info' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    // B lets the session go (idle) and opens it again: its new upstream session is told them before the call.
    await new Promise((resolve) => setTimeout(resolve, 10));
    await b.sweepNow();
    const again = await b.session(onA.id, principal);
    if (!again) throw new Error('no session');
    expect(await b.request(again, call(), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(sentTo(connector, 'upstream-session-u1-3')).toEqual(['resources/subscribe mem://a', 'logging/setLevel info', 'tools/call']);
    // A's own upstream session, still open, is not told them again.
    expect(await a.request(onA, call(), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(sentTo(connector, 'upstream-session-u1')).toEqual(['tools/call', 'resources/subscribe mem://a', 'logging/setLevel info', 'tools/call']);
    // The Streamable HTTP one opened on B gets only what B sends it, no replay.
    const u2Before = new Set(connector.calls.filter((sent) => sent.upstreamId === 'u2').map((sent) => sent.sessionId));
    expect(await b.request(again, req('logging/setLevel', { level: 'debug' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    const onBu2 = connector.calls.filter((sent) => sent.upstreamId === 'u2' && sent.method === 'logging/setLevel' && !u2Before.has(sent.sessionId));
    expect(onBu2.map((sent) => (sent.params as Record<string, unknown>)['level'])).toEqual(['debug']);
  });

  it('subscribes a legacy SSE upstream\'s new session again after its stream dropped (it cannot be resumed)', async () => {
    const upstream = restartingUpstream();
    const { engine, connector } = build({ u1: upstream });
    connector.unresumable.add('u1');
    const record = await openSession(engine);
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(await engine.request(record, req('logging/setLevel', { level: 'warning' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    connector.breakSession('u1');
    await new Promise((resolve) => setImmediate(resolve));
    expect(await engine.request(record, call(), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(sentTo(connector, 'upstream-session-u1-2')).toEqual(['resources/subscribe mem://a', 'logging/setLevel warning', 'tools/call']);
  });

  it('opens a new legacy SSE session by itself, told the subscriptions, for an agent that only listens on its stream', async () => {
    const upstream = restartingUpstream();
    const { engine, connector } = build({ u1: upstream });
    connector.unresumable.add('u1');
    const record = await openSession(engine);
    engine.attachStandalone(record, { canStream: true, send: () => true });
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    const resume = connector.resume.bind(connector);
    let down = true;
    connector.resume = async (...args: Parameters<FakeConnector['resume']>) => {
      if (down) throw new UpstreamUnavailableError('connect_failed', 'refused');
      return resume(...args);
    };
    connector.breakSession('u1');
    // The first attempt (after 0.5 s) finds the upstream still down; the next (1 s later) opens it. No request needed.
    setTimeout(() => (down = false), 700);
    await expect.poll(() => sentTo(connector, 'upstream-session-u1-2'), { timeout: 3_000 }).toEqual(['resources/subscribe mem://a']);
    // An upstream whose every new session ends at once is reopened a few times a minute, not in a loop.
    const opened = () => connector.opened.filter((open) => open.upstreamId === 'u1').length;
    const before = opened();
    for (let round = 0; round < 8; round += 1) {
      connector.breakSession('u1');
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
    expect(opened() - before).toBeLessThanOrEqual(5);
  }, 15_000);

  it('still tells the new legacy SSE session when the first reconnect after the drop failed (the upstream still down)', async () => {
    const upstream = restartingUpstream();
    const { engine, connector } = build({ u1: upstream });
    connector.unresumable.add('u1');
    const record = await openSession(engine);
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    connector.breakSession('u1');
    await new Promise((resolve) => setImmediate(resolve));
    const resume = connector.resume.bind(connector);
    let down = true;
    connector.resume = async (...args: Parameters<FakeConnector['resume']>) => {
      if (down) throw new UpstreamUnavailableError('connect_failed', 'refused');
      return resume(...args);
    };
    expect(await engine.request(record, call(), NO_STREAM, 'trace')).toMatchObject({ error: {} });
    down = false;
    expect(await engine.request(record, call(), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(sentTo(connector, 'upstream-session-u1-2')).toEqual(['resources/subscribe mem://a', 'tools/call']);
  });

  it(`refuses a subscription past ${MAX_SUBSCRIPTIONS_PER_SESSION} per session without forwarding it, and answers a subscribe the store could not record`, async () => {
    class FailingStore extends MemorySessionStore {
      failing = false;
      override async change(...args: Parameters<MemorySessionStore['change']>) {
        if (this.failing) throw new Error('redis down at redis://:hunter2@cache');
        return super.change(...args);
      }
    }
    const sessions = new FailingStore();
    const upstream = restartingUpstream();
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({ u1: upstream });
    const engine = makeEngine({ registry, connector, sessions });
    const record = await openSession(engine);
    const subscribe = (uri: string) => engine.request(record, req('resources/subscribe', { uri }), NO_STREAM, 'trace');
    for (let n = 0; n < MAX_SUBSCRIPTIONS_PER_SESSION; n += 1) expect(await subscribe(`mem://many/${n}`)).toMatchObject({ result: {} });
    const forwarded = () => connector.calls.filter((sent) => sent.method === 'resources/subscribe').length;
    expect(forwarded()).toBe(MAX_SUBSCRIPTIONS_PER_SESSION);
    expect(await subscribe('mem://many/last')).toMatchObject({ error: { code: -32602, data: { limit: MAX_SUBSCRIPTIONS_PER_SESSION } } });
    expect(forwarded()).toBe(MAX_SUBSCRIPTIONS_PER_SESSION);
    // One already held is not a new one.
    expect(await subscribe('mem://many/0')).toMatchObject({ result: {} });
    // Room again after an unsubscribe; and a store that cannot record it does not fail the agent's request.
    expect(await engine.request(record, req('resources/unsubscribe', { uri: 'mem://many/1' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    sessions.failing = true;
    logs = '';
    expect(await subscribe('mem://many/last')).toMatchObject({ result: {} });
    expect(logs).toContain('subscription or log level not recorded');
    expect(logs).not.toContain('hunter2');
  });

  it(`refuses a subscription that would take the session's URIs past ${MAX_SUBSCRIBED_URI_CHARS} characters`, async () => {
    const { engine, connector } = build({ u1: restartingUpstream() });
    const record = await openSession(engine);
    const subscribe = (uri: string) => engine.request(record, req('resources/subscribe', { uri }), NO_STREAM, 'trace');
    // 8 URIs of 8,000 characters fit (64,000); 2,000 more would not (66,000 > 65,536), a short one still does.
    const long = (n: number, length = 8_000) => `mem://many/${n}${'x'.repeat(length - `mem://many/${n}`.length)}`;
    for (let n = 0; n < 8; n += 1) expect(await subscribe(long(n))).toMatchObject({ result: {} });
    const forwarded = () => connector.calls.filter((sent) => sent.method === 'resources/subscribe').length;
    expect(await subscribe(long(8, 2_000))).toMatchObject({ error: { code: -32602, data: { maxUriChars: MAX_SUBSCRIBED_URI_CHARS } } });
    expect(forwarded()).toBe(8);
    expect(await subscribe('mem://many/short')).toMatchObject({ result: {} });
  });

  it('ends a subscription whose URI no upstream lists any more, on the upstream it was made on, and drops one a renewed session refuses', async () => {
    let listed = true;
    const refusedUris = new Set<string>();
    const failingUris = new Set<string>();
    const upstream = forgetfulUpstream(async (method, params) => {
      if (method === 'resources/subscribe' && refusedUris.has(String(params?.['uri']))) throw new UpstreamRpcError(-32602, 'Resource not found');
      if (method === 'resources/subscribe' && failingUris.has(String(params?.['uri']))) throw new UpstreamRpcError(-32603, 'still starting');
      if (method === 'resources/list') return { resources: listed ? ['mem://a', 'mem://b', 'mem://c'].map((uri) => ({ uri, name: uri })) : [] };
      if (method === 'resources/templates/list') return { resourceTemplates: [] };
      return method === 'tools/list' ? { tools: tools('read') } : { content: [] };
    }, { tools: {}, resources: { subscribe: true, listChanged: true } });
    const { engine, connector } = build({ u1: upstream });
    const record = await openSession(engine);
    for (const uri of ['mem://a', 'mem://b', 'mem://c']) expect(await engine.request(record, req('resources/subscribe', { uri }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    // mem://a goes away: no listing has it, and the upstream says its resources changed (the routes are dropped).
    listed = false;
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/list_changed' });
    const current = async () => (await engine.session(record.id, principal)) ?? record;
    expect(await engine.request(await current(), req('resources/unsubscribe', { uri: 'mem://a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(connector.calls.at(-1)).toMatchObject({ method: 'resources/unsubscribe', params: { uri: 'mem://a' } });
    expect((await current()).subscriptions).toEqual({ u1: ['mem://b', 'mem://c'] });
    // The upstream restarts and no longer has mem://b: the new session refuses it, and the record lets it go. mem://c
    // fails for a passing reason (an internal error): it stays, for the next new session.
    refusedUris.add('mem://b');
    failingUris.add('mem://c');
    upstream.refusals = 1;
    expect('result' in (await engine.request(await current(), req('tools/call', { name: 'files__read', arguments: {} }), NO_STREAM, 'trace'))).toBe(true);
    await expect.poll(async () => (await current()).subscriptions).toEqual({ u1: ['mem://c'] });
  });
});
