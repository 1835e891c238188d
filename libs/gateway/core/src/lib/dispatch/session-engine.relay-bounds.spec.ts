/**
 * The bound on what an upstream may have relayed to the agent (`mayRelay`, `relayClass`), as re-reviews found it:
 * what is dropped anyway (an update of a resource the agent is not subscribed to, a status of another session's task)
 * must not use up what the session's own messages may take, and tasks' last statuses, which draw on a bound of their
 * own, are bounded all the same (each costs lookups in the task store). And in the other direction: an agent's progress
 * on a request relayed to it went to the upstream one message each, unbounded (one relayed elicitation let an agent drive
 * any number of POSTs into the tenant's upstream); it is bounded per principal as the upstream's messages are.
 */
import { createLogger } from '@portcullis/shared/util-logger';
import type { JsonRpcMessage, JsonRpcNotification } from '@portcullis/gateway/mcp';
import { MemoryTaskRouteStore, type Principal } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore, requestMaker, shutDownAfterEach, SPEC_ENGINE_OPTIONS, type FakeUpstream } from '../testing/fake-upstreams';
import { SessionEngine } from './session-engine';
import { NO_STREAM, type MessageSink } from './sinks';
import { RELATED_TASK } from './tasks';

const { req, makeEngine, openSession } = engineSpecs();
const sinkOf = (into: JsonRpcMessage[]): MessageSink => ({ canStream: true, send: (m) => into.push(m) > 0 });
const log = (data: string): JsonRpcNotification => ({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'error', data } });

function build(upstream: FakeUpstream & { prefix: string }, tasks = false) {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', upstream.prefix)], () => undefined);
  const connector = new FakeConnector({ u1: upstream });
  const engine = makeEngine({ registry, connector, sessions: new MemorySessionStore(), ...(tasks ? { tasks: new MemoryTaskRouteStore() } : {}), options: { listTimeoutMs: 200 } });
  return { engine, connector };
}

