import { createLogger } from '@portcullis/shared/util-logger';
import { MemoryTaskRouteStore, type JsonRpcId, type Principal, type SessionRecord } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { composeHooks, type Admission, type RequestHooks } from '../hooks/request-hooks';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, requestMaker, shutDownAfterEach, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { GatewayRequestError, SessionEngine } from './session-engine';
import { NO_STREAM } from './sinks';

const alice: Principal = { tenantId: 't1', kind: 'agent_client', id: 'alice' };
const logger = createLogger({ service: 'spec', level: 'silent' });
const engines = shutDownAfterEach<SessionEngine>();
const req = requestMaker();

/**
 * An engine over one task-capable upstream whose `tools/call`s are held and approved (as the policy and the approval
 * gate compose: `confirm` marks the approval used, "executed"), with `after` composed after the hold as the checks
 * after the wait are. What the upstream ran, and how many approvals were used.
 */
async function approvedCalls(after: RequestHooks[] = [], callAnswer: Record<string, unknown> = { content: [] }) {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'up1')], () => undefined);
  const ran: string[] = [];
  const connector = new FakeConnector({
    u1: {
      capabilities: { tools: {}, tasks: { cancel: {}, requests: { tools: { call: {} } } } },
      handle: async (method) => {
        ran.push(method);
        if (method === 'tools/list') return { tools: [{ name: 'slow', inputSchema: { type: 'object' }, execution: { taskSupport: 'optional' } }] };
        if (method === 'tools/call') return callAnswer;
        return { ...TASK, status: 'cancelled' };
      },
    },
  });
  const used = { count: 0 };
  const hold: RequestHooks = {
    admit: (info) =>
      info.method === 'tools/call' ? Promise.resolve<Admission>({ decision: 'require_approval', approvalId: 'approval-1', confirm: async () => void (used.count += 1) }) : undefined,
  };
  const engine = new SessionEngine({
    registry,
    connector,
    sessions: new MemorySessionStore(),
    tasks: new MemoryTaskRouteStore(),
    hooks: composeHooks([hold, ...after]),
    logger,
    options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 200 },
  });
  engines.push(engine);
  const { sessionId } = await engine.initialize(alice, req('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } }), 'trace');
  const record = await engine.session(sessionId ?? '', alice);
  if (!record) throw new Error('no session');
  const call = (params: Record<string, unknown>) => engine.request(record, req('tools/call', { name: 'up1__slow', ...params }), NO_STREAM, 'trace');
  return { call, ran: () => ran.filter((method) => method === 'tools/call').length, used, connector, engine, record };
}

/** A task the upstream creates for a task-augmented call. */
const TASK = { taskId: 't-1', status: 'working', createdAt: '2026-12-03T00:00:00Z', lastUpdatedAt: '2026-12-03T00:00:00Z', ttl: 60_000 };

describe('SessionEngine: an approval is used only by a call that runs', () => {
  it('uses the approval of a held call that runs, once', async () => {
    const { call, ran, used } = await approvedCalls();
    expect(await call({ arguments: {} })).toMatchObject({ result: { content: [] } });
    expect({ ran: ran(), used: used.count }).toEqual({ ran: 1, used: 1 });
  });

  it('leaves it unused when the call is refused after the wait: by a check after the hold, or for its own shape', async () => {
    const revoked: RequestHooks = {
      admit: (info) => {
        if (info.method === 'tools/call') throw new GatewayRequestError(-32001, 'the key was revoked while the call waited', { reason: 'credential_no_longer_valid' }, 'denied');
        return undefined;
      },
    };
    const refusedLater = await approvedCalls([revoked]);
    expect(await refusedLater.call({ arguments: {} })).toMatchObject({ error: { data: { reason: 'credential_no_longer_valid' } } });
    expect({ ran: refusedLater.ran(), used: refusedLater.used.count }).toEqual({ ran: 0, used: 0 });

    // A task augmentation that is not an object: refused before the hooks (it was refused after them, its approval
    // already recorded as executed: found in review).
    const malformed = await approvedCalls();
    expect(await malformed.call({ arguments: {}, task: 'soon' })).toMatchObject({ error: { code: -32602, message: 'task must be an object' } });
    expect({ ran: malformed.ran(), used: malformed.used.count }).toEqual({ ran: 0, used: 0 });
  });

  it('refuses the call when its approval cannot be used (already used, store away), running nothing', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'up1')], () => undefined);
    const ran: string[] = [];
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async (method) => (ran.push(method), method === 'tools/list' ? { tools: [{ name: 'rm', inputSchema: { type: 'object' } }] } : { content: [] }) } });
    const hold: RequestHooks = {
      admit: (info) =>
        info.method !== 'tools/call' ? undefined : Promise.resolve<Admission>({
          decision: 'require_approval',
          approvalId: 'approval-1',
          confirm: async () => {
            throw new GatewayRequestError(-32032, 'The approval was already used', { reason: 'approval_used' }, 'denied');
          },
        }),
    };
    const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), hooks: composeHooks([hold]), logger, options: SPEC_ENGINE_OPTIONS });
    engines.push(engine);
    const { sessionId } = await engine.initialize(alice, req('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } }), 'trace');
    const record = await engine.session(sessionId ?? '', alice);
    if (!record) throw new Error('no session');
    expect(await engine.request(record, req('tools/call', { name: 'up1__rm', arguments: {} }), NO_STREAM, 'trace')).toMatchObject({ error: { data: { reason: 'approval_used' } } });
    expect(ran.filter((method) => method === 'tools/call')).toEqual([]);
  });
});

