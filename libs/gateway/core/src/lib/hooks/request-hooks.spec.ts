import type { Principal } from '@portcullis/gateway/mcp';
import { createLogger } from '@portcullis/shared/util-logger';
import { describe, expect, it, vi } from 'vitest';
import { GatewayRequestError, MAX_IN_FLIGHT_PER_PRINCIPAL, SessionEngine } from '../dispatch/session-engine';
import { GATEWAY_RPC } from '../http/gateway-error';
import { NO_STREAM } from '../dispatch/sinks';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, requestMaker, shutDownAfterEach, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import {
  composeHooks,
  type Admission,
  type RequestHooks,
  type RequestInfo,
  type RequestOutcome,
} from './request-hooks';

const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1' };
const logger = createLogger({ service: 'spec', level: 'silent' });
const engines = shutDownAfterEach<SessionEngine>();
const req = requestMaker();
const init = () =>
  req('initialize', {
    protocolVersion: '2025-06-18',
    capabilities: {},
    clientInfo: { name: 'spec', version: '1' },
  });

async function engineWith(hooks: RequestHooks) {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'files')], () => undefined);
  const connector = new FakeConnector({
    u1: {
      capabilities: { tools: {} },
      handle: async (method, params) =>
        method === 'tools/list'
          ? { tools: ['read', 'write', 'delete'].map((name) => ({ name, inputSchema: { type: 'object' } })) }
          : { content: [{ type: 'text', text: JSON.stringify(params?.['arguments'] ?? null) }] },
    },
  });
  const engine = new SessionEngine({
    registry,
    connector,
    sessions: new MemorySessionStore(),
    logger,
    hooks,
    options: SPEC_ENGINE_OPTIONS,
  });
  engines.push(engine);
  const { sessionId } = await engine.initialize(principal, init(), 'trace');
  const record = await engine.session(sessionId ?? '', principal);
  if (!record) throw new Error('no session');
  return { engine, connector, record };
}

describe('request hooks in the session engine', () => {
  it('filters listings, refuses with the hook’s code and data, replaces arguments, and reports every request once', async () => {
    const completed: { info: RequestInfo; outcome: RequestOutcome }[] = [];
    const released: string[] = [];
    const hooks: RequestHooks = {
      filter: (_record, kind, _upstream, items) =>
        kind === 'tool' ? items.filter((item) => item['name'] !== 'delete') : items,
      admit: (info) => {
        if (info.target?.name === 'write')
          throw new GatewayRequestError(
            -32003,
            'not allowed: files__write',
            { snapshotVersion: 7 },
            'denied',
          );
        if (info.target?.name === 'read') {
          return {
            decision: 'allow',
            snapshotVersion: 7,
            arguments: { path: '/edited' },
            release: () => released.push(info.target?.name ?? ''),
          };
        }
        return undefined;
      },
      completed: (info, outcome) => completed.push({ info, outcome }),
    };
    const { engine, connector, record } = await engineWith(hooks);
    expect(completed.map((c) => [c.info.method, c.outcome.outcome])).toEqual([['initialize', 'ok']]);

    const listed = await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    expect(listed).toMatchObject({ result: { tools: [{ name: 'files__read' }, { name: 'files__write' }] } });
    expect(
      'result' in listed && Array.isArray(listed.result['tools']) ? listed.result['tools'].length : -1,
    ).toBe(2);

    const denied = await engine.request(
      record,
      req('tools/call', { name: 'files__write', arguments: { path: '/x' } }),
      NO_STREAM,
      'trace',
    );
    expect(denied).toMatchObject({
      error: {
        code: -32003,
        message: 'not allowed: files__write',
        data: { snapshotVersion: 7, traceId: 'trace' },
      },
    });
    expect(connector.calls.some((call) => call.method === 'tools/call')).toBe(false);

    const edited = await engine.request(
      record,
      req('tools/call', { name: 'files__read', arguments: { path: '/original' } }),
      NO_STREAM,
      'trace',
    );
    expect(edited).toMatchObject({ result: { content: [{ text: '{"path":"/edited"}' }] } });
    expect(released).toEqual(['read']);

    const methods = completed.map((c) => [
      c.info.method,
      c.info.target?.name,
      c.outcome.outcome,
      c.outcome.admission?.decision,
    ]);
    expect(methods).toEqual([
      ['initialize', undefined, 'ok', undefined],
      ['tools/list', undefined, 'ok', undefined],
      ['tools/call', 'write', 'denied', undefined],
      ['tools/call', 'read', 'ok', 'allow'],
    ]);
    expect(completed[2]?.outcome.error).toMatchObject({ code: -32003 });
    expect(completed[2]?.info.arguments).toEqual({ path: '/x' });
    expect(completed[3]?.outcome.result).toMatchObject({ content: [{ type: 'text' }] });
  });

  it('reports an unknown tool (refused before any hook admits it) and upstream errors with their outcome', async () => {
    const completed: RequestOutcome[] = [];
    const { engine, record } = await engineWith({ completed: (_info, outcome) => completed.push(outcome) });
    const unknown = await engine.request(record, req('tools/call', { name: 'nope__x' }), NO_STREAM, 'trace');
    expect(unknown).toMatchObject({ error: { code: -32602 } });
    expect(completed.at(-1)).toMatchObject({ outcome: 'error', error: { code: -32602 } });
  });
});

