import type { Principal } from '@portcullis/gateway/mcp';
import { createLogger } from '@portcullis/shared/util-logger';
import { waitFor } from '@portcullis/shared/util-testing';
import Fastify, { type FastifyInstance } from 'fastify';
import { connect, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuthOutcome, Authenticator } from '../auth/authenticator';
import type { ReplayEntry, ReplayLog } from '../dispatch/replay-log';
import { SessionEngine } from '../dispatch/session-engine';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, type FakeUpstream, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { GATEWAY_RPC, GatewayHttpError } from './gateway-error';
import { registerMcpRoutes } from './mcp-routes';

const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1', credentialId: 'k1' };
let logs = '';
const logger = createLogger({ service: 'spec', level: 'info', destination: { write: (line: string) => void (logs += line) } });

type Mode = 'ok' | 'refused' | 'throws' | 'hangs';

/** An authenticator that answers later (as an OAuth token check would): what the fast POST path leaves to handlePost. */
class SlowAuthenticator implements Authenticator {
  mode: Mode = 'ok';
  calls = 0;
  authenticate(authorization: string | string[] | undefined): Promise<AuthOutcome> {
    this.calls += 1;
    const mode = this.mode;
    if (mode === 'hangs') return new Promise(() => undefined);
    return new Promise((resolve, reject) =>
      setTimeout(() => {
        if (mode === 'throws') reject(new Error('token introspection at http://10.1.2.3/introspect failed: secret=hunter2'));
        else if (mode === 'refused' || authorization !== 'Bearer good') resolve({ ok: false, reason: 'unauthenticated' });
        else resolve({ ok: true, principal, credentialId: 'k1' });
      }, 20),
    );
  }
  stillValid(): boolean {
    return true;
  }
}

const apps: FastifyInstance[] = [];
const engines: SessionEngine[] = [];
const routeSets: { closeStreams(): void }[] = [];
afterEach(async () => {
  // Open SSE streams are hijacked responses: ended first, or closing the server would wait for them.
  for (const routes of routeSets.splice(0)) routes.closeStreams();
  await Promise.all(apps.splice(0).map((app) => app.close()));
  await Promise.all(engines.splice(0).map((engine) => engine.shutdown()));
});

async function serve(
  rawFastPath: boolean,
  legacy?: { initMs?: number; maxPerPrincipal?: number; maxPerTenant?: number; maxStreams?: number },
  keepAliveMs = 15_000,
  replay?: ReplayLog,
  streams?: { maxPerPrincipal?: number; maxPerTenant?: number; maxStreams?: number },
  authTimeoutMs?: number,
) {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'docs')], () => undefined);
  /** What the upstream does with a tools/call (default: echoes its arguments at once). */
  const tool: { call?: FakeUpstream['handle'] } = {};
  const connector = new FakeConnector({
    u1: {
      capabilities: { tools: {}, logging: {} },
      handle: async (method, params, options) =>
        method === 'tools/list'
          ? { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] }
          : tool.call
            ? tool.call(method, params, options)
            : { content: [{ type: 'text', text: JSON.stringify(params?.['arguments']) }] },
    },
  });
  const sessions = new MemorySessionStore();
  const engine = new SessionEngine({
    registry,
    connector,
    sessions,
    logger,
    options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 1_000 },
  });
  engines.push(engine);
  const authenticator = new SlowAuthenticator();
  const app = Fastify();
  apps.push(app);
  // Which way a POST went: the raw fast path answers before Fastify sees the request.
  const viaFastify = { count: 0 };
  app.addHook('onRequest', async (request) => {
    if (request.method === 'POST') viaFastify.count += 1;
  });
  const routes = await registerMcpRoutes(app, {
    authenticator,
    engine,
    logger,
    origin: { allowedHosts: new Set(), allowedOrigins: new Set() },
    bodyLimitBytes: 64 * 1024,
    keepAliveMs,
    rawFastPath,
    ...(legacy ? { legacy } : {}),
    ...(replay ? { replay } : {}),
    ...(streams ? { streams } : {}),
    ...(authTimeoutMs !== undefined ? { authTimeoutMs } : {}),
  });
  routeSets.push(routes);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}/t/acme/mcp`;
  const post = Object.assign(
    (body: unknown, headers: Record<string, string> = {}) =>
      fetch(url, {
        method: 'POST',
        headers: { authorization: 'Bearer good', accept: 'application/json, text/event-stream', 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      }),
    { url },
  );
  /** A session opened while the authenticator admits, and a tools/call on it. */
  const session = async () => {
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    expect(sessionId).not.toBe('');
    return (id: number) =>
      post({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'docs__echo', arguments: { said: 'hi' } } }, { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' });
  };
  const toolCalls = () => connector.calls.filter((c) => c.method === 'tools/call').length;
  return { authenticator, connector, engine, post, session, tool, toolCalls, viaFastify, sessions, port, base: `http://127.0.0.1:${port}` };
}

describe.each([
  ['the raw fast path', true],
  ['the Fastify route', false],
])('an initialize whose agent hangs up before the answer, through %s', (_label, rawFastPath) => {
  it('ends the session it made: its upstream sessions are closed and its record goes', async () => {
    const { connector, post, sessions } = await serve(rawFastPath);
    connector.openDelayMs.set('u1', 1_000);
    const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } };
    // The agent hangs up once the gateway is connecting its upstream (not after a fixed time: on a loaded machine the
    // request might not even have arrived by then).
    const agent = new AbortController();
    const answer = fetch(post.url, {
      method: 'POST',
      headers: { authorization: 'Bearer good', accept: 'application/json, text/event-stream', 'content-type': 'application/json' },
      body: JSON.stringify(init),
      signal: agent.signal,
    }).then(
      () => 'answered',
      () => 'hung up',
    );
    await waitFor(() => connector.opened.length === 1, { description: 'the upstream being connected' });
    agent.abort();
    expect(await answer).toBe('hung up');
    await waitFor(() => connector.opened.length === 1 && connector.closedSessions.length === 1, { description: 'the upstream session opened and closed' });
    expect(sessions.records.size).toBe(0);
    // An agent that waits gets its session as ever.
    connector.openDelayMs.set('u1', 0);
    expect((await post(init)).headers.get('mcp-session-id')).toMatch(/\S/);
    expect(sessions.records.size).toBe(1);
  });
});