describe('relay bound on the session stream: what is dropped anyway takes nothing of it', () => {
  it('updates about a resource the agent is not subscribed to do not silence the log messages it wants', async () => {
    const { engine, connector } = build({
      prefix: 'r',
      capabilities: { resources: { subscribe: true }, logging: {} },
      handle: async (method) => {
        if (method === 'resources/list') return { resources: [{ uri: 'mem://mine', name: 'mine' }, { uri: 'mem://busy', name: 'busy' }] };
        if (method === 'resources/templates/list') return { resourceTemplates: [] };
        return {};
      },
    });
    const { record } = await openSession(engine);
    const toAgent: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(toAgent));
    await expect.poll(() => (connector.notificationHandlers.get('u1') ?? []).length > 0).toBe(true);
    await engine.request(record, req('resources/list'), NO_STREAM, 'trace');
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://mine' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    // A resource changing fast that this agent never subscribed to (or unsubscribed from: an upstream that kept it).
    for (let i = 0; i < 3_000; i += 1) connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'mem://busy' } });
    expect(toAgent.filter((m) => 'method' in m && m.method === 'notifications/resources/updated')).toHaveLength(0);
    for (let i = 0; i < 5; i += 1) connector.emit('u1', log(`said ${i}`));
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'mem://mine' } });
    await new Promise((r) => setTimeout(r, 20));
    expect(toAgent.filter((m) => 'method' in m && m.method === 'notifications/message')).toHaveLength(5);
    expect(toAgent.filter((m) => 'method' in m && m.method === 'notifications/resources/updated')).toMatchObject([{ params: { uri: 'mem://mine' } }]);
  });

  it('asks the policy whether the agent may see an updated resource only of what the bound lets through', async () => {
    let judged = 0;
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'r')], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities: { resources: { subscribe: true } },
        handle: async (method) => (method === 'resources/list' ? { resources: [{ uri: 'mem://mine', name: 'mine' }] } : method === 'resources/templates/list' ? { resourceTemplates: [] } : {}),
      },
    });
    const hooks = {
      filter: <T>(_record: unknown, kind: string, _upstream: unknown, items: T[]): T[] => {
        if (kind === 'resource') judged += 1;
        return items;
      },
    };
    const engine = makeEngine({ registry, connector, sessions: new MemorySessionStore(), hooks: hooks as never, options: { listTimeoutMs: 200 } });
    const { record } = await openSession(engine);
    const toAgent: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(toAgent));
    await expect.poll(() => (connector.notificationHandlers.get('u1') ?? []).length > 0).toBe(true);
    await engine.request(record, req('resources/list'), NO_STREAM, 'trace');
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://mine' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    const before = judged;
    const began = performance.now();
    for (let i = 0; i < 5_000; i += 1) connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'mem://mine' } });
    const took = performance.now() - began;
    expect(toAgent.filter((m) => 'method' in m && m.method === 'notifications/resources/updated').length).toBeGreaterThanOrEqual(1_000);
    // The burst and what refilled meanwhile (200 a second): each judged once on its way to the agent, none beyond.
    expect(judged - before).toBeLessThanOrEqual(1_000 + Math.ceil(took / 5) + 1);
  });

  it("statuses of tasks that are not the session's (a process shared with the principal's other sessions) do not silence its own messages", async () => {
    const { engine, connector } = build({ prefix: 'up1', capabilities: { tools: {}, logging: {}, tasks: { requests: { tools: { call: {} } } } }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) }, true);
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    const toAgent: JsonRpcMessage[] = [];
    engine.attachStandalone(record, sinkOf(toAgent));
    await expect.poll(() => (connector.notificationHandlers.get('u1') ?? []).length > 0).toBe(true);
    for (let i = 0; i < 3_000; i += 1) connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId: `someone-elses-${i % 50}`, status: 'working' } });
    for (let i = 0; i < 5; i += 1) connector.emit('u1', log(`said ${i}`));
    await new Promise((r) => setTimeout(r, 50));
    expect(toAgent.filter((m) => 'method' in m && m.method === 'notifications/tasks/status')).toHaveLength(0);
    expect(toAgent.filter((m) => 'method' in m && m.method === 'notifications/message')).toHaveLength(5);
  });
});

const alice: Principal = { tenantId: 't1', kind: 'agent_client', id: 'alice' };
const logger = createLogger({ service: 'spec', level: 'silent' });
const engines = shutDownAfterEach<SessionEngine>();
const taskReq = requestMaker();

const taskUpstream: FakeUpstream = {
  capabilities: { tools: {}, tasks: { cancel: {}, requests: { tools: { call: {} } } } },
  handle: async (method) => {
    if (method === 'tools/list') return { tools: [{ name: 'slow', inputSchema: { type: 'object' }, execution: { taskSupport: 'optional' } }] };
    if (method === 'tools/call') return { task: { taskId: 't-1', status: 'working', createdAt: '2026-12-03T00:00:00Z', lastUpdatedAt: '2026-12-03T00:00:00Z', ttl: 60_000 } };
    return {};
  },
};

/** A task store counting its look-ups of an agent's task id. */
function countingTasks(): { tasks: MemoryTaskRouteStore; lookups: () => number } {
  const tasks = new MemoryTaskRouteStore();
  let lookups = 0;
  const agentTaskId = tasks.agentTaskId.bind(tasks);
  tasks.agentTaskId = (...args: Parameters<typeof agentTaskId>) => {
    lookups += 1;
    return agentTaskId(...args);
  };
  return { tasks, lookups: () => lookups };
}