describe('request hooks: requests refused before their work', () => {
  it('reports the refusals at the per-principal cap, of an id still in progress and on an ended session', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    let open: () => void = () => undefined;
    const opened = new Promise<Record<string, unknown>>((resolve) => (open = () => resolve({ content: [] })));
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: {} },
        handle: (method) => (method === 'tools/list' ? Promise.resolve({ tools: [{ name: 'wait', inputSchema: { type: 'object' } }] }) : opened),
      },
    });
    const completed: { info: RequestInfo; outcome: RequestOutcome }[] = [];
    const engine = new SessionEngine({
      registry,
      connector,
      sessions: new MemorySessionStore(),
      logger,
      hooks: { completed: (info, outcome) => completed.push({ info, outcome }) },
      options: SPEC_ENGINE_OPTIONS,
    });
    engines.push(engine);
    const { sessionId } = await engine.initialize(principal, init(), 'trace');
    const record = await engine.session(sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    const first = req('tools/call', { name: 'files__wait', arguments: {} });
    const under = [engine.request(record, first, NO_STREAM, 'under-0', undefined, 'key-1')];
    for (let i = 1; i < MAX_IN_FLIGHT_PER_PRINCIPAL; i++) {
      under.push(engine.request(record, req('tools/call', { name: 'files__wait', arguments: {} }), NO_STREAM, `under-${i}`));
    }
    await vi.waitFor(() => expect(connector.calls.filter((call) => call.method === 'tools/call')).toHaveLength(MAX_IN_FLIGHT_PER_PRINCIPAL));
    const duplicate = await engine.request(record, first, NO_STREAM, 'trace-duplicate', undefined, 'key-1');
    const over = await engine.request(record, req('tools/call', { name: 'files__wait', arguments: {} }), NO_STREAM, 'trace-over', undefined, 'key-1');
    expect(duplicate).toMatchObject({ error: { code: -32600 } });
    expect(over).toMatchObject({ error: { code: -32029, data: { retryAfterSeconds: 1, traceId: 'trace-over' } } });
    open();
    await Promise.all(under);
    await engine.end(record, 'trace');
    const ended = await engine.request(record, req('ping'), NO_STREAM, 'trace-ended', undefined, 'key-1');
    expect(ended).toMatchObject({ error: { message: 'Session not found' } });
    // Before, none of the three was reported: the audit trail had no event for them.
    const refusals = completed.filter((c) => c.info.traceId.startsWith('trace-'));
    expect(refusals.map((c) => [c.info.traceId, c.info.method, c.info.credentialId, c.outcome.outcome, c.outcome.error?.code])).toEqual([
      ['trace-duplicate', 'tools/call', 'key-1', 'error', -32600],
      ['trace-over', 'tools/call', 'key-1', 'rate_limited', -32029],
      ['trace-ended', 'ping', 'key-1', 'error', GATEWAY_RPC.NOT_FOUND],
    ]);
    expect(completed.filter((c) => c.info.traceId.startsWith('under-'))).toHaveLength(MAX_IN_FLIGHT_PER_PRINCIPAL);
  });
});