describe.each([
  ['the raw fast path', true],
  ['the Fastify route', false],
])('an agent that hangs up on a call, through %s', (_label, rawFastPath) => {
  it('does not cancel the call upstream: a disconnection is no cancellation (MCP transports, 2025-03-26 to 2025-11-25)', async () => {
    const { post, tool, connector } = await serve(rawFastPath);
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    expect(sessionId).not.toBe('');
    let outcome = 'running';
    tool.call = (_method, _params, options) =>
      new Promise((resolve) => {
        const timer = setTimeout(() => {
          outcome = 'completed';
          resolve({ content: [{ type: 'text', text: 'done' }] });
        }, 400);
        options?.signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          outcome = 'aborted';
          resolve({ content: [] });
        });
      });
    // The agent's connection drops while the upstream works (a network cut, a proxy restart): nothing came yet, so
    // there is no event id to resume from either.
    const gone = await fetch(post.url, {
      method: 'POST',
      headers: { authorization: 'Bearer good', accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__echo', arguments: {} } }),
      signal: AbortSignal.timeout(100),
    }).then(
      () => 'answered',
      () => 'hung up',
    );
    expect(gone).toBe('hung up');
    await waitFor(() => outcome !== 'running', { timeoutMs: 3_000, description: 'the upstream call to end' });
    expect(outcome).toBe('completed');
    expect(connector.notified.filter((n) => n.method === 'notifications/cancelled')).toEqual([]);
  });
});

/** A replay log in memory, as the Redis one behaves for one replica. */
const memoryReplay = () => {
  const streams = new Map<string, ReplayEntry[]>();
  const replay: ReplayLog = {
    open: (_session, streamId) => {
      const entries = streams.get(streamId) ?? [];
      streams.set(streamId, entries);
      return { append: (seq, data, final) => void entries.push({ seq, data, final }), keep: () => undefined };
    },
    read: async (_session, streamId, afterSeq) => streams.get(streamId)?.filter((entry) => entry.seq > afterSeq),
    finished: async (_session, streamId) => {
      const entries = streams.get(streamId);
      return entries === undefined || (entries.at(-1)?.final ?? false);
    },
    follow: async (_session, streamId, afterSeq, onEntry, signal) => {
      let last = afterSeq;
      while (!signal.aborted) {
        const entries = streams.get(streamId);
        if (entries === undefined) return 'gone';
        for (const entry of entries.filter((one) => one.seq > last)) {
          last = entry.seq;
          onEntry(entry);
          if (entry.final) return 'final';
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return 'aborted';
    },
    pendingRequests: async () => undefined,
  };
  return { replay, streams };
};
describe('a standalone stream whose agent reconnects', () => {
  /** Reads SSE events off a response until `enough` holds (or 3 s pass). */
  const eventsUntil = async (reader: ReadableStreamDefaultReader<Uint8Array>, enough: (events: string[]) => boolean) => {
    const decoder = new TextDecoder();
    let text = '';
    const deadline = Date.now() + 3_000;
    while (!enough(text.split('\n\n').filter((event) => event.includes('data:'))) && Date.now() < deadline) {
      const chunk = await Promise.race([reader.read(), new Promise<undefined>((resolve) => setTimeout(resolve, 100))]);
      if (chunk?.done) break;
      if (chunk?.value) text += decoder.decode(chunk.value, { stream: true });
    }
    return text.split('\n\n').filter((event) => event.includes('data:'));
  };
  const idOf = (event: string) => /^id: (\S+)$/m.exec(event)?.[1] ?? '';
  /** What a log message event says (its `data`), '' for any other event. */
  const said = (event: string) => (/^data: (.+)$/m.exec(event)?.[1] ?? '').match(/"data":"([^"]+)"/)?.[1] ?? '';

  it('gets what was sent while it was away, then the rest on the new stream (the old one parked, not dropped)', async () => {
    const { replay } = memoryReplay();
    const { post, base, connector } = await serve(true, undefined, 15_000, replay);
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    const headers = { authorization: 'Bearer good', accept: 'text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' };
    const upstreamSays = (data: string) => {
      for (const handler of connector.notificationHandlers.get('u1') ?? []) handler({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data } });
    };

    const away = new AbortController();
    const first = await fetch(`${base}/t/acme/mcp`, { headers, signal: away.signal });
    expect(first.status).toBe(200);
    const firstReader = first.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    await waitFor(() => (connector.notificationHandlers.get('u1') ?? []).length > 0, { description: 'the upstream session listened to' });
    upstreamSays('one');
    const seen = await eventsUntil(firstReader, (events) => events.some((event) => said(event) !== ''));
    const lastSeen = idOf(seen.filter((event) => said(event) !== '').at(-1) ?? '');
    expect(lastSeen).toMatch(/^s.+_1$/);

    // The connection drops; the upstream speaks while the agent is away.
    away.abort();
    await new Promise((resolve) => setTimeout(resolve, 100));
    upstreamSays('two');
    upstreamSays('three');

    const back = await fetch(`${base}/t/acme/mcp`, { headers: { ...headers, 'last-event-id': lastSeen } });
    expect(back.status).toBe(200);
    const backReader = back.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    const missed = await eventsUntil(backReader, (events) => events.filter((event) => said(event) !== '').length >= 2);
    const messages = missed.filter((event) => said(event) !== '');
    expect(messages.map(said)).toEqual(['two', 'three']);
    // As the new stream's own first events (the agent holds the new stream's id from the first of them on).
    const newer = idOf(messages[0] ?? '').replace(/_1$/, '');
    expect(newer).not.toBe(lastSeen.replace(/_1$/, ''));
    expect(messages.map(idOf)).toEqual([`${newer}_1`, `${newer}_2`]);
    // And the new stream goes on live.
    upstreamSays('four');
    const live = await eventsUntil(backReader, (events) => events.some((event) => said(event) !== ''));
    expect(live.filter((event) => said(event) !== '').map(said)).toEqual(['four']);
    await backReader.cancel();
  });

  it('is ended by a shutdown (closeStreams) while parked, its log closed with the end marker, not left for its 60 s', async () => {
    const { replay, streams } = memoryReplay();
    const { post, base, connector } = await serve(true, undefined, 15_000, replay);
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    const away = new AbortController();
    const res = await fetch(`${base}/t/acme/mcp`, { headers: { authorization: 'Bearer good', accept: 'text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' }, signal: away.signal });
    expect(res.status).toBe(200);
    await waitFor(() => (connector.notificationHandlers.get('u1') ?? []).length > 0, { description: 'the upstream session listened to' });
    away.abort();
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Parked: a message still goes to its log.
    for (const handler of connector.notificationHandlers.get('u1') ?? []) handler({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'while away' } });
    const [log] = [...streams.values()];
    expect(log?.map((entry) => entry.final)).toEqual([false]);
    await routeSets.at(-1)?.closeStreams();
    expect(log?.at(-1)).toMatchObject({ data: '', final: true });
  });
});

