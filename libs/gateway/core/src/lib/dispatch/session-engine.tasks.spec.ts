import { createLogger } from '@portcullis/shared/util-logger';
import { waitFor } from '@portcullis/shared/util-testing';
import { MemoryTaskRouteStore, TaskRouteError, UpstreamRpcError, type JsonRpcMessage, type JsonRpcRequest, type Principal, type TaskRouteStore, type UpstreamConfig } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import type { RequestHooks } from '../hooks/request-hooks';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, requestMaker, shutDownAfterEach, type FakeUpstream, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { GatewayRequestError, SessionEngine, type BusMessage } from './session-engine';
import { NO_STREAM, type MessageSink } from './sinks';
import { RELATED_TASK } from './tasks';

const alice: Principal = { tenantId: 't1', kind: 'agent_client', id: 'alice' };
const bob: Principal = { tenantId: 't1', kind: 'agent_client', id: 'bob' };
const logger = createLogger({ service: 'spec', level: 'silent' });
const engines = shutDownAfterEach<SessionEngine>();
const req = requestMaker();
const initialize = (protocolVersion = '2025-11-25') => req('initialize', { protocolVersion, capabilities: {}, clientInfo: { name: 'spec', version: '1' } });

/**
 * An upstream that runs `slow` as a task (ids t-1, t-2, ... of its own, as every upstream numbers them) and answers
 * the task methods from what it holds. One upstream session serves every agent session here, as a shared stdio
 * process does.
 */
function taskUpstream(options: { cancel?: boolean } = {}): FakeUpstream & { readonly tasks: Map<string, string> } {
  const tasks = new Map<string, string>();
  return {
    tasks,
    capabilities: { tools: {}, logging: {}, tasks: { ...(options.cancel === false ? {} : { cancel: {} }), list: {}, requests: { tools: { call: {} } } } },
    handle: async (method, params) => {
      const taskId = params?.['taskId'] as string;
      switch (method) {
        case 'tools/list':
          return { tools: [{ name: 'slow', inputSchema: { type: 'object' }, execution: { taskSupport: 'optional' } }] };
        case 'tools/call': {
          if (params?.['task'] === undefined) return { content: [{ type: 'text', text: 'ran as a plain call' }] };
          const id = `t-${tasks.size + 1}`;
          tasks.set(id, 'working');
          return { task: { taskId: id, status: 'working', createdAt: '2026-12-03T00:00:00Z', lastUpdatedAt: '2026-12-03T00:00:00Z', ttl: 60_000 } };
        }
        case 'tasks/get':
        case 'tasks/cancel': {
          const status = tasks.get(taskId);
          if (status === undefined) throw new UpstreamRpcError(-32602, 'no such task');
          if (method === 'tasks/cancel') tasks.set(taskId, 'cancelled');
          return { taskId, status: tasks.get(taskId), createdAt: '2026-12-03T00:00:00Z', lastUpdatedAt: '2026-12-03T00:00:00Z', ttl: 60_000 };
        }
        case 'tasks/result':
          return { content: [{ type: 'text', text: `result of ${taskId}` }], _meta: { [RELATED_TASK]: { taskId }, other: 1 } };
        default:
          throw new UpstreamRpcError(-32601, 'Method not found');
      }
    },
  };
}

function build(
  upstreams: Record<string, FakeUpstream>,
  tasks: TaskRouteStore | undefined = new MemoryTaskRouteStore(),
  configure: (config: UpstreamConfig) => UpstreamConfig = (config) => config,
  hooks?: RequestHooks,
) {
  const registry = new UpstreamRegistry('__');
  registry.replace(Object.keys(upstreams).map((id, index) => configure(fakeConfig(id, `up${index + 1}`))), () => undefined);
  const connector = new FakeConnector(upstreams);
  const engine = new SessionEngine({
    registry,
    connector,
    sessions: new MemorySessionStore(),
    ...(tasks ? { tasks } : {}),
    ...(hooks ? { hooks } : {}),
    logger,
    options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 200 },
  });
  engines.push(engine);
  return { engine, connector };
}

async function open(engine: SessionEngine, principal = alice, protocolVersion?: string) {
  const { sessionId, response } = await engine.initialize(principal, initialize(protocolVersion), 'trace');
  const record = await engine.session(sessionId ?? '', principal);
  if (!record || !('result' in response)) throw new Error('no session');
  return { record, capabilities: response.result['capabilities'] as Record<string, unknown> };
}

async function call(engine: SessionEngine, record: Awaited<ReturnType<typeof open>>['record'], method: string, params: Record<string, unknown>, sink: MessageSink = NO_STREAM) {
  return engine.request(record, req(method, params), sink, 'trace');
}

const resultOf = (response: Awaited<ReturnType<typeof call>>): Record<string, unknown> => {
  if (!('result' in response)) throw new Error(`failed: ${JSON.stringify(response)}`);
  return response.result;
};