/** A session (with `capabilities`) listening on its stream, whose call made task t-1 upstream. */
async function setUp(tasks: MemoryTaskRouteStore, capabilities: Record<string, unknown> = {}) {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'up1')], () => undefined);
  const connector = new FakeConnector({ u1: taskUpstream });
  const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), tasks, logger, options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 200 } });
  engines.push(engine);
  const { sessionId } = await engine.initialize(alice, taskReq('initialize', { protocolVersion: '2025-11-25', capabilities, clientInfo: { name: 'spec', version: '1' } }), 'trace');
  const record = await engine.session(sessionId ?? '', alice);
  if (!record) throw new Error('no session');
  const sent: JsonRpcMessage[] = [];
  engine.attachStandalone(record, { canStream: true, send: (message) => sent.push(message) > 0 });
  const created = await engine.request(record, taskReq('tools/call', { name: 'up1__slow', arguments: {}, task: {} }), NO_STREAM, 'trace');
  if (!('result' in created)) throw new Error('no task');
  return { engine, connector, sent };
}

describe("relay bound: tasks' last statuses", () => {
  it("do not have 5,000 statuses of task ids that are not the session's looked up in the task store", async () => {
    const { tasks, lookups } = countingTasks();
    const { connector } = await setUp(tasks);
    const before = lookups();
    for (let i = 0; i < 5_000; i += 1) connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/tasks/status', params: { taskId: `nobody-${i}`, status: 'failed' } });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(lookups() - before).toBeLessThan(2_200);
  });
});

describe("relay bound: an upstream's requests about tasks", () => {
  it('do not have 5,000 requests naming made-up task ids looked up in the task store', async () => {
    const { tasks, lookups } = countingTasks();
    const { connector } = await setUp(tasks, { elicitation: {} });
    const before = lookups();
    const asked: Promise<unknown>[] = [];
    for (let i = 0; i < 5_000; i += 1) {
      asked.push(
        connector
          .ask('u1', { jsonrpc: '2.0', id: `q${i}`, method: 'elicitation/create', params: { message: 'hi', requestedSchema: { type: 'object', properties: {} }, _meta: { [RELATED_TASK]: { taskId: `nobody-${i}` } } } })
          .catch(() => undefined),
      );
    }
    await Promise.all(asked);
    await new Promise((resolve) => setTimeout(resolve, 200));
    // The same bound as for notifications naming made-up tasks.
    expect(lookups() - before).toBeLessThan(2_200);
  });
});

describe("an agent's progress on a request relayed to it", () => {
  it('reaches the upstream within a bound, however fast the agent sends it', async () => {
    const { engine, connector } = build({ prefix: 'up1', capabilities: { tools: {} }, handle: async () => ({ tools: [] }) });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25', capabilities: { elicitation: {} } });
    let relayedId: string | undefined;
    engine.attachStandalone(record, {
      canStream: true,
      send: (message) => {
        if ('id' in message && typeof message.id === 'string') relayedId = message.id;
        return true;
      },
    });
    // The upstream asks the agent something, and wants progress on it.
    const asked = connector.ask('u1', { jsonrpc: '2.0', id: 1, method: 'elicitation/create', params: { message: 'ok?', requestedSchema: { type: 'object', properties: {} }, _meta: { progressToken: 'up-1' } } });
    await expect.poll(() => relayedId).toBeDefined();
    // The agent sends 5,000 progress notifications about it at once (one batch POST after another).
    const started = performance.now();
    for (let progress = 1; progress <= 5_000; progress += 1) {
      engine.notification(record, { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: relayedId, progress } });
    }
    const tookSeconds = (performance.now() - started) / 1_000;
    engine.answer(record, { jsonrpc: '2.0', id: relayedId as string, result: { action: 'accept', content: {} } });
    await asked;
    const sent = connector.notified.filter((notification) => notification.method === 'notifications/progress').length;
    expect(sent).toBeGreaterThan(0);
    // At most what an upstream may send the agent in one go in the other direction (a burst of 1,000), and what the
    // allowance gave back while the loop ran (200 a second; a loaded host runs it slowly).
    expect(sent).toBeLessThanOrEqual(1_000 + Math.ceil(200 * tookSeconds) + 1);
    expect(sent).toBeLessThan(5_000);
  });
});