describe('a call the agent cancels', () => {
  const headersFor = (sessionId: string, version: string) => ({ 'mcp-session-id': sessionId, 'mcp-protocol-version': version });
  const initialize = async (post: (body: unknown) => Promise<Response>, version: string) => {
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    return init.headers.get('mcp-session-id') ?? '';
  };
  /** The upstream works until the gateway cancels its call. */
  const untilCancelled: FakeUpstream['handle'] = (_method, _params, options) =>
    new Promise((resolve) => options?.signal?.addEventListener('abort', () => resolve({ content: [{ type: 'text', text: 'stopped' }] })));

  it('gets no answer: a response not yet a stream ends as an empty event stream (MCP: no answer to a cancelled request)', async () => {
    const { post, tool } = await serve(true);
    tool.call = untilCancelled;
    const sessionId = await initialize(post, '2025-06-18');
    const call = post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__echo', arguments: {} } }, headersFor(sessionId, '2025-06-18'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const cancel = await post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 2, reason: 'enough' } }, headersFor(sessionId, '2025-06-18'));
    expect(cancel.status).toBe(202);
    const res = await call;
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    expect(await res.text()).toBe('');
    // Another request's answer still comes.
    expect((await post({ jsonrpc: '2.0', id: 3, method: 'ping' }, headersFor(sessionId, '2025-06-18'))).status).toBe(200);
  });

  it('ends a stream without the answer and marks its log finished, so a resume is told nothing is left (405)', async () => {
    const { replay, streams } = memoryReplay();
    const { post, tool, base } = await serve(true, undefined, 40, replay);
    tool.call = untilCancelled;
    const sessionId = await initialize(post, '2025-11-25');
    const res = await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__echo', arguments: {} } }, headersFor(sessionId, '2025-11-25'));
    // Quiet for a while: the response became a resumable stream, opened with its priming event.
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    await new Promise((resolve) => setTimeout(resolve, 150));
    await post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 2 } }, headersFor(sessionId, '2025-11-25'));
    const body = await res.text();
    const primed = /^id: (\S+)\n/m.exec(body)?.[1] ?? '';
    expect(primed).toMatch(/_0$/);
    expect(body).not.toContain('"id":2');
    const [log] = [...streams.values()];
    expect(log?.at(-1)).toMatchObject({ data: '', final: true });
    const resume = await fetch(`${base}/t/acme/mcp`, { headers: { authorization: 'Bearer good', accept: 'text/event-stream', ...headersFor(sessionId, '2025-11-25'), 'last-event-id': primed } });
    expect(resume.status).toBe(405);
  });

  it("ends a resumed stream of a call cancelled meanwhile with the end's id, so the SDK client resumes from it and is told 405 (no reconnect loop)", async () => {
    const { replay } = memoryReplay();
    const { post, tool, base } = await serve(true, undefined, 40, replay);
    tool.call = untilCancelled;
    const sessionId = await initialize(post, '2025-11-25');
    const res = await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__echo', arguments: {} } }, headersFor(sessionId, '2025-11-25'));
    const reader = res.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    const first = new TextDecoder().decode((await reader.read()).value);
    const primed = /^id: (\S+)$/m.exec(first)?.[1] ?? '';
    expect(primed).toMatch(/_0$/);
    // The connection cut; resumed while the call still runs: the stream follows the log.
    await reader.cancel();
    const resumed = await fetch(`${base}/t/acme/mcp`, { headers: { authorization: 'Bearer good', accept: 'text/event-stream', ...headersFor(sessionId, '2025-11-25'), 'last-event-id': primed } });
    expect(resumed.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 2 } }, headersFor(sessionId, '2025-11-25'));
    const body = await resumed.text();
    const ended = /^id: (\S+)$/m.exec(body)?.[1] ?? '';
    expect(ended).toMatch(/_\d+$/);
    expect(ended).not.toBe(primed);
    expect(body).not.toContain('"id":2');
    const again = await fetch(`${base}/t/acme/mcp`, { headers: { authorization: 'Bearer good', accept: 'text/event-stream', ...headersFor(sessionId, '2025-11-25'), 'last-event-id': ended } });
    expect(again.status).toBe(405);
  });
});

describe.each([
  ['the raw fast path', true],
  ['the Fastify route', false],
])('a POST kept alive while it waits, through %s', (_label, rawFastPath) => {
  it.each([
    ['an unexpected error', () => new Error('an engine failure'), true],
    ['a client error raised late', () => new GatewayHttpError(503, GATEWAY_RPC.UNAVAILABLE, 'unavailable'), false],
  ])('ends with an internal error for the request when its handling fails after it became a stream (%s)', async (_kind, failure, logged) => {
    const { engine, session } = await serve(rawFastPath, undefined, 40);
    const call = await session();
    // Fails once the response has been quiet long enough to be a stream with keep-alives.
    engine.request = async () => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      throw failure();
    };
    const res = await call(2);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const events = (await res.text()).split('\n\n').filter(Boolean);
    expect(events).toContain(': keep-alive');
    const last = events.at(-1) ?? '';
    const answer = JSON.parse(last.slice(last.indexOf('data: ') + 6));
    expect(answer).toMatchObject({ jsonrpc: '2.0', id: 2, error: { code: -32603, message: 'Internal error' } });
    // An unexpected failure is logged under an error id the agent is given, to quote to the operator.
    if (logged) expect(answer.error.data.errorId).toMatch(/^[0-9a-f]{16}$/);
    else expect(answer.error.data.errorId).toBeUndefined();
  });
});