describe('request hooks: slots of a cancelled call', () => {
  it('keeps the slots of a call held (an approval wait) past its call timeout, then cancelled upstream, until that call could have timed out', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([{ ...fakeConfig('u1', 'slow'), callTimeoutMs: 300 }], () => undefined);
    let running = false;
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: {} },
        // Runs until the gateway's side of the call ends (the server itself may go on: a cancellation is a request).
        handle: (method, _params, options) => {
          if (method === 'tools/list') return Promise.resolve({ tools: [{ name: 'wait', inputSchema: { type: 'object' } }] });
          running = true;
          return new Promise((_resolve, reject) => options?.signal?.addEventListener('abort', () => reject(options.signal?.reason)));
        },
      },
    });
    let released = false;
    // A slot taken, then a wait for a person longer than the call timeout (as rate limits, then the approval hold).
    const hooks: RequestHooks = {
      admit: async (info) => {
        if (info.method !== 'tools/call') return undefined;
        await new Promise((resolve) => setTimeout(resolve, 400));
        return { release: () => void (released = true) };
      },
    };
    const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), logger, hooks, options: SPEC_ENGINE_OPTIONS });
    engines.push(engine);
    const { sessionId } = await engine.initialize(principal, init(), 'trace');
    const record = await engine.session(sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    const call = req('tools/call', { name: 'slow__wait', arguments: {} });
    const answered = engine.request(record, call, NO_STREAM, 'trace');
    await vi.waitFor(() => expect(running).toBe(true));
    // Cancelled just after it went upstream, which may run for another 300 ms.
    engine.notification(record, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: call.id, reason: 'retry' } });
    await answered;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(released).toBe(false);
    await vi.waitFor(() => expect(released).toBe(true), { timeout: 1_000 });
  });
});

describe('request hooks on initialize', () => {
  it('lets a hook refuse a session before any upstream is contacted, and reports the refusal', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    let connects = 0;
    const connector = new FakeConnector({ u1: { capabilities: {}, handle: async () => ({}) } });
    const connect = connector.connect.bind(connector);
    connector.connect = (...args) => {
      connects++;
      return connect(...args);
    };
    const sessions = new MemorySessionStore();
    const completed: [string, RequestOutcome['outcome']][] = [];
    const engine = new SessionEngine({
      registry,
      connector,
      sessions,
      logger,
      hooks: {
        admit: (info) => {
          if (info.method === 'initialize') throw new GatewayRequestError(-32053, 'audit unavailable for this tenant', undefined, 'error');
          return undefined;
        },
        completed: (info, outcome) => completed.push([info.method, outcome.outcome]),
      },
      options: SPEC_ENGINE_OPTIONS,
    });
    engines.push(engine);
    const { sessionId, response } = await engine.initialize(principal, init(), 'trace');
    expect(sessionId).toBeUndefined();
    expect(response).toMatchObject({ error: { code: -32053, message: 'audit unavailable for this tenant' } });
    expect(connects).toBe(0);
    expect(sessions.records.size).toBe(0);
    expect(completed).toEqual([['initialize', 'error']]);
  });
});

describe('request hooks on upstream instructions', () => {
  async function instructionsWith(hooks: RequestHooks | undefined): Promise<unknown> {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files'), fakeConfig('u2', 'tickets'), fakeConfig('u3', 'quiet')], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {} }, instructions: 'Paths are absolute.', handle: async () => ({}) },
      u2: { capabilities: { tools: {} }, instructions: 'Search before creating.', handle: async () => ({}) },
      u3: { capabilities: { tools: {} }, handle: async () => ({}) },
    });
    const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), logger, ...(hooks ? { hooks } : {}), options: SPEC_ENGINE_OPTIONS });
    engines.push(engine);
    const { response } = await engine.initialize(principal, init(), 'trace');
    return (response as { result?: { instructions?: unknown } }).result?.instructions;
  }

  it('relays each upstream\'s instructions under its prefix, as the hooks leave them', async () => {
    expect(await instructionsWith(undefined)).toBe('files: Paths are absolute.\n\ntickets: Search before creating.');
    const asked: string[] = [];
    const hooks = composeHooks([
      {
        instructions: (record, upstream, text) => {
          asked.push(`${record.principalId}/${upstream.name}`);
          return upstream.name === 'files' ? undefined : text;
        },
      },
      { instructions: (_record, _upstream, text) => text.toUpperCase() },
    ]);
    expect(await instructionsWith(hooks)).toBe('tickets: SEARCH BEFORE CREATING.');
    // Asked only about upstreams that sent instructions.
    expect(asked.sort()).toEqual(['a1/files', 'a1/tickets']);
  });

  it('leaves out what a failing hook was deciding, and the field when nothing is left', async () => {
    const failing: RequestHooks = {
      instructions: (_record, upstream, text) => {
        if (upstream.name === 'files') throw new Error('snapshot unreadable');
        return text;
      },
    };
    expect(await instructionsWith(failing)).toBe('tickets: Search before creating.');
    expect(await instructionsWith({ instructions: () => undefined })).toBeUndefined();
  });
});