describe('SessionEngine: an approval is used only once the call can go upstream', () => {
  it('leaves it unused when the upstream went away during the wait (found in review: it was used, and nothing ran)', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'up1')], () => undefined);
    const ran: string[] = [];
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {} }, handle: async (method) => (ran.push(method), method === 'tools/list' ? { tools: [{ name: 'rm', inputSchema: { type: 'object' } }] } : { content: [] }) },
    });
    let consumed = 0;
    let decide: () => void = () => undefined;
    let waiting: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (waiting = resolve));
    const hold: RequestHooks = {
      admit: (info) =>
        info.method !== 'tools/call'
          ? undefined
          : new Promise<Admission>((resolve) => {
              waiting();
              decide = () => resolve({ decision: 'require_approval', approvalId: 'approval-1', confirm: async () => void (consumed += 1) });
            }),
    };
    const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), hooks: composeHooks([hold]), logger, options: SPEC_ENGINE_OPTIONS });
    engines.push(engine);
    const { sessionId } = await engine.initialize(alice, req('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } }), 'trace');
    const record = await engine.session(sessionId ?? '', alice);
    if (!record) throw new Error('no session');
    const answer = engine.request(record, req('tools/call', { name: 'up1__rm', arguments: {} }), NO_STREAM, 'trace');
    await held;
    // While a person decides (minutes): the upstream session breaks and the upstream cannot be reached.
    connector.breakSession('u1');
    connector.down.add('u1');
    decide();
    expect(await answer).toMatchObject({ error: {} });
    expect({ consumed, ran: ran.filter((method) => method === 'tools/call').length }).toEqual({ consumed: 0, ran: 0 });
  });
});

/**
 * A held `tools/call` whose approval is being marked used (`confirm`, a Postgres round trip in the gate) when `meanwhile`
 * happens: whether the call ran upstream, with which signals, and whether the approval was used.
 */
async function endedWhileConfirming(meanwhile: (engine: SessionEngine, record: SessionRecord, requestId: JsonRpcId) => Promise<void> | void) {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'up1')], () => undefined);
  const ran: string[] = [];
  // The signals the call went with: aborted right after it went, most transports drop a call still waiting for a socket
  // (Streamable HTTP) or for its process (stdio), a review found.
  const sent: ({ readonly aborted: boolean } | undefined)[] = [];
  const connector = new FakeConnector({
    u1: {
      capabilities: { tools: {} },
      handle: async (method, _params, options) => {
        // As the real sessions do: an already-aborted signal sends nothing.
        if (options?.signal?.aborted) throw new Error('aborted before sent');
        if (method === 'tools/call') sent.push(options?.signal);
        ran.push(method);
        return method === 'tools/list' ? { tools: [{ name: 'rm', inputSchema: { type: 'object' } }] } : { content: [] };
      },
    },
  });
  let consumed = 0;
  let confirming: () => void = () => undefined;
  const inConfirm = new Promise<void>((resolve) => (confirming = resolve));
  let finishConsume: () => void = () => undefined;
  const hold: RequestHooks = {
    admit: (info) =>
      info.method !== 'tools/call'
        ? undefined
        : Promise.resolve<Admission>({
            decision: 'require_approval',
            approvalId: 'approval-1',
            confirm: async () => {
              confirming();
              await new Promise<void>((resolve) => (finishConsume = resolve));
              consumed += 1;
            },
          }),
  };
  const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), hooks: composeHooks([hold]), logger, options: SPEC_ENGINE_OPTIONS });
  engines.push(engine);
  const { sessionId } = await engine.initialize(alice, req('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } }), 'trace');
  const record = await engine.session(sessionId ?? '', alice);
  if (!record) throw new Error('no session');
  const message = req('tools/call', { name: 'up1__rm', arguments: {} });
  const answer = engine.request(record, message, NO_STREAM, 'trace');
  await inConfirm;
  await meanwhile(engine, record, message.id);
  finishConsume();
  await answer;
  return { consumed, ran: ran.filter((method) => method === 'tools/call').length, sentAborted: sent.map((signal) => signal?.aborted ?? false) };
}

describe('SessionEngine: a held call that ends while its approval is being used', () => {
  it('cancelled by the agent, is sent and runs to its end, not dropped unsent (its approval recorded as executed for nothing, found in review)', async () => {
    const outcome = await endedWhileConfirming((engine, record, requestId) =>
      engine.notification(record, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason: 'changed my mind' } }),
    );
    expect(outcome).toEqual({ consumed: 1, ran: 1, sentAborted: [false] });
  });

  it('whose session ends meanwhile, is still handed to its upstream session (the approval is used)', async () => {
    const outcome = await endedWhileConfirming((engine, record) => engine.end(record, 'trace'));
    expect({ consumed: outcome.consumed, ran: outcome.ran }).toEqual({ consumed: 1, ran: 1 });
  });
});