describe.each([
  ['the raw fast path', true],
  ['the Fastify route', false],
])('MCP POST with an authenticator that must wait, through %s', (_label, rawFastPath) => {
  it('serves the request once the authenticator admits it', async () => {
    const { authenticator, session, toolCalls, viaFastify } = await serve(rawFastPath);
    const call = await (await session())(2);
    expect(call.status).toBe(200);
    expect(await call.json()).toMatchObject({ id: 2, result: { content: [{ type: 'text', text: '{"said":"hi"}' }] } });
    // Once per request: the fast path's pending answer is used, not asked for again.
    expect(authenticator.calls).toBe(2);
    expect(toolCalls()).toBe(1);
    expect(viaFastify.count).toBe(rawFastPath ? 0 : 2);
  });

  it('answers 401 with a Bearer challenge when the authenticator refuses, and nothing reaches an upstream', async () => {
    const { authenticator, session, toolCalls } = await serve(rawFastPath);
    const call = await session();
    authenticator.mode = 'refused';
    const res = await call(2);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
    expect(await res.json()).toMatchObject({ jsonrpc: '2.0', error: { message: 'Authentication required' } });
    expect(toolCalls()).toBe(0);
  });

  it('answers a failing authenticator with a 500 that names an error id and nothing of the failure', async () => {
    const { authenticator, session, toolCalls } = await serve(rawFastPath);
    const call = await session();
    authenticator.mode = 'throws';
    logs = '';
    const res = await call(2);
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toMatch(/10\.1\.2\.3|hunter2|introspect/);
    const body = JSON.parse(text) as { error: { data: { errorId: string } } };
    expect(body.error.data.errorId).toMatch(/^[0-9a-f]{16}$/);
    // The failure is in the log under that id, for the operator.
    expect(logs).toContain(body.error.data.errorId);
    expect(toolCalls()).toBe(0);
  });

  it('answers 503 with Retry-After when the authenticator does not answer in time, and nothing reaches an upstream', async () => {
    const { authenticator, session, toolCalls, post, base } = await serve(rawFastPath, undefined, 15_000, undefined, undefined, 300);
    const call = await session();
    authenticator.mode = 'hangs';
    const started = performance.now();
    const res = await call(2);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(await res.json()).toMatchObject({ jsonrpc: '2.0', error: { message: 'Credentials or configuration cannot be loaded right now; try again shortly' } });
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    // The other ways in are bounded by the same deadline: a new session and a DELETE.
    const init = await post({ jsonrpc: '2.0', id: 3, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    expect(init.status).toBe(503);
    const deleted = await fetch(`${base}/t/acme/mcp`, { method: 'DELETE', headers: { authorization: 'Bearer good', 'mcp-session-id': 'x'.repeat(43) } });
    expect(deleted.status).toBe(503);
    expect(toolCalls()).toBe(0);
  });
});

describe('Streamable HTTP GET streams open at once', () => {
  it('are bounded per principal (429 past the bound), and a closed one makes room', async () => {
    const { post, base } = await serve(true, undefined, 15_000, undefined, { maxPerPrincipal: 2 });
    const sessionIds: string[] = [];
    for (let i = 0; i < 3; i++) {
      const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
      sessionIds.push(init.headers.get('mcp-session-id') ?? '');
    }
    const open = (sessionId: string, signal?: AbortSignal) =>
      fetch(`${base}/t/acme/mcp`, { headers: { authorization: 'Bearer good', accept: 'text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' }, ...(signal ? { signal } : {}) });
    // The responses are held to the end: undici closes the connection of a response collected unread, which made
    // room under the bound whenever a collection came in between (seen under the full suite's load).
    const first = new AbortController();
    const firstStream = await open(sessionIds[0] ?? '', first.signal);
    expect(firstStream.status).toBe(200);
    const second = new AbortController();
    const secondStream = await open(sessionIds[1] ?? '', second.signal);
    expect(secondStream.status).toBe(200);
    const refused = await open(sessionIds[2] ?? '');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('5');
    // The rate-limit code, as every other limit answers (it was -32600, an invalid request).
    expect(await refused.json()).toMatchObject({ error: { code: GATEWAY_RPC.RATE_LIMITED, message: 'Too many SSE streams open for this client (at most 2)' } });
    // The first one closed by its agent: its place is given back once the gateway sees the close.
    first.abort();
    const third = new AbortController();
    let status = 0;
    for (let attempt = 0; attempt < 50 && status !== 200; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 50));
      status = (await open(sessionIds[2] ?? '', third.signal)).status;
    }
    expect(status).toBe(200);
    second.abort();
    third.abort();
    expect([firstStream.bodyUsed, secondStream.bodyUsed]).toEqual([false, false]);
  });
});

describe('resuming a POST stream whose answer is logged just then', () => {
  it('replays the answer that came between reading the log and looking at its end (not a standalone stream)', async () => {
    const answer: ReplayEntry = { seq: 1, data: JSON.stringify({ jsonrpc: '2.0', id: 7, result: { content: [] } }), final: true };
    let reads = 0;
    // The replica answering the call logs its answer right after the first read: the stream is then over.
    const replay: ReplayLog = {
      open: () => ({ append: () => undefined }),
      read: async () => (reads++ === 0 ? [] : [answer]),
      finished: async () => true,
      follow: async () => 'final',
      pendingRequests: async () => undefined,
    };
    const { post, base } = await serve(true, undefined, 15_000, replay);
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    const res = await fetch(`${base}/t/acme/mcp`, {
      headers: { authorization: 'Bearer good', accept: 'text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25', 'last-event-id': 'p0123456789abcdef1_0' },
    });
    expect(res.status).toBe(200);
    // The answer under its own id, and the stream ends with it.
    expect(await res.text()).toBe(`id: p0123456789abcdef1_1\ndata: ${answer.data}\n\n`);
    expect(reads).toBe(2);
  });
});

describe('resuming a POST stream while the replay log cannot be read', () => {
  it('answers 503 to try again, not 405 (which ends the resuming), whichever read fails', async () => {
    for (const failing of ['read', 'finished'] as const) {
      const replay: ReplayLog = {
        open: () => ({ append: () => undefined }),
        read: async () => {
          if (failing === 'read') throw new Error('connect ECONNREFUSED');
          return [];
        },
        finished: async () => {
          if (failing === 'finished') throw new Error('connect ECONNREFUSED');
          return true;
        },
        follow: async () => 'final',
        pendingRequests: async () => undefined,
      };
      const { post, base } = await serve(true, undefined, 15_000, replay);
      const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
      const res = await fetch(`${base}/t/acme/mcp`, {
        headers: { authorization: 'Bearer good', accept: 'text/event-stream', 'mcp-session-id': init.headers.get('mcp-session-id') ?? '', 'mcp-protocol-version': '2025-11-25', 'last-event-id': 'p0123456789abcdef1_2' },
      });
      expect(res.status, failing).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
    }
  });
});