describe('composeHooks', () => {
  const info = { method: 'tools/call' } as RequestInfo;

  it('merges admissions in order, passes the merged one on, and runs every release', async () => {
    const released: string[] = [];
    const seen: (Admission | undefined)[] = [];
    const composed = composeHooks([
      { admit: () => ({ decision: 'allow', snapshotVersion: 3, release: () => released.push('first') }) },
      {
        admit: async (_info, _sink, _signal, prior) => {
          seen.push(prior);
          return { approvalId: 'ap1', release: () => released.push('second') };
        },
      },
    ]);
    const merged = await composed.admit?.(info, NO_STREAM, new AbortController().signal, undefined);
    expect(seen[0]).toMatchObject({ decision: 'allow', snapshotVersion: 3 });
    expect(merged).toMatchObject({ decision: 'allow', snapshotVersion: 3, approvalId: 'ap1' });
    merged?.release?.();
    expect(released).toEqual(['first', 'second']);
  });

  it('stays synchronous when every hook is, and releases earlier admissions when a later hook refuses', async () => {
    const released: string[] = [];
    const sync = composeHooks([{ admit: () => ({ decision: 'allow' }) }, { admit: () => undefined }]);
    expect(sync.admit?.(info, NO_STREAM, new AbortController().signal, undefined)).toEqual({
      decision: 'allow',
    });

    const refusing = composeHooks([
      { admit: () => ({ release: () => released.push('slot') }) },
      {
        admit: () => {
          throw new GatewayRequestError(-32029, 'rate limited');
        },
      },
    ]);
    expect(() => refusing.admit?.(info, NO_STREAM, new AbortController().signal, undefined)).toThrow(
      'rate limited',
    );
    expect(released).toEqual(['slot']);

    const refusingLater = composeHooks([
      { admit: async () => ({ release: () => released.push('async-slot') }) },
      { admit: () => Promise.reject(new GatewayRequestError(-32029, 'later')) },
    ]);
    await expect(
      refusingLater.admit?.(info, NO_STREAM, new AbortController().signal, undefined),
    ).rejects.toThrow('later');
    expect(released).toEqual(['slot', 'async-slot']);
  });

  it('reports what the hooks before a refusing one admitted (prior), for a call refused at once or after a wait', async () => {
    // As the data plane composes them: the policy's require_approval, then the approval hold refusing (too many calls
    // waiting, at once; cancelled, denied or expired, after the wait). Before, the outcome of such a call carried
    // neither admission nor prior, and its audit event had no decision and no snapshot version.
    const outcomes: RequestOutcome[] = [];
    const policy: RequestHooks = {
      admit: (info) => (info.target ? { decision: 'require_approval', reason: 'rule r1 needs a person', snapshotVersion: 3 } : undefined),
    };
    const refusal = (name: string | undefined) => {
      if (name === 'read') return new GatewayRequestError(-32029, 'too many calls waiting', undefined, 'rate_limited');
      if (name === 'write') return new GatewayRequestError(-32033, 'nobody decided', { approvalId: 'ap1' }, 'denied');
      return new GatewayRequestError(-32054, 'cancelled while it waited', { approvalId: 'ap2' }, 'cancelled');
    };
    const hold: RequestHooks = {
      admit: (info) => {
        if (info.target === undefined) return undefined;
        if (info.target.name === 'read') throw refusal('read');
        return Promise.reject(refusal(info.target?.name));
      },
    };
    const { engine, record } = await engineWith(composeHooks([policy, hold, { completed: (_info, outcome) => outcomes.push(outcome) }]));
    for (const name of ['read', 'write', 'delete']) {
      await engine.request(record, req('tools/call', { name: `files__${name}`, arguments: {} }), NO_STREAM, 'trace');
    }
    expect(outcomes.slice(1).map((o) => [o.outcome, o.error?.code, o.admission, o.prior?.decision, o.prior?.snapshotVersion])).toEqual([
      ['rate_limited', -32029, undefined, 'require_approval', 3],
      ['denied', -32033, undefined, 'require_approval', 3],
      ['cancelled', -32054, undefined, 'require_approval', 3],
    ]);
  });

  it('keeps observers independent: one that throws does not stop the next', () => {
    const seen: string[] = [];
    const composed = composeHooks([
      {
        completed: () => {
          throw new Error('broken observer');
        },
      },
      { completed: (i) => seen.push(i.method) },
    ]);
    composed.completed?.(info, { outcome: 'ok', latencyMs: 1 });
    expect(seen).toEqual(['tools/call']);
  });

  it('asks every hook that rechecks, in order, and lets the first refusal stand', () => {
    const asked: string[] = [];
    const composed = composeHooks([
      { recheck: () => void asked.push('first') },
      { admit: () => undefined },
      {
        recheck: () => {
          asked.push('second');
          throw new GatewayRequestError(-32030, 'no longer');
        },
      },
      { recheck: () => void asked.push('third') },
    ]);
    expect(() => composed.recheck?.(info)).toThrow('no longer');
    expect(asked).toEqual(['first', 'second']);
    expect(composeHooks([{ admit: () => undefined }]).recheck).toBeUndefined();
  });

  it('asks every hook that judges task messages, in order, and lets the first refusal stand', () => {
    const asked: string[] = [];
    const composed = composeHooks([
      { taskMessage: (_record, taskOf, method) => void asked.push(`first ${taskOf.name} ${method}`) },
      { recheck: () => undefined },
      {
        taskMessage: () => {
          asked.push('second');
          throw new GatewayRequestError(-32003, 'held');
        },
      },
      { taskMessage: () => void asked.push('third') },
    ]);
    const taskOf = { upstream: fakeConfig('u1', 'up1'), kind: 'tool', name: 'slow' } as const;
    expect(() => composed.taskMessage?.(info.record, taskOf, 'notifications/tasks/status')).toThrow('held');
    expect(asked).toEqual(['first slow notifications/tasks/status', 'second']);
    expect(composeHooks([{ recheck: () => undefined }]).taskMessage).toBeUndefined();
  });

  it('lets an item of another URI through a read only when every hook that judges it does', () => {
    const seen: string[] = [];
    const composed = composeHooks([
      { alsoReadable: (_info, uri) => (seen.push(`first ${uri}`), true) },
      { recheck: () => undefined },
      { alsoReadable: (_info, uri) => (seen.push(`second ${uri}`), !uri.includes('secret')) },
    ]);
    expect(composed.alsoReadable?.(info, 'file:///srv/a')).toBe(true);
    expect(composed.alsoReadable?.(info, 'file:///srv/secret/b')).toBe(false);
    expect(seen).toEqual(['first file:///srv/a', 'second file:///srv/a', 'first file:///srv/secret/b', 'second file:///srv/secret/b']);
    expect(composeHooks([{ recheck: () => undefined }]).alsoReadable).toBeUndefined();
  });

  it('asks every hook that judges an upstream\'s messages outside calls, in order, and lets the first refusal stand', () => {
    const asked: string[] = [];
    const composed = composeHooks([
      { upstreamMessage: (_record, upstream, method) => void asked.push(`first ${upstream.name} ${method}`) },
      { recheck: () => undefined },
      {
        upstreamMessage: () => {
          asked.push('second');
          throw new GatewayRequestError(-32030, 'not yours');
        },
      },
      { upstreamMessage: () => void asked.push('third') },
    ]);
    expect(() => composed.upstreamMessage?.(info.record, fakeConfig('u1', 'up1'), 'roots/list')).toThrow('not yours');
    expect(asked).toEqual(['first up1 roots/list', 'second']);
    expect(composeHooks([{ recheck: () => undefined }]).upstreamMessage).toBeUndefined();
  });
});