describe('SessionEngine: tasks (MCP 2025-11-25)', () => {
  it('advertises task-augmented tool calls and cancel (never list) when an upstream runs them, only to 2025-11-25 sessions with a route store', async () => {
    const { engine } = build({ u1: taskUpstream(), u2: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    expect((await open(engine)).capabilities['tasks']).toEqual({ cancel: {}, requests: { tools: { call: {} } } });
    expect((await open(engine, alice, '2025-06-18')).capabilities['tasks']).toBeUndefined();
    const withoutCancel = build({ u1: taskUpstream({ cancel: false }) }).engine;
    expect((await open(withoutCancel)).capabilities['tasks']).toEqual({ requests: { tools: { call: {} } } });
    const withoutStore = build({ u1: taskUpstream() }, null as unknown as undefined).engine;
    expect((await open(withoutStore)).capabilities['tasks']).toBeUndefined();
  });

  it('hands out its own task ids, routes get, result and cancel by them, and renames the task in what comes back', async () => {
    const upstream = taskUpstream();
    const { engine, connector } = build({ u1: upstream });
    const { record } = await open(engine);
    const created = resultOf(await call(engine, record, 'tools/call', { name: 'up1__slow', arguments: {}, task: { ttl: 60_000 } }));
    const task = created['task'] as Record<string, unknown>;
    const taskId = task['taskId'] as string;
    expect(taskId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(task).toMatchObject({ status: 'working', ttl: 60_000 });

    expect(resultOf(await call(engine, record, 'tasks/get', { taskId }))).toMatchObject({ taskId, status: 'working' });
    // The upstream is asked with its own id, and without the agent's related-task _meta (the taskId param decides).
    const result = resultOf(await call(engine, record, 'tasks/result', { taskId, _meta: { [RELATED_TASK]: { taskId }, keep: true } }));
    expect(connector.calls.at(-1)).toMatchObject({ upstreamId: 'u1', method: 'tasks/result' });
    expect(connector.calls.at(-1)?.params).toEqual({ taskId: 't-1', _meta: { keep: true } });
    expect(result).toEqual({ content: [{ type: 'text', text: 'result of t-1' }], _meta: { [RELATED_TASK]: { taskId }, other: 1 } });
    expect(resultOf(await call(engine, record, 'tasks/cancel', { taskId }))).toMatchObject({ taskId, status: 'cancelled' });
    expect(upstream.tasks.get('t-1')).toBe('cancelled');
  });

  it('refuses tasks/cancel of a task whose server declared no cancelling, though another upstream of the session cancels its own', async () => {
    const cancelling = taskUpstream();
    const plain = taskUpstream({ cancel: false });
    const { engine, connector } = build({ u1: cancelling, u2: plain });
    const { record, capabilities } = await open(engine);
    expect(capabilities['tasks']).toMatchObject({ cancel: {} });
    const created = resultOf(await call(engine, record, 'tools/call', { name: 'up2__slow', arguments: {}, task: { ttl: 60_000 } }));
    const taskId = (created['task'] as Record<string, unknown>)['taskId'] as string;
    const refused = await call(engine, record, 'tasks/cancel', { taskId });
    expect(refused).toMatchObject({ error: { code: -32602, message: expect.stringContaining('cannot be cancelled') } });
    expect(connector.calls.filter((c) => c.method === 'tasks/cancel')).toEqual([]);
    expect(plain.tasks.get('t-1')).toBe('working');
  });

  it("masks the upstream's credentials in a task's status message wherever an answer carries it", async () => {
    const token = 'upstream-token-0123456789';
    const upstream = taskUpstream();
    const plainHandle = upstream.handle;
    const failing: FakeUpstream = {
      ...upstream,
      handle: async (method, params, options) => {
        const answer = (await plainHandle(method, params, options)) as Record<string, unknown>;
        const statusMessage = `upstream API refused: Bearer ${token}`;
        if (method === 'tools/call') return { task: { ...(answer['task'] as Record<string, unknown>), status: 'failed', statusMessage } };
        return method === 'tasks/get' || method === 'tasks/cancel' ? { ...answer, statusMessage } : answer;
      },
    };
    const { engine } = build({ u1: failing }, new MemoryTaskRouteStore(), (config) => ({ ...config, headers: { authorization: `Bearer ${token}` } }));
    const { record } = await open(engine);
    const created = resultOf(await call(engine, record, 'tools/call', { name: 'up1__slow', arguments: {}, task: { ttl: 60_000 } }));
    const task = created['task'] as Record<string, unknown>;
    expect(task).toMatchObject({ status: 'failed', statusMessage: 'upstream API refused: [redacted]' });
    const taskId = task['taskId'] as string;
    expect(resultOf(await call(engine, record, 'tasks/get', { taskId }))).toMatchObject({ taskId, statusMessage: 'upstream API refused: [redacted]' });
    expect(resultOf(await call(engine, record, 'tasks/cancel', { taskId }))).toMatchObject({ taskId, statusMessage: 'upstream API refused: [redacted]' });
  });

  it('cancels a task-augmented call the agent gave up on with tasks/cancel once its task exists, never by aborting the call upstream', async () => {
    const upstream = taskUpstream();
    const plainHandle = upstream.handle;
    let upstreamAborted = false;
    // The upstream takes a while to create the task; the agent cancels meanwhile.
    const slowToCreate: FakeUpstream = {
      capabilities: upstream.capabilities,
      handle: async (method, params, options) => {
        if (method === 'tools/call') {
          options?.signal?.addEventListener('abort', () => (upstreamAborted = true));
          await new Promise((resolve) => setTimeout(resolve, 150));
        }
        return plainHandle(method, params, options);
      },
    };
    const { engine, connector } = build({ u1: slowToCreate });
    const { record } = await open(engine);
    const request = req('tools/call', { name: 'up1__slow', arguments: {}, task: { ttl: 60_000 } });
    const answer = engine.request(record, request, NO_STREAM, 'trace');
    await new Promise((resolve) => setTimeout(resolve, 30));
    engine.notification(record, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: request.id } });
    const started = Date.now();
    expect(await answer).toMatchObject({ error: {} });
    // Answered as cancelled at once, not after the upstream's 150 ms.
    expect(Date.now() - started).toBeLessThan(100);
    expect(upstreamAborted).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(connector.calls.filter((c) => c.method === 'tasks/cancel').map((c) => c.params)).toEqual([{ taskId: 't-1' }]);
    expect(upstream.tasks.get('t-1')).toBe('cancelled');
  });

  it('cancels the task upstream when the agent cancels while its route is being stored (the agent would never learn it)', async () => {
    const upstream = taskUpstream();
    const routes = new MemoryTaskRouteStore();
    const slowRoutes = Object.assign(Object.create(routes) as TaskRouteStore, {
      add: async (...args: Parameters<TaskRouteStore['add']>) => {
        await new Promise((resolve) => setTimeout(resolve, 100));
        return routes.add(...args);
      },
    });
    const { engine, connector } = build({ u1: upstream }, slowRoutes);
    const { record } = await open(engine);
    const request = req('tools/call', { name: 'up1__slow', arguments: {}, task: { ttl: 60_000 } });
    const answer = engine.request(record, request, NO_STREAM, 'trace');
    await new Promise((resolve) => setTimeout(resolve, 40));
    engine.notification(record, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: request.id } });
    await answer;
    await waitFor(() => upstream.tasks.get('t-1') === 'cancelled', { timeoutMs: 2_000, description: 'tasks/cancel upstream' });
    expect(connector.calls.filter((c) => c.method === 'tasks/cancel').map((c) => c.params)).toEqual([{ taskId: 't-1' }]);
  });

  it('keeps a task to the session that created it: another session or principal, an upstream id, or junk is "not found"', async () => {
    const upstream = taskUpstream();
    const { engine, connector } = build({ u1: upstream });
    const mine = (await open(engine)).record;
    const taskId = (resultOf(await call(engine, mine, 'tools/call', { name: 'up1__slow', task: {} }))['task'] as Record<string, unknown>)['taskId'] as string;
    const theirs = (await open(engine, bob)).record;
    const sameAgentOtherSession = (await open(engine)).record;
    const asked = connector.calls.length;
    for (const [record, id] of [[theirs, taskId], [sameAgentOtherSession, taskId], [mine, 't-1'], [mine, 'x'.repeat(10_000)]] as const) {
      for (const method of ['tasks/get', 'tasks/result', 'tasks/cancel']) {
        const response = await call(engine, record, method, { taskId: id });
        expect('error' in response && response.error).toMatchObject({ code: -32602, message: 'Failed to retrieve task: Task not found' });
      }
    }
    const wrongType = await call(engine, mine, 'tasks/get', { taskId: 42 });
    expect('error' in wrongType && wrongType.error.code).toBe(-32602);
    // A task augmentation that is not an object is refused before the upstream sees it.
    const badTask = await call(engine, mine, 'tools/call', { name: 'up1__slow', task: 'soon' });
    expect('error' in badTask && badTask.error).toMatchObject({ code: -32602, message: 'task must be an object' });
    // None of it reached the upstream (which would have answered for t-1 whoever asked: it is one shared session).
    expect(connector.calls.length).toBe(asked);
    expect(upstream.tasks.get('t-1')).toBe('working');
  });

  it("tells the hooks which tool a task request is about (the call's tool), and lets them refuse it", async () => {
    const seen: [string, string | undefined, string | undefined][] = [];
    let refuse = false;
    const hooks: RequestHooks = {
      admit: (info) => {
        seen.push([info.method, info.taskOf && `${info.taskOf.upstream.id}/${info.taskOf.name}`, info.target?.name]);
        if (refuse && info.taskOf !== undefined) throw new GatewayRequestError(-32003, 'no longer yours');
        return undefined;
      },
    };
    const upstream = taskUpstream();
    const { engine, connector } = build({ u1: upstream }, new MemoryTaskRouteStore(), undefined, hooks);
    const { record } = await open(engine);
    const taskId = (resultOf(await call(engine, record, 'tools/call', { name: 'up1__slow', task: {} }))['task'] as Record<string, unknown>)['taskId'] as string;
    for (const method of ['tasks/get', 'tasks/result', 'tasks/cancel']) resultOf(await call(engine, record, method, { taskId }));
    await call(engine, record, 'tasks/get', { taskId: 'unknown' });
    expect(seen).toEqual([
      ['initialize', undefined, undefined],
      ['tools/call', undefined, 'slow'],
      ['tasks/get', 'u1/slow', undefined],
      ['tasks/result', 'u1/slow', undefined],
      ['tasks/cancel', 'u1/slow', undefined],
      // An id that names no task of the session is about nothing.
      ['tasks/get', undefined, undefined],
    ]);
    refuse = true;
    const asked = connector.calls.length;
    const refused = await call(engine, record, 'tasks/result', { taskId });
    expect('error' in refused && refused.error).toMatchObject({ code: -32003, message: 'no longer yours' });
    expect(connector.calls.length).toBe(asked);
  });

  it('asks the hooks again before handing over the result tasks/result waited for, and meets them when the routes cannot be read', async () => {
    let revoked = false;
    const rechecked: string[] = [];
    const admitted: [string, string | undefined][] = [];
    const hooks: RequestHooks = {
      admit: (info) => {
        admitted.push([info.method, info.taskOf?.name]);
        return undefined;
      },
      recheck: (info) => {
        rechecked.push(`${info.method} ${info.taskOf?.name ?? ''}`);
        if (revoked) throw new GatewayRequestError(-32030, 'revoked while it waited');
      },
    };
    const base = taskUpstream();
    // The result comes only once the tool was revoked (as if the task ran on while the policy changed).
    const upstream: FakeUpstream = {
      ...base,
      handle: async (method, params, options) => {
        if (method === 'tasks/result') revoked = true;
        return base.handle(method, params, options);
      },
    };
    const store = new MemoryTaskRouteStore();
    const { engine } = build({ u1: upstream }, store, undefined, hooks);
    const { record } = await open(engine);
    const taskId = (resultOf(await call(engine, record, 'tools/call', { name: 'up1__slow', task: {} }))['task'] as Record<string, unknown>)['taskId'] as string;
    resultOf(await call(engine, record, 'tasks/get', { taskId }));
    const refused = await call(engine, record, 'tasks/result', { taskId });
    expect('error' in refused && refused.error).toMatchObject({ code: -32030, message: 'revoked while it waited' });
    // Only the answer that waited is asked about again.
    expect(rechecked).toEqual(['tasks/result slow']);

    admitted.length = 0;
    store.route = () => Promise.reject(new Error('Redis is out of reach'));
    const failed = await call(engine, record, 'tasks/get', { taskId });
    expect('error' in failed && failed.error.code).toBe(-32603);
    expect(admitted).toEqual([['tasks/get', undefined]]);
  });

  it('runs a task augmentation as a plain call where tasks were not offered, and knows no task methods there', async () => {
    const { engine, connector } = build({ u1: taskUpstream() });
    const { record } = await open(engine, alice, '2025-06-18');
    const plain = resultOf(await call(engine, record, 'tools/call', { name: 'up1__slow', task: { ttl: 1 } }));
    expect(plain['content']).toEqual([{ type: 'text', text: 'ran as a plain call' }]);
    expect(connector.calls.at(-1)?.params).not.toHaveProperty('task');
    for (const method of ['tasks/get', 'tasks/result', 'tasks/cancel', 'tasks/list']) {
      const response = await call(engine, record, method, { taskId: 'anything' });
      expect('error' in response && response.error.code, method).toBe(-32601);
    }
    // tasks/list is not offered even where tasks are.
    const current = (await open(engine)).record;
    const list = await call(engine, current, 'tasks/list', {});
    expect('error' in list && list.error.code).toBe(-32601);
  });

  it('refuses tasks/cancel where no upstream cancels, and a task over the session limit is cancelled upstream', async () => {
    const noCancel = build({ u1: taskUpstream({ cancel: false }) }).engine;
    const { record } = await open(noCancel);
    const created = resultOf(await call(noCancel, record, 'tools/call', { name: 'up1__slow', task: {} }));
    const refused = await call(noCancel, record, 'tasks/cancel', { taskId: (created['task'] as Record<string, unknown>)['taskId'] });
    expect('error' in refused && refused.error.code).toBe(-32601);

    const full: TaskRouteStore = {
      add: async () => {
        throw new TaskRouteError('too_many', 'this session already has 1000 tasks');
      },
      route: async () => undefined,
      agentTaskId: async () => undefined,
      delete: async () => undefined,
    };
    const upstream = taskUpstream();
    const { engine, connector } = build({ u1: upstream }, full);
    const session = (await open(engine)).record;
    const response = await call(engine, session, 'tools/call', { name: 'up1__slow', task: {} });
    expect('error' in response && response.error).toMatchObject({ code: -32600, message: 'this session already has 1000 tasks' });
    await expect.poll(() => upstream.tasks.get('t-1')).toBe('cancelled');
    expect(connector.calls.at(-1)).toMatchObject({ method: 'tasks/cancel', params: { taskId: 't-1' } });
  });

  it("passes on an upstream's task messages to the session whose task it is, renamed, and drops those of tasks it does not know", async () => {
    const upstream = taskUpstream();
    const { engine, connector } = build({ u1: upstream });
    const mine = (await open(engine)).record;
    const other = (await open(engine, bob)).record;
    const sent: { session: string; message: JsonRpcMessage }[] = [];
    engine.attachStandalone(mine, { canStream: true, send: (message) => sent.push({ session: 'mine', message }) > 0 });
    engine.attachStandalone(other, { canStream: true, send: (message) => sent.push({ session: 'other', message }) > 0 });
    // Both sessions use the upstream (it is attached to each).
    await call(engine, other, 'tools/list', {});
    const taskId = (resultOf(await call(engine, mine, 'tools/call', { name: 'up1__slow', task: {} }))['task'] as Record<string, unknown>)['taskId'] as string;

    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId: 't-1', status: 'completed' } });
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'step', _meta: { [RELATED_TASK]: { taskId: 't-1' } } } });
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId: 't-99', status: 'completed' } });
    await expect.poll(() => sent.length).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sent).toEqual([
      { session: 'mine', message: { jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId, status: 'completed' } } },
      { session: 'mine', message: { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'step', _meta: { [RELATED_TASK]: { taskId } } } } },
    ]);
  });

  it("still passes on a task's last status once the upstream sent more than may be relayed", async () => {
    const upstream = taskUpstream();
    const { engine, connector } = build({ u1: upstream });
    const mine = (await open(engine)).record;
    const sent: JsonRpcMessage[] = [];
    engine.attachStandalone(mine, { canStream: true, send: (message) => sent.push(message) > 0 });
    const taskId = (resultOf(await call(engine, mine, 'tools/call', { name: 'up1__slow', task: {} }))['task'] as Record<string, unknown>)['taskId'] as string;
    for (let i = 0; i < 2_000; i += 1) connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: `chatter ${i}` } });
    const chatter = sent.length;
    expect(chatter).toBeLessThan(2_000);
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId: 't-1', status: 'completed' } });
    await expect.poll(() => sent.slice(chatter)).toEqual([{ jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId, status: 'completed' } }]);
  });

  it('passes on no message about a task whose tool the hooks now refuse: dropped, a request refused to the upstream, and a terminal status still ends its slots', async () => {
    let revoked = false;
    const judged: [string, string][] = [];
    const released: string[] = [];
    const hooks: RequestHooks = {
      admit: (info) => (info.method === 'tools/call' ? { release: () => void released.push(info.method) } : undefined),
      taskMessage: (_record, taskOf, method) => {
        judged.push([method, `${taskOf.upstream.id}/${taskOf.name}`]);
        if (revoked) throw new GatewayRequestError(-32003, 'no longer yours');
      },
    };
    const base = taskUpstream();
    const asked: unknown[] = [];
    const upstream: FakeUpstream = {
      capabilities: base.capabilities,
      handle: async (method, params, options) => {
        if (method === 'tasks/result') {
          // While the agent waits for the result: a status change and a question, both about the task.
          const taskId = params?.['taskId'];
          options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId, status: 'input_required' } });
          await (options?.onServerRequest?.(
            { jsonrpc: '2.0', id: 'q1', method: 'elicitation/create', params: { message: 'which?', requestedSchema: { type: 'object', properties: {} }, _meta: { [RELATED_TASK]: { taskId } } } },
            new AbortController().signal,
          ) ?? Promise.reject(new Error('no handler'))).then(
            (result) => asked.push({ result }),
            (error: { code?: number; message?: string }) => asked.push({ code: error.code, message: error.message }),
          );
        }
        return base.handle(method, params, options);
      },
    };
    const { engine, connector } = build({ u1: upstream }, new MemoryTaskRouteStore(), undefined, hooks);
    const { sessionId } = await engine.initialize(alice, req('initialize', { protocolVersion: '2025-11-25', capabilities: { elicitation: {} }, clientInfo: { name: 'spec', version: '1' } }), 'trace');
    const record = await engine.session(sessionId ?? '', alice);
    if (!record) throw new Error('no session');
    const standalone: JsonRpcMessage[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => standalone.push(message) > 0 });
    const taskId = (resultOf(await call(engine, record, 'tools/call', { name: 'up1__slow', task: {} }))['task'] as Record<string, unknown>)['taskId'] as string;

    // Still the principal's: passed on, after the hooks were asked about the task's tool.
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId: 't-1', status: 'working' } });
    await expect.poll(() => standalone.length).toBe(1);
    expect(judged).toEqual([['notifications/tasks/status', 'u1/slow']]);

    // Revoked: the task's end is not passed on, but its concurrency slots go back all the same.
    revoked = true;
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId: 't-1', status: 'completed' } });
    await expect.poll(() => released).toEqual(['tools/call']);
    expect(judged).toHaveLength(2);

    // Messages that come with tasks/result are judged too: the status dropped, the question refused to the upstream.
    const relayed: JsonRpcMessage[] = [];
    await call(engine, record, 'tasks/result', { taskId }, { canStream: true, send: (message) => relayed.push(message) > 0 });
    expect(asked).toEqual([{ code: -32003, message: 'elicitation/create: the client may no longer use the tool this task belongs to' }]);
    expect(judged.slice(2)).toEqual([
      ['notifications/tasks/status', 'u1/slow'],
      ['elicitation/create', 'u1/slow'],
    ]);
    expect(relayed).toEqual([]);
    expect(standalone).toHaveLength(1);
  });

  it("judges an upstream's task requests outside any call too: refused with the hook's code, or -32603 if a hook fails; nothing passes when the task's tool cannot be read", async () => {
    let judge: () => void = () => undefined;
    const hooks: RequestHooks = { taskMessage: () => judge() };
    const store = new MemoryTaskRouteStore();
    const { engine, connector } = build({ u1: taskUpstream() }, store, undefined, hooks);
    const { sessionId } = await engine.initialize(alice, req('initialize', { protocolVersion: '2025-11-25', capabilities: { elicitation: {} }, clientInfo: { name: 'spec', version: '1' } }), 'trace');
    const record = await engine.session(sessionId ?? '', alice);
    if (!record) throw new Error('no session');
    const standalone: JsonRpcMessage[] = [];
    engine.attachStandalone(record, {
      canStream: true,
      send: (message) => {
        standalone.push(message);
        // The agent answers whatever it is asked.
        if ('method' in message && 'id' in message) engine.answer(record, { jsonrpc: '2.0', id: message.id, result: { action: 'accept', content: {} } });
        return true;
      },
    });
    resultOf(await call(engine, record, 'tools/call', { name: 'up1__slow', task: {} }));
    const question = (id: string): JsonRpcRequest => ({
      jsonrpc: '2.0',
      id,
      method: 'elicitation/create',
      params: { message: 'which?', requestedSchema: { type: 'object', properties: {} }, _meta: { [RELATED_TASK]: { taskId: 't-1' } } },
    });
    const outcome = (asked: Promise<Record<string, unknown>>) => asked.then((result) => ({ result }), (error: { code?: number }) => ({ code: error.code }));

    expect(await outcome(connector.ask('u1', question('q1')))).toEqual({ result: { action: 'accept', content: {} } });
    judge = () => {
      throw new GatewayRequestError(-32030, 'revoked');
    };
    expect(await outcome(connector.ask('u1', question('q2')))).toEqual({ code: -32030 });
    // A hook that fails (a bug) lets nothing through either, and breaks nothing.
    judge = () => {
      throw new TypeError('hook bug');
    };
    expect(await outcome(connector.ask('u1', question('q3')))).toEqual({ code: -32603 });
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId: 't-1', status: 'working' } });
    // Routes unreadable (Redis away): the task's tool is unknown, so nothing about it is passed on.
    judge = () => undefined;
    store.route = () => Promise.reject(new Error('Redis is out of reach'));
    expect(await outcome(connector.ask('u1', question('q4')))).toEqual({ code: -32602 });
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId: 't-1', status: 'working' } });
    await new Promise((resolve) => setTimeout(resolve, 20));
    // Only the first question reached the agent (under an id of the gateway's), and no status notification.
    expect(standalone.map((message) => ('method' in message ? message.method : '?'))).toEqual(['elicitation/create']);
  });

  it('offers no tasks on a stdio upstream (its task ids could later name another session\'s task): the call runs as a plain one', async () => {
    const { engine, connector } = build({ u1: taskUpstream() }, new MemoryTaskRouteStore(), (config) => ({ ...config, transport: 'stdio', url: null, command: 'node' }));
    const { record, capabilities } = await open(engine);
    expect(capabilities['tasks']).toBeUndefined();
    expect(resultOf(await call(engine, record, 'tools/call', { name: 'up1__slow', task: {} }))['content']).toEqual([{ type: 'text', text: 'ran as a plain call' }]);
    expect(connector.calls.at(-1)?.params).not.toHaveProperty('task');
  });

  it('relays no client-side tasks: an upstream\'s tasks/* request is refused, and a task augmentation of its sampling request dropped', async () => {
    const outcomes: unknown[] = [];
    const upstream: FakeUpstream = {
      capabilities: { tools: {} },
      handle: async (method, _params, options) => {
        if (method === 'tools/list') return { tools: [{ name: 'ask', inputSchema: { type: 'object' } }] };
        const ask = (request: JsonRpcRequest) =>
          (options?.onServerRequest?.(request, new AbortController().signal) ?? Promise.reject(new Error('no handler'))).then(
            (result) => outcomes.push({ result }),
            (error: { code?: number }) => outcomes.push({ code: error.code }),
          );
        await ask({ jsonrpc: '2.0', id: 1, method: 'tasks/get', params: { taskId: 'agent-side' } });
        await ask({ jsonrpc: '2.0', id: 2, method: 'sampling/createMessage', params: { messages: [], maxTokens: 1, task: { ttl: 1 } } });
        return { content: [] };
      },
    };
    const { engine } = build({ u1: upstream });
    const { sessionId } = await engine.initialize(alice, req('initialize', { protocolVersion: '2025-11-25', capabilities: { sampling: {} }, clientInfo: { name: 'spec', version: '1' } }), 'trace');
    const record = await engine.session(sessionId ?? '', alice);
    if (!record) throw new Error('no session');
    const relayed: JsonRpcMessage[] = [];
    const sink: MessageSink = {
      canStream: true,
      send: (message) => {
        relayed.push(message);
        // The agent answers the sampling request.
        if ('method' in message && 'id' in message) engine.answer(record, { jsonrpc: '2.0', id: message.id, result: { role: 'assistant', content: { type: 'text', text: 'hi' }, model: 'm' } });
        return true;
      },
    };
    await call(engine, record, 'tools/call', { name: 'up1__ask' }, sink);
    expect(outcomes[0]).toEqual({ code: -32601 });
    expect(outcomes[1]).toMatchObject({ result: { model: 'm' } });
    expect(relayed).toHaveLength(1);
    expect(relayed[0]).toMatchObject({ method: 'sampling/createMessage' });
    expect((relayed[0] as { params: Record<string, unknown> }).params).not.toHaveProperty('task');
  });

  it('holds messages about a new task that come before its answer until its id is recorded, then passes them on renamed', async () => {
    const base = taskUpstream();
    const relayed: JsonRpcMessage[] = [];
    const upstream: FakeUpstream = {
      capabilities: base.capabilities,
      handle: async (method, params, options) => {
        const answer = await base.handle(method, params, options);
        if (method === 'tools/call') {
          const taskId = (answer['task'] as Record<string, unknown>)['taskId'];
          // On the call's own stream, ahead of the answer: a status change and a question about the task.
          options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId, status: 'input_required' } });
          void options?.onServerRequest?.(
            { jsonrpc: '2.0', id: 'q1', method: 'elicitation/create', params: { message: 'which?', requestedSchema: { type: 'object', properties: {} }, _meta: { [RELATED_TASK]: { taskId } } } },
            new AbortController().signal,
          ).catch(() => undefined);
        }
        return answer;
      },
    };
    const { engine } = build({ u1: upstream });
    const { sessionId } = await engine.initialize(alice, req('initialize', { protocolVersion: '2025-11-25', capabilities: { elicitation: {} }, clientInfo: { name: 'spec', version: '1' } }), 'trace');
    const record = await engine.session(sessionId ?? '', alice);
    if (!record) throw new Error('no session');
    const sink: MessageSink = { canStream: true, send: (message) => relayed.push(message) > 0 };
    const created = resultOf(await call(engine, record, 'tools/call', { name: 'up1__slow', task: {} }, sink));
    const taskId = (created['task'] as Record<string, unknown>)['taskId'];
    await expect.poll(() => relayed.length).toBe(2);
    expect(relayed).toContainEqual({ jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId, status: 'input_required' } });
    const question = relayed.find((message) => 'method' in message && message.method === 'elicitation/create') as { params: Record<string, unknown> };
    expect(question.params['_meta']).toEqual({ [RELATED_TASK]: { taskId } });
  });

  it("lets tasks/result wait for the task's lifetime (at most an hour), not one call's timeout", async () => {
    const base = taskUpstream();
    const waits: Record<string, number | undefined> = {};
    const upstream: FakeUpstream = {
      capabilities: base.capabilities,
      handle: async (method, params, options) => {
        waits[method] = options?.timeoutMs;
        return base.handle(method, params, options);
      },
    };
    const { engine } = build({ u1: upstream });
    const { record } = await open(engine);
    // The upstream keeps the task 60 s: the route lives a minute longer.
    const taskId = (resultOf(await call(engine, record, 'tools/call', { name: 'up1__slow', task: {} }))['task'] as Record<string, unknown>)['taskId'] as string;
    await call(engine, record, 'tasks/get', { taskId });
    await call(engine, record, 'tasks/result', { taskId });
    expect(waits['tasks/get']).toBe(1_000);
    expect(waits['tasks/result']).toBeGreaterThan(110_000);
    expect(waits['tasks/result']).toBeLessThanOrEqual(120_000);
  });

  /** Admission hooks whose every tools/call takes a slot: how many are held, and any slot given back twice. */
  function slotCounter() {
    const state = { held: 0, doubled: 0 };
    const hooks: RequestHooks = {
      admit: (info) => {
        if (info.method !== 'tools/call') return undefined;
        state.held += 1;
        let released = false;
        return {
          release: () => {
            if (released) state.doubled += 1;
            else state.held -= 1;
            released = true;
          },
        };
      },
    };
    return { state, hooks };
  }

  it("keeps a limited call's concurrency slots while the task it became runs: released when the task is seen to end", async () => {
    const { state, hooks } = slotCounter();
    const { engine } = build({ u1: taskUpstream() }, new MemoryTaskRouteStore(), undefined, hooks);
    const { record } = await open(engine);
    const start = async () => (resultOf(await call(engine, record, 'tools/call', { name: 'up1__slow', task: {} }))['task'] as Record<string, unknown>)['taskId'] as string;
    const first = await start();
    const second = await start();
    expect(state.held).toBe(2);
    // A plain call gives its slot back when it is answered.
    await call(engine, record, 'tools/call', { name: 'up1__slow' });
    expect(state.held).toBe(2);
    // Still working: kept. Cancelled (a terminal status): given back. tasks/result ends the other.
    await call(engine, record, 'tasks/get', { taskId: first });
    expect(state.held).toBe(2);
    await call(engine, record, 'tasks/cancel', { taskId: first });
    expect(state.held).toBe(1);
    await call(engine, record, 'tasks/result', { taskId: second });
    await call(engine, record, 'tasks/get', { taskId: first });
    expect(state.held).toBe(0);
    // A slot is never kept past the call timeout (1 s here), whatever becomes of the task; and kept to it when the
    // session ends (nothing cancels the task upstream): ending sessions does not run more tasks at once.
    await start();
    expect(state.held).toBe(1);
    await expect.poll(() => state.held, { timeout: 2_000 }).toBe(0);
    await start();
    await engine.end(record, 'trace');
    expect(state.held).toBe(1);
    await expect.poll(() => state.held, { timeout: 2_000 }).toBe(0);
    expect(state.doubled).toBe(0);
  });

  it('gives the slots back on the replica holding them when the task is seen to end on another, announcing it once', async () => {
    const { state, hooks } = slotCounter();
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'up1')], () => undefined);
    const connector = new FakeConnector({ u1: taskUpstream() });
    const sessions = new MemorySessionStore();
    const tasks = new MemoryTaskRouteStore();
    const replicas: SessionEngine[] = [];
    const announced: BusMessage[] = [];
    const bus = {
      broadcast: (message: BusMessage) => {
        announced.push(message);
        for (const replica of replicas) replica.onBusMessage(message);
      },
      sendTo: () => undefined,
    };
    const make = (replicaId: string) =>
      new SessionEngine({ registry, connector, sessions, tasks, hooks, logger, bus, options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 200, replicaId } });
    const [a, b] = [make('ra'), make('rb')];
    replicas.push(a, b);
    engines.push(a, b);
    const { record } = await open(a);
    const taskId = (resultOf(await call(a, record, 'tools/call', { name: 'up1__slow', task: {} }))['task'] as Record<string, unknown>)['taskId'] as string;
    expect(state.held).toBe(1);
    // Still working, seen on B: nothing to give back.
    await call(b, record, 'tasks/get', { taskId });
    expect(state.held).toBe(1);
    await call(b, record, 'tasks/cancel', { taskId });
    expect(state).toEqual({ held: 0, doubled: 0 });
    // Polled again on B: announced once only.
    await call(b, record, 'tasks/get', { taskId });
    expect(announced.filter((message) => message.type === 'task-ended')).toEqual([{ type: 'task-ended', sessionId: record.id, taskId }]);
    // Ended on the replica holding its slots: nothing to announce, then or when it is polled again.
    const own = (resultOf(await call(a, record, 'tools/call', { name: 'up1__slow', task: {} }))['task'] as Record<string, unknown>)['taskId'] as string;
    await call(a, record, 'tasks/cancel', { taskId: own });
    await call(a, record, 'tasks/get', { taskId: own });
    expect(state).toEqual({ held: 0, doubled: 0 });
    expect(announced.filter((message) => message.type === 'task-ended')).toHaveLength(1);
  });

  it('holds both slots of two calls an upstream answered with one task, and those of a session ended meanwhile to their deadline', async () => {
    const { state, hooks } = slotCounter();
    const same: FakeUpstream = { ...taskUpstream(), handle: async (method) => (method === 'tools/call' ? { task: { taskId: 'same', status: 'working', ttl: 60_000 } } : { taskId: 'same', status: 'completed' }) };
    const storing: { hold?: Promise<void> } = {};
    const inner = new MemoryTaskRouteStore();
    const slow: TaskRouteStore = {
      add: async (...args) => {
        await storing.hold;
        return inner.add(...args);
      },
      route: (...args) => inner.route(...args),
      agentTaskId: (...args) => inner.agentTaskId(...args),
      delete: (...args) => inner.delete(...args),
    };
    const { engine } = build({ u1: same }, slow, undefined, hooks);
    const { record } = await open(engine);
    const taskId = (resultOf(await call(engine, record, 'tools/call', { name: 'up1__slow', task: {} }))['task'] as Record<string, unknown>)['taskId'];
    expect((resultOf(await call(engine, record, 'tools/call', { name: 'up1__slow', task: {} }))['task'] as Record<string, unknown>)['taskId']).toBe(taskId);
    expect(state.held).toBe(2);
    await call(engine, record, 'tasks/get', { taskId });
    expect(state).toEqual({ held: 0, doubled: 0 });

    // The session ends while the new task's route is being stored: the task may run on upstream, so its slot is kept
    // to its deadline (the call timeout, 1 s here), not given back with the session.
    let go: () => void = () => undefined;
    storing.hold = new Promise((resolve) => (go = resolve));
    const pending = call(engine, record, 'tools/call', { name: 'up1__slow', task: {} });
    await expect.poll(() => state.held).toBe(1);
    await engine.end(record, 'trace');
    go();
    await pending;
    expect(state.held).toBe(1);
    await expect.poll(() => state.held, { timeout: 2_000 }).toBe(0);
    expect(state.doubled).toBe(0);
  });

  it('keeps the slots when the replica only lets an idle session go (its tasks may still run): they go back at their deadline', async () => {
    const { state, hooks } = slotCounter();
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'up1')], () => undefined);
    const engine = new SessionEngine({
      registry,
      connector: new FakeConnector({ u1: taskUpstream() }),
      sessions: new MemorySessionStore(),
      tasks: new MemoryTaskRouteStore(),
      hooks,
      logger,
      options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 200, localIdleMs: 1 },
    });
    engines.push(engine);
    const { record } = await open(engine);
    await call(engine, record, 'tools/call', { name: 'up1__slow', task: {} });
    await new Promise((resolve) => setTimeout(resolve, 10));
    await engine.sweepNow();
    expect(state.held).toBe(1);
    await expect.poll(() => state.held, { timeout: 2_000 }).toBe(0);
    expect(state.doubled).toBe(0);
  });

  it('refuses, after a short wait, a server request about a task whose creating answer the upstream holds back for it', async () => {
    const base = taskUpstream();
    let refusal: { code?: number } | undefined;
    const upstream: FakeUpstream = {
      capabilities: base.capabilities,
      handle: async (method, params, options) => {
        if (method !== 'tools/call') return base.handle(method, params, options);
        // Asks about the task it is about to create, and waits for the answer before answering the call.
        await options?.onServerRequest?.(
          { jsonrpc: '2.0', id: 'q', method: 'elicitation/create', params: { message: 'which?', requestedSchema: { type: 'object', properties: {} }, _meta: { [RELATED_TASK]: { taskId: 't-1' } } } },
          new AbortController().signal,
        ).catch((error: { code?: number }) => (refusal = error));
        return base.handle(method, params, options);
      },
    };
    const { engine } = build({ u1: upstream });
    const { sessionId } = await engine.initialize(alice, req('initialize', { protocolVersion: '2025-11-25', capabilities: { elicitation: {} }, clientInfo: { name: 'spec', version: '1' } }), 'trace');
    const record = await engine.session(sessionId ?? '', alice);
    if (!record) throw new Error('no session');
    const started = Date.now();
    const created = await call(engine, record, 'tools/call', { name: 'up1__slow', task: {} }, { canStream: true, send: () => true });
    expect('result' in created).toBe(true);
    expect(refusal?.code).toBe(-32602);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
    expect(Date.now() - started).toBeLessThan(4_000);
  }, 10_000);
});