describe('resuming a POST stream whose writer was lost', () => {
  it('logs the errors it answers with as the stream\'s last entries and sends them under their ids', async () => {
    const appended: { seq: number; final: boolean }[] = [];
    const opened: { continuing: boolean | undefined }[] = [];
    const replay: ReplayLog = {
      open: (_session, _stream, _ids, continuing) => {
        opened.push({ continuing });
        return { append: (seq, _data, final) => void appended.push({ seq, final }) };
      },
      read: async () => [],
      finished: async () => false,
      follow: async () => 'lost',
      pendingRequests: async () => [7, 'eight'],
    };
    const { post, base } = await serve(true, undefined, 15_000, replay);
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    const res = await fetch(`${base}/t/acme/mcp`, {
      headers: { authorization: 'Bearer good', accept: 'text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25', 'last-event-id': 'p0123456789abcdef1_3' },
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    // Under ids that follow the agent's: where the stream ended, for a resume that is then told nothing is left.
    expect([...text.matchAll(/^id: (.+)$/gm)].map((match) => match[1])).toEqual(['p0123456789abcdef1_4', 'p0123456789abcdef1_5']);
    expect(text).toContain('"id":7');
    expect(text).toContain('"id":"eight"');
    expect(appended).toEqual([
      { seq: 4, final: false },
      { seq: 5, final: true },
    ]);
    // As a writer continuing the dead one's stream: what that one logged stays (replay-log.int-spec.ts).
    expect(opened).toEqual([{ continuing: true }]);
  });
});

describe('initialize refused', () => {
  it.each([
    ['by the gateway\'s own failure', -32603, 500],
    ['by the tenant\'s policy', GATEWAY_RPC.POLICY_DENIED, 403],
    ['while audit or rate checks are unavailable', GATEWAY_RPC.UNAVAILABLE, 503],
    ['for bad parameters', -32602, 400],
  ])('%s is answered with the matching status (%i → %i)', async (_label, code, status) => {
    const { engine, post } = await serve(true);
    engine.initialize = async (_principal, request) => ({ sessionId: undefined, response: { jsonrpc: '2.0', id: request.id, error: { code, message: 'refused' } } });
    const res = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    expect(res.status).toBe(status);
    expect(await res.json()).toMatchObject({ id: 1, error: { code } });
  });
});

/** A raw HTTP/1.1 request: headers and as much of the body as given; resolves with the status line (or '' if none came in `waitMs`). */
function rawRequest(port: number, head: string, bodyPart: string, waitMs: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(received.split('\r\n')[0] ?? '');
    };
    const timer = setTimeout(done, waitMs);
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      if (received.includes('\r\n')) done();
    });
    socket.on('error', done);
    socket.write(`${head}\r\n\r\n${bodyPart}`);
  });
}

/** Reads an SSE response's text as it arrives. */
function follow(res: Response): { text: () => string; closed: Promise<void> } {
  let text = '';
  const reader = res.body?.getReader();
  const decoder = new TextDecoder();
  const closed = (async () => {
    for (;;) {
      const chunk = await reader?.read().catch(() => ({ done: true, value: undefined }));
      if (!chunk || chunk.done) return;
      text += decoder.decode(chunk.value);
    }
  })();
  return { text: () => text, closed };
}