describe('SessionEngine: a held task-augmented tools/call cancelled while its upstream session opens', () => {
  it('never runs upstream without its approval being used (confirm)', async () => {
    const { connector, engine, record, ran, used } = await approvedCalls([], { task: TASK });
    // The upstream session broke during the approval wait; opening the next one takes a moment (a handshake).
    connector.breakSession('u1');
    connector.openDelayMs.set('u1', 150);
    const message = req('tools/call', { name: 'up1__slow', arguments: {}, task: { ttl: 60_000 } });
    const answer = engine.request(record, message, NO_STREAM, 'trace');
    await new Promise((resolve) => setTimeout(resolve, 40));
    // The agent gives up while the session opens: the task's creation goes on (as a task-augmented call does), and a
    // review found it ran upstream with its approval left unused (the request's end had dropped the confirmation).
    engine.notification(record, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: message.id, reason: 'gone' } });
    await answer;
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect({ calls: ran(), used: used.count }).toEqual({ calls: 1, used: 1 });
  });
});

describe('SessionEngine: an approver-edited prompts/get', () => {
  // A prompt's arguments are checked to be text as the agent sent them; an approver's edit replaced them after that
  // check and reached the upstream unchecked, with the approval used (found in review).
  it('never sends the upstream prompt arguments that are not text, nor uses the approval for such a call', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'up1')], () => undefined);
    const sent: unknown[] = [];
    const connector = new FakeConnector({
      u1: {
        capabilities: { prompts: {} },
        handle: async (method, params) => {
          if (method === 'prompts/list') return { prompts: [{ name: 'summarise', arguments: [{ name: 'topic' }] }] };
          if (method === 'prompts/get') {
            sent.push(params?.['arguments']);
            return { messages: [] };
          }
          return {};
        },
      },
    });
    const used = { count: 0 };
    // As the approval gate answers a held prompts/get the control plane let an approver edit to { topic: 5 }.
    const hold: RequestHooks = {
      admit: (info) =>
        info.method === 'prompts/get'
          ? Promise.resolve<Admission>({ decision: 'require_approval', approvalId: 'approval-1', arguments: { topic: 5 }, confirm: async () => void (used.count += 1) })
          : undefined,
    };
    const engine = new SessionEngine({
      registry,
      connector,
      sessions: new MemorySessionStore(),
      tasks: new MemoryTaskRouteStore(),
      hooks: composeHooks([hold]),
      logger,
      options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 200 },
    });
    engines.push(engine);
    const { sessionId } = await engine.initialize(alice, req('initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } }), 'trace');
    const record = await engine.session(sessionId ?? '', alice);
    if (!record) throw new Error('no session');
    const answer = await engine.request(record, req('prompts/get', { name: 'up1__summarise', arguments: { topic: 'q3' } }), NO_STREAM, 'trace');
    expect({ sentToUpstream: sent, approvalsUsed: used.count }).toEqual({ sentToUpstream: [], approvalsUsed: 0 });
    expect(answer).toMatchObject({ error: { code: -32602, message: expect.stringContaining('the approved arguments must map names to strings') } });
  });
});