async function until(condition: () => boolean, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('bodies are not read before the caller is admitted', () => {
  it('answers an unauthenticated DELETE or legacy POST, and a preflight with a body, before the body arrives', async () => {
    const { port } = await serve(true);
    // 1 KB of a declared 60 KB body, no credential: each answer comes at once, not after a body that never ends.
    const part = 'x'.repeat(1_024);
    const head = (line: string, extra = '') => `${line}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 60000${extra}`;
    expect(await rawRequest(port, head('DELETE /t/acme/mcp HTTP/1.1'), part, 1_500)).toBe('HTTP/1.1 401 Unauthorized');
    expect(await rawRequest(port, head('POST /t/acme/messages?sessionId=abc HTTP/1.1', '\r\nAuthorization: Bearer wrong'), part, 1_500)).toBe('HTTP/1.1 401 Unauthorized');
    expect(await rawRequest(port, head('OPTIONS /t/acme/mcp HTTP/1.1'), part, 1_500)).toBe('HTTP/1.1 400 Bad Request');
    // A preflight without a body is still answered as one.
    expect(await rawRequest(port, 'OPTIONS /t/acme/mcp HTTP/1.1\r\nHost: 127.0.0.1', '', 1_500)).toBe('HTTP/1.1 204 No Content');
  });

  it.each([
    ['the raw fast path', true, 'POST /t/acme/mcp HTTP/1.1'],
    ['the Fastify route (an escaped path the fast path leaves to it)', false, 'POST /t/acme/m%63p HTTP/1.1'],
    ['the Fastify route, from the fast path', true, 'POST /t/acme/m%63p HTTP/1.1'],
  ])('answers an unauthenticated POST before its body arrives, with an authenticator that must wait (%s)', async (_label, rawFastPath, line) => {
    const { port } = await serve(rawFastPath);
    const head = `${line}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nAuthorization: Bearer wrong\r\nContent-Length: 60000`;
    expect(await rawRequest(port, head, 'x'.repeat(1_024), 1_500)).toBe('HTTP/1.1 401 Unauthorized');
  });

  it.each([
    ['the raw fast path', 'POST /t/acme/mcp HTTP/1.1'],
    ['an escaped MCP path (left to the Fastify route)', 'POST /t/acme/m%63p HTTP/1.1'],
    ['the legacy messages endpoint', 'POST /t/acme/messages?sessionId=abc HTTP/1.1'],
  ])('drops the connection of a refused POST whose chunked body goes on past the body limit, rather than read it to the timeout (%s)', async (_label, line) => {
    const { port } = await serve(true);
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    let closed = false;
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => (closed = true));
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`${line}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nAuthorization: Bearer wrong\r\nTransfer-Encoding: chunked\r\n\r\n`);
    await until(() => answer.includes('\r\n\r\n'));
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 401 Unauthorized');
    // The client streams on: 8 KiB chunks, up to 4 MiB (64 times the 64 KiB limit) or 5 s.
    const chunk = `2000\r\n${'x'.repeat(0x2000)}\r\n`;
    const started = Date.now();
    let sent = 0;
    while (!closed && sent < 4 * 1024 * 1024 && Date.now() - started < 5_000) {
      if (!socket.write(chunk)) await new Promise((resolve) => setTimeout(resolve, 5));
      sent += 0x2000;
      await new Promise((resolve) => setImmediate(resolve));
    }
    await until(() => closed, 2_000).catch(() => undefined);
    socket.destroy();
    expect(closed).toBe(true);
  });

  it('still serves an admitted DELETE', async () => {
    const { post, base } = await serve(true);
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    const ended = await fetch(`${base}/t/acme/mcp`, { method: 'DELETE', headers: { authorization: 'Bearer good', 'mcp-session-id': sessionId } });
    expect(ended.status).toBe(200);
    const after = await fetch(`${base}/t/acme/mcp`, { method: 'DELETE', headers: { authorization: 'Bearer good', 'mcp-session-id': sessionId } });
    expect(after.status).toBe(404);
  });

  it('answers 503 with Retry-After to a DELETE whose session record could not be deleted, and ends it on the retry', async () => {
    const { post, base, sessions } = await serve(true);
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    const remove = sessions.delete.bind(sessions);
    sessions.delete = async () => Promise.reject(new Error('ECONNRESET'));
    const failed = await fetch(`${base}/t/acme/mcp`, { method: 'DELETE', headers: { authorization: 'Bearer good', 'mcp-session-id': sessionId } });
    expect(failed.status).toBe(503);
    expect(failed.headers.get('retry-after')).toBe('1');
    expect(await failed.text()).not.toContain('ECONNRESET');
    sessions.delete = remove;
    const retried = await fetch(`${base}/t/acme/mcp`, { method: 'DELETE', headers: { authorization: 'Bearer good', 'mcp-session-id': sessionId } });
    expect(retried.status).toBe(200);
  });

  it.each([true, false])('refuses a body that is not UTF-8 as a parse error, and one in another charset 415 (fast path %s): nothing reaches an upstream', async (rawFastPath) => {
    const { post, toolCalls } = await serve(rawFastPath);
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const headers = { authorization: 'Bearer good', accept: 'application/json, text/event-stream', 'mcp-session-id': init.headers.get('mcp-session-id') ?? '', 'mcp-protocol-version': '2025-06-18' };
    const latin1 = Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"docs__echo","arguments":{"said":"caf'), Buffer.from([0xe9]), Buffer.from('"}}}')]);
    const send = (contentType: string) => fetch(post.url, { method: 'POST', headers: { ...headers, 'content-type': contentType }, body: latin1 });
    const utf8 = await fetch(post.url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json; charset=utf-8' }, body: latin1.toString('latin1') });
    expect(await utf8.json()).toMatchObject({ id: 2, result: { content: [{ text: '{"said":"café"}' }] } });
    const notUtf8 = await send('application/json');
    expect(notUtf8.status).toBe(400);
    expect(await notUtf8.json()).toMatchObject({ error: { code: -32700 } });
    const declared = await send('application/json; charset=latin1');
    expect(declared.status).toBe(415);
    expect(toolCalls()).toBe(1);
  });

  it.each([true, false])('answers 503 with Retry-After to a POST, GET or DELETE while the session store cannot be read (fast path %s), and serves it once it can', async (rawFastPath) => {
    const { post, base, sessions } = await serve(rawFastPath);
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    const read = sessions.get.bind(sessions);
    sessions.get = async () => Promise.reject(new Error('connect ECONNREFUSED 10.0.0.5:6379'));
    const headers = { authorization: 'Bearer good', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' };
    const answers = [
      await post({ jsonrpc: '2.0', id: 2, method: 'ping' }, { 'mcp-session-id': sessionId }),
      await fetch(`${base}/t/acme/mcp`, { headers: { ...headers, accept: 'text/event-stream' } }),
      await fetch(`${base}/t/acme/mcp`, { method: 'DELETE', headers }),
    ];
    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(answer.headers.get('retry-after')).toBe('1');
      const body = await answer.text();
      expect(body).not.toContain('ECONNREFUSED');
      expect(body).not.toContain('10.0.0.5');
    }
    sessions.get = read;
    const served = await post({ jsonrpc: '2.0', id: 3, method: 'ping' }, { 'mcp-session-id': sessionId });
    expect(served.status).toBe(200);
    expect(await served.json()).toMatchObject({ id: 3, result: {} });
  });
});

/** POSTs a legacy (2024-11-05) initialize with id 1 to a legacy stream's message endpoint. */
const legacyInitialize = (base: string, endpoint: string) =>
  fetch(`${base}${endpoint}`, {
    method: 'POST',
    headers: { authorization: 'Bearer good', 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } }),
  });

describe('legacy SSE streams', () => {
  const openLegacy = (base: string) => fetch(`${base}/t/acme/sse`, { headers: { authorization: 'Bearer good', accept: 'text/event-stream' } });
  const endpointOf = async (stream: { text: () => string }) => {
    await until(() => /event: endpoint\ndata: (.+)\n/.test(stream.text()));
    return /event: endpoint\ndata: (.+)\n/.exec(stream.text())?.[1] ?? '';
  };

  it('answers an invalid message with its id, as Streamable HTTP does, and null where it has no usable id', async () => {
    const { base, post } = await serve(true);
    const stream = follow(await openLegacy(base));
    const endpoint = await endpointOf(stream);
    const send = (body: unknown) =>
      fetch(`${base}${endpoint}`, { method: 'POST', headers: { authorization: 'Bearer good', 'content-type': 'application/json' }, body: JSON.stringify(body) });
    for (const [body, id] of [
      [{ jsonrpc: '1.0', id: 7, method: 'ping' }, 7],
      [{ jsonrpc: '2.0', id: 'x', method: 'ping', params: [1] }, 'x'],
      [{ jsonrpc: '2.0', id: { n: 1 }, method: 'ping' }, null],
    ] as const) {
      const legacyAnswer = await send(body);
      expect(legacyAnswer.status).toBe(400);
      expect(await legacyAnswer.json()).toMatchObject({ id, error: { code: -32600 } });
      const streamableAnswer = await post(body);
      expect(streamableAnswer.status).toBe(400);
      expect(await streamableAnswer.json()).toMatchObject({ id, error: { code: -32600 } });
    }
    expect(stream.text()).toContain('event: endpoint');
  });

  it('closes a stream whose session is not initialised in time, and keeps one that is', async () => {
    const { base } = await serve(true, { initMs: 300 });
    const idle = follow(await openLegacy(base));
    const used = follow(await openLegacy(base));
    const endpoint = await endpointOf(used);
    const init = await legacyInitialize(base, endpoint);
    expect(init.status).toBe(202);
    await until(() => used.text().includes('"id":1'));
    await idle.closed;
    // Well past the window: the initialised stream is still open and still serves.
    await new Promise((r) => setTimeout(r, 400));
    const ping = await fetch(`${base}${endpoint}`, { method: 'POST', headers: { authorization: 'Bearer good', 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' }) });
    expect(ping.status).toBe(202);
    await until(() => used.text().includes('"id":2'));
  });

  it('keeps its session off the Streamable HTTP endpoint: POST, GET and DELETE there with its id are 404, and its stream goes on', async () => {
    const { base, connector } = await serve(true);
    const stream = follow(await openLegacy(base));
    const endpoint = await endpointOf(stream);
    expect((await legacyInitialize(base, endpoint)).status).toBe(202);
    await until(() => stream.text().includes('"id":1'));
    const sessionId = new URL(endpoint, base).searchParams.get('sessionId') ?? '';
    expect(sessionId).not.toBe('');
    const headers = { authorization: 'Bearer good', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' };
    const answers = [
      await fetch(`${base}/t/acme/mcp`, { method: 'POST', headers: { ...headers, accept: 'application/json, text/event-stream', 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }) }),
      await fetch(`${base}/t/acme/mcp`, { headers: { ...headers, accept: 'text/event-stream' } }),
      await fetch(`${base}/t/acme/mcp`, { method: 'DELETE', headers }),
    ];
    expect(answers.map((answer) => answer.status)).toEqual([404, 404, 404]);
    // Before, the GET took the legacy stream's place and ended the session with its upstream sessions.
    expect(connector.ended).toEqual([]);
    const ping = await fetch(`${base}${endpoint}`, { method: 'POST', headers: { authorization: 'Bearer good', 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'ping' }) });
    expect(ping.status).toBe(202);
    await until(() => stream.text().includes('"id":3'));
  });

  it('refuses streams past the cap per client (429) and per replica (503), and counts closed ones out', async () => {
    const perClient = await serve(true, { maxPerPrincipal: 2 });
    const first = await openLegacy(perClient.base);
    const second = await openLegacy(perClient.base);
    expect([first.status, second.status]).toEqual([200, 200]);
    const third = await openLegacy(perClient.base);
    expect(third.status).toBe(429);
    expect(third.headers.get('retry-after')).toBe('5');
    expect(await third.json()).toMatchObject({ error: { message: expect.stringContaining('at most 2') } });
    // A closed stream no longer counts (the server sees the close a moment later).
    await first.body?.cancel();
    let again = await openLegacy(perClient.base);
    for (let attempt = 0; attempt < 100 && again.status === 429; attempt += 1) {
      await new Promise((r) => setTimeout(r, 20));
      again = await openLegacy(perClient.base);
    }
    expect(again.status).toBe(200);
    await Promise.all([second.body?.cancel(), again.body?.cancel()]);

    const perReplica = await serve(true, { maxStreams: 2 });
    const held = [await openLegacy(perReplica.base), await openLegacy(perReplica.base)];
    const refused = await openLegacy(perReplica.base);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    await Promise.all(held.map((res) => res.body?.cancel()));
  });

  it('refuses streams past the cap per tenant (429), below the one per client', async () => {
    const { base } = await serve(true, { maxPerTenant: 2 });
    const held = [await openLegacy(base), await openLegacy(base)];
    const refused = await openLegacy(base);
    expect(refused.status).toBe(429);
    expect(await refused.json()).toMatchObject({ error: { code: GATEWAY_RPC.RATE_LIMITED, message: expect.stringContaining('for this tenant (at most 2)') } });
    await Promise.all(held.map((res) => res.body?.cancel()));
  });

  it('closes a stream whose initialize was under way when its time ran out and then failed', async () => {
    const { base, sessions } = await serve(true, { initMs: 150 });
    // The session store answers the initialize only after the window, and with a failure.
    sessions.create = () => new Promise((_, reject) => setTimeout(() => reject(new Error('store down')), 300));
    const stream = follow(await openLegacy(base));
    const endpoint = await endpointOf(stream);
    const init = await legacyInitialize(base, endpoint);
    expect(init.status).toBe(202);
    await until(() => stream.text().includes('"id":1'));
    await stream.closed;
  });

  it('answers a ping at once while the initialize is under way, and still refuses other requests until it is done', async () => {
    const { base, sessions } = await serve(true);
    // The session store holds the initialize until the test lets it go.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const create = sessions.create.bind(sessions);
    sessions.create = async (record) => {
      await held;
      return create(record);
    };
    const stream = follow(await openLegacy(base));
    const endpoint = await endpointOf(stream);
    const send = (body: unknown) => fetch(`${base}${endpoint}`, { method: 'POST', headers: { authorization: 'Bearer good', 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await legacyInitialize(base, endpoint)).status).toBe(202);
    expect((await send({ jsonrpc: '2.0', id: 2, method: 'ping' })).status).toBe(202);
    expect((await send({ jsonrpc: '2.0', id: 3, method: 'tools/list' })).status).toBe(202);
    await until(() => stream.text().includes('"id":2') && stream.text().includes('"id":3'));
    const answer = (id: number) => [...stream.text().matchAll(/^data: (\{.*\})$/gm)].map((m) => JSON.parse(m[1] ?? '{}') as { id?: unknown }).find((message) => message.id === id);
    expect(answer(2)).toEqual({ jsonrpc: '2.0', id: 2, result: {} });
    expect(answer(3)).toMatchObject({ id: 3, error: { code: -32600, message: 'the session is not initialised' } });
    expect(stream.text()).not.toContain('"id":1');
    release();
    await until(() => stream.text().includes('"id":1'));
    expect(answer(1)).toMatchObject({ id: 1, result: { protocolVersion: '2024-11-05' } });
  });

  it('takes a batch on a session that negotiated 2025-03-26, answering its requests as one batch; refuses one on 2024-11-05', async () => {
    const { base } = await serve(true);
    const open = async (protocolVersion: string) => {
      const stream = follow(await openLegacy(base));
      const endpoint = await endpointOf(stream);
      const send = (body: unknown) => fetch(`${base}${endpoint}`, { method: 'POST', headers: { authorization: 'Bearer good', 'content-type': 'application/json' }, body: JSON.stringify(body) });
      await send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion, capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
      await until(() => stream.text().includes('"id":1'));
      return { stream, send };
    };
    const batching = await open('2025-03-26');
    const accepted = await batching.send([
      { jsonrpc: '2.0', id: 2, method: 'ping' },
      { jsonrpc: '2.0', method: 'notifications/roots/list_changed' },
      { jsonrpc: '2.0', id: 3, method: 'ping' },
      { not: 'a message' },
    ]);
    expect(accepted.status).toBe(202);
    await until(() => batching.stream.text().includes('"id":3'));
    const batch = [...batching.stream.text().matchAll(/^data: (\[.*\])$/gm)].map((m) => JSON.parse(m[1] ?? '[]') as unknown[]);
    expect(batch).toHaveLength(1);
    expect(batch[0]).toEqual([
      { jsonrpc: '2.0', id: 2, result: {} },
      { jsonrpc: '2.0', id: 3, result: {} },
      { jsonrpc: '2.0', id: null, error: expect.objectContaining({ code: -32600 }) },
    ]);
    // An empty batch, or one with initialize, is the POST's own error.
    expect((await batching.send([])).status).toBe(400);
    expect((await batching.send([{ jsonrpc: '2.0', id: 4, method: 'initialize', params: {} }])).status).toBe(400);

    const older = await open('2024-11-05');
    const refused = await older.send([{ jsonrpc: '2.0', id: 2, method: 'ping' }]);
    expect(refused.status).toBe(400);
    expect(await refused.json()).toMatchObject({ error: { code: -32600, message: expect.stringContaining('batches are not supported') } });
  });

  it('answers a request whose session cannot be looked up after the 202 with "try again" on the stream, naming nothing of the failure', async () => {
    const { base, sessions } = await serve(true);
    const stream = follow(await openLegacy(base));
    const endpoint = await endpointOf(stream);
    const send = (body: unknown) => fetch(`${base}${endpoint}`, { method: 'POST', headers: { authorization: 'Bearer good', 'content-type': 'application/json' }, body: JSON.stringify(body) });
    await send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    await until(() => stream.text().includes('"id":1'));
    sessions.get = () => Promise.reject(new Error('connect ECONNREFUSED redis://10.0.0.5:6379'));
    logs = '';
    expect((await send({ jsonrpc: '2.0', id: 2, method: 'ping' })).status).toBe(202);
    await until(() => stream.text().includes('"id":2'));
    const answer = JSON.parse(/data: (\{[^\n]*"id":2[^\n]*\})\n/.exec(stream.text())?.[1] ?? '{}') as { error?: { code: number; message: string; data: { retryAfterSeconds: number } } };
    expect(answer.error).toMatchObject({ code: -32053, data: { retryAfterSeconds: 1 } });
    expect(stream.text()).not.toMatch(/10\.0\.0\.5|ECONNREFUSED/);
    expect(logs).toContain('the session store failed');
  });
});

describe('a 2025-03-26 batch that cancels one of its own requests', () => {
  const call = (id: number) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'docs__echo', arguments: { said: id } } });
  const cancel = (requestId: number) => ({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason: 'changed my mind' } });

  it('on /mcp: the cancelled request is not run and not answered; the rest of the batch is', async () => {
    const { post, toolCalls } = await serve(true);
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    expect(init.status).toBe(200);
    const session = { 'mcp-session-id': init.headers.get('mcp-session-id') ?? '', 'mcp-protocol-version': '2025-03-26' };

    const mixed = await post([call(2), cancel(2), { jsonrpc: '2.0', id: 3, method: 'ping' }], session);
    expect(mixed.status).toBe(200);
    expect(await mixed.json()).toEqual([{ jsonrpc: '2.0', id: 3, result: {} }]);
    // The cancellation comes first this time: the batch's order says nothing of when its elements run.
    // Every request cancelled: input holding a request is never answered 202 (MCP), but with an empty stream.
    const onlyCancelled = await post([cancel(4), call(4)], session);
    expect({ status: onlyCancelled.status, type: onlyCancelled.headers.get('content-type'), body: await onlyCancelled.text() }).toEqual({ status: 200, type: 'text/event-stream', body: '' });
    expect(toolCalls()).toBe(0);
    // An id the batch does not cancel still runs.
    const kept = await post([call(5), cancel(6)], session);
    expect(await kept.json()).toMatchObject([{ id: 5, result: { content: [{ type: 'text', text: '{"said":5}' }] } }]);
    expect(toolCalls()).toBe(1);
  });

  it('on legacy /messages: the cancelled request is not run and not answered; the rest of the batch is', async () => {
    const { base, toolCalls, sessions } = await serve(true);
    const stream = follow(await fetch(`${base}/t/acme/sse`, { headers: { authorization: 'Bearer good', accept: 'text/event-stream' } }));
    await until(() => /event: endpoint\ndata: (.+)\n/.test(stream.text()));
    const endpoint = /event: endpoint\ndata: (.+)\n/.exec(stream.text())?.[1] ?? '';
    const send = (body: unknown) => fetch(`${base}${endpoint}`, { method: 'POST', headers: { authorization: 'Bearer good', 'content-type': 'application/json' }, body: JSON.stringify(body) });
    await send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    await until(() => stream.text().includes('"id":1'));

    expect((await send([call(2), cancel(2), { jsonrpc: '2.0', id: 3, method: 'ping' }])).status).toBe(202);
    await until(() => stream.text().includes('"id":3'));
    expect((await send([cancel(4), call(4)])).status).toBe(202);
    expect((await send([call(5), cancel(6)])).status).toBe(202);
    await until(() => stream.text().includes('"id":5'));
    const batches = [...stream.text().matchAll(/^data: (\[.*\])$/gm)].map((m) => JSON.parse(m[1] ?? '[]') as unknown[]);
    expect(batches).toEqual([[{ jsonrpc: '2.0', id: 3, result: {} }], [expect.objectContaining({ id: 5 })]]);
    expect(toolCalls()).toBe(1);
    // Whatever becomes of the batch: the session store out of reach, the cancelled request still gets no answer.
    sessions.get = () => Promise.reject(new Error('ECONNREFUSED'));
    expect((await send([call(7), cancel(7), { jsonrpc: '2.0', id: 8, method: 'ping' }])).status).toBe(202);
    await until(() => stream.text().includes('"id":8'));
    const last = [...stream.text().matchAll(/^data: (\[.*\])$/gm)].map((m) => JSON.parse(m[1] ?? '[]') as { id: unknown }[]).at(-1);
    expect(last?.map((answer) => answer.id)).toEqual([8]);
  });
});
