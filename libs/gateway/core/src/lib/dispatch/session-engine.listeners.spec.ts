import { createLogger } from '@portcullis/shared/util-logger';
import type { JsonRpcNotification, JsonRpcRequest, Principal } from '@portcullis/gateway/mcp';
import { waitFor } from '@portcullis/shared/util-testing';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, requestMaker, shutDownAfterEach, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { SessionEngine, type BusMessage } from './session-engine';
import { NO_STREAM, type MessageSink } from './sinks';

const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1' };
const logger = createLogger({ service: 'spec', level: 'silent' });
const engines = shutDownAfterEach<SessionEngine>();
const req = requestMaker();
const init = (): JsonRpcRequest => req('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } });
const listChanged: JsonRpcNotification = { jsonrpc: '2.0', method: 'notifications/tools/list_changed' };
/** A session-level message the agent hears of each time (list changes are told at most once a second). */
const logMessage: JsonRpcNotification = { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'x' } };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A sink standing for an agent's standalone stream: what it was sent. */
function agentStream(): MessageSink & { readonly got: unknown[] } {
  const got: unknown[] = [];
  return { canStream: true, send: (message) => (got.push(message), true), close: () => undefined, got };
}

/**
 * Two replicas (ra, rb) sharing one registry, connector and session store, joined by an in-memory bus that keeps
 * every message broadcast; engine options as given.
 */
function twoReplicas(connector: FakeConnector, options: { listenerAnnounceMs?: number; firstListenMs?: number; localIdleMs?: number } = {}) {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'files')], () => undefined);
  const sessions = new MemorySessionStore();
  const replicas: SessionEngine[] = [];
  const broadcast: BusMessage[] = [];
  const bus = {
    broadcast: (message: BusMessage) => {
      broadcast.push(message);
      for (const replica of replicas) replica.onBusMessage(message);
    },
    sendTo: () => undefined,
  };
  const make = (replicaId: string) =>
    new SessionEngine({ registry, connector, sessions, logger, bus, options: { ...SPEC_ENGINE_OPTIONS, replicaId, ...options } });
  const [a, b] = [make('ra'), make('rb')];
  replicas.push(a, b);
  engines.push(a, b);
  return { a, b, broadcast };
}

describe('SessionEngine: upstream streams and bus messages only while an agent listens', () => {
  it('has upstream sessions listen on every replica while the agent listens on one, the stream staying where it is when the agent\'s moves', async () => {
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    connector.listenable.add('u1');
    const { a, b } = twoReplicas(connector, { firstListenMs: 0 });
    const { sessionId } = await a.initialize(principal, init(), 'trace');
    const record = await b.session(sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    await b.request(record, req('tools/list'), NO_STREAM, 'trace');
    // Session 1 is A's (initialize), session 2 B's (resumed for the listing): nobody listens, neither asks.
    expect(connector.listens).toEqual([]);

    // The agent listens on A: both ask (an upstream allowing one GET a session gives it to one; the other's messages
    // come over the bus).
    const detachA = a.attachStandalone(record, agentStream());
    expect(connector.listens).toEqual([
      { upstreamId: 'u1', session: 1, on: true },
      { upstreamId: 'u1', session: 2, on: true },
    ]);
    connector.listens.length = 0;

    // Its stream moves to B: nothing changes upstream (A's GET, if it has it, stays and relays: nothing is lost).
    const detachB = b.attachStandalone(record, agentStream());
    detachA();
    expect(connector.listens).toEqual([]);

    // Nobody listens any more: both stop.
    detachB();
    expect(connector.listens).toEqual([
      { upstreamId: 'u1', session: 1, on: false },
      { upstreamId: 'u1', session: 2, on: false },
    ]);
  });

  it('has an upstream session just opened listen for firstListenMs, then while anyone listens, and not past the session\'s end', async () => {
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    connector.listenable.add('u1');
    const { a } = twoReplicas(connector, { firstListenMs: 60 });
    await a.initialize(principal, init(), 'trace');
    expect(connector.listens).toEqual([{ upstreamId: 'u1', session: 1, on: true }]);
    await waitFor(() => connector.listens.length === 2);
    expect(connector.listens[1]).toEqual({ upstreamId: 'u1', session: 1, on: false });

    // The agent listening on another replica keeps it listening past the window, until that stream goes.
    connector.listens.length = 0;
    const other = await a.initialize(principal, init(), 'trace');
    a.onBusMessage({ type: 'standalone-attached', sessionId: other.sessionId ?? '', token: 'elsewhere', renews: true });
    await sleep(120);
    expect(connector.listens).toEqual([{ upstreamId: 'u1', session: 2, on: true }]);
    a.onBusMessage({ type: 'standalone-detached', sessionId: other.sessionId ?? '', token: 'elsewhere' });
    expect(connector.listens).toEqual([
      { upstreamId: 'u1', session: 2, on: true },
      { upstreamId: 'u1', session: 2, on: false },
    ]);

    // A session that ends within the window: its timer goes with it (it held the session and its upstream sessions).
    connector.listens.length = 0;
    const ended = await a.initialize(principal, init(), 'trace');
    const record = await a.session(ended.sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    await a.end(record, 'trace');
    await sleep(120);
    expect(connector.listens).toEqual([{ upstreamId: 'u1', session: 3, on: true }]);
  });

  it('puts an upstream\'s session-level message on the bus only while an agent listens on some replica', async () => {
    // An upstream that carries its messages on its one connection (stdio, legacy SSE): its session on A hears them
    // whether or not anyone listens (and B's, once opened, its own: only A's is played here).
    const connector = new FakeConnector({ u1: { capabilities: { tools: { listChanged: true }, logging: {} }, handle: async () => ({ tools: [] }) } });
    const { a, b, broadcast } = twoReplicas(connector, { listenerAnnounceMs: 20 });
    const { sessionId } = await a.initialize(principal, init(), 'trace');
    const record = await b.session(sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    const relayed = () => broadcast.filter((message) => message.type === 'standalone').length;

    // Younger than an announcement round and its lapse (50 ms here), A may not have heard of a stream: it broadcasts.
    connector.emit('u1', logMessage, 'first');
    expect(relayed()).toBe(1);

    await sleep(80);
    connector.emit('u1', logMessage, 'first');
    expect(relayed()).toBe(1);

    const stream = agentStream();
    const detach = b.attachStandalone(record, stream);
    connector.emit('u1', logMessage, 'first');
    expect(relayed()).toBe(2);
    expect(stream.got).toEqual([logMessage]);

    // Past the lapse, B's periodic announcements keep its stream known.
    await sleep(150);
    expect(broadcast.some((message) => message.type === 'standalone-held')).toBe(true);
    connector.emit('u1', logMessage, 'first');
    expect(relayed()).toBe(3);
    expect(stream.got).toHaveLength(2);

    detach();
    connector.emit('u1', logMessage, 'first');
    expect(relayed()).toBe(3);
  });

  it('forgets a listener whose replica stopped announcing it', async () => {
    const connector = new FakeConnector({ u1: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: [] }) } });
    const { a, broadcast } = twoReplicas(connector, { listenerAnnounceMs: 20 });
    const { sessionId } = await a.initialize(principal, init(), 'trace');
    await sleep(80);
    // Another replica's stream announced once, then never again (that replica died).
    a.onBusMessage({ type: 'standalone-attached', sessionId: sessionId ?? '', token: 'gone-replica', renews: true });
    connector.emit('u1', listChanged);
    const relayed = () => broadcast.filter((message) => message.type === 'standalone').length;
    expect(relayed()).toBe(1);
    await sleep(120);
    connector.emit('u1', listChanged);
    expect(relayed()).toBe(1);
  });

  it('keeps counting a stream announced by a replica of an earlier version, which never announces it again', async () => {
    const connector = new FakeConnector({ u1: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: [] }) } });
    const { a, broadcast } = twoReplicas(connector, { listenerAnnounceMs: 20 });
    const { sessionId } = await a.initialize(principal, init(), 'trace');
    await sleep(80);
    a.onBusMessage({ type: 'standalone-attached', sessionId: sessionId ?? '', token: 'old-replica' });
    await sleep(120);
    connector.emit('u1', listChanged);
    expect(broadcast.filter((message) => message.type === 'standalone')).toHaveLength(1);
  });

  it('ignores malformed announcements', async () => {
    const connector = new FakeConnector({ u1: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: [] }) } });
    const { a, broadcast } = twoReplicas(connector, { listenerAnnounceMs: 20 });
    const { sessionId } = await a.initialize(principal, init(), 'trace');
    await sleep(80);
    const id = sessionId ?? '';
    for (const streams of [undefined, 'x', [['only-id']], [[id, 7]], [null]]) {
      expect(() => a.onBusMessage({ type: 'standalone-held', streams } as unknown as BusMessage)).not.toThrow();
    }
    expect(() => a.onBusMessage({ type: 'standalone-detached', sessionId: id } as unknown as BusMessage)).not.toThrow();
    connector.emit('u1', listChanged);
    expect(broadcast.filter((message) => message.type === 'standalone')).toHaveLength(0);
  });

  it('reuses a Streamable HTTP upstream\'s listing pages only while it hears of their changes', async () => {
    const upstreams = {
      u1: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: [{ name: 'read', inputSchema: { type: 'object' } }] }) },
    };
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector(upstreams);
    connector.listenable.add('u1');
    const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), logger, options: { ...SPEC_ENGINE_OPTIONS, listCacheMs: 60_000, firstListenMs: 0 } });
    engines.push(engine);
    const { sessionId } = await engine.initialize(principal, init(), 'trace');
    const record = await engine.session(sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    const asked = () => connector.calls.filter((call) => call.method === 'tools/list').length;
    const list = () => engine.request(record, req('tools/list'), NO_STREAM, 'trace');

    // Nobody listens: the upstream's GET is closed, a change would go unheard, so each listing asks.
    await list();
    await list();
    expect(asked()).toBe(2);

    const detach = engine.attachStandalone(record, agentStream());
    await list();
    await list();
    expect(asked()).toBe(3);
    detach();
    await list();
    expect(asked()).toBe(4);
  });

  it('reuses the pages of an upstream whose one connection carries its changes, listener or not', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({ u1: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: [] }) } });
    const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), logger, options: { ...SPEC_ENGINE_OPTIONS, listCacheMs: 60_000 } });
    engines.push(engine);
    const { sessionId } = await engine.initialize(principal, init(), 'trace');
    const record = await engine.session(sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    expect(connector.calls.filter((call) => call.method === 'tools/list')).toHaveLength(1);
  });
  it('drops pages cached while an agent listened once nobody does (changes then go unheard), and asks again', async () => {
    let tools = [{ name: 'old', inputSchema: { type: 'object' } }];
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({ u1: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools }) } });
    connector.listenable.add('u1');
    const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), logger, options: { ...SPEC_ENGINE_OPTIONS, listCacheMs: 60_000, firstListenMs: 0 } });
    engines.push(engine);
    const { sessionId } = await engine.initialize(principal, init(), 'trace');
    const record = await engine.session(sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    const names = async () => {
      const answer = (await engine.request(record, req('tools/list'), NO_STREAM, 'trace')) as { result?: { tools?: { name: string }[] } };
      return (answer.result?.tools ?? []).map((tool) => tool.name);
    };
    const detach = engine.attachStandalone(record, agentStream());
    expect(await names()).toEqual(['files__old']);
    detach();
    tools = [{ name: 'new', inputSchema: { type: 'object' } }]; // its list_changed goes to a closed GET
    engine.attachStandalone(record, agentStream());
    // Before, the page cached before the deaf spell came back: the agent was shown a tool the upstream no longer had.
    expect(await names()).toEqual(['files__new']);
  });

  it('keeps the upstream\'s stream across an agent resuming its parked stream on the same replica', async () => {
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    connector.listenable.add('u1');
    const { a, broadcast } = twoReplicas(connector, { firstListenMs: 0 });
    const { sessionId } = await a.initialize(principal, init(), 'trace');
    const record = await a.session(sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    // As the HTTP route parks a stream whose agent went: its close (a new stream taking over) runs its detach at once.
    const held: { detach?: () => void } = {};
    const parked: MessageSink = { canStream: true, away: true, send: () => true, close: () => held.detach?.() };
    held.detach = a.attachStandalone(record, parked);
    a.attachStandalone(record, agentStream()); // the agent reconnects, with its last event id
    // Before, the upstream's GET was closed and asked for again (a 409 and a backoff: what came meanwhile was lost).
    expect(connector.listens).toEqual([{ upstreamId: 'u1', session: 1, on: true }]);
    expect(broadcast.filter((message) => message.type === 'standalone-detached')).toEqual([]);
  });

  it('listens to an upstream joined through another replica from the replica the agent listens on', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) },
      u2: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) },
    });
    connector.listenable.add('u1');
    connector.listenable.add('u2');
    const sessions = new MemorySessionStore();
    const replicas: SessionEngine[] = [];
    const bus = { broadcast: (message: BusMessage) => replicas.forEach((replica) => replica.onBusMessage(message)), sendTo: () => undefined };
    const make = (replicaId: string) => new SessionEngine({ registry, connector, sessions, logger, bus, options: { ...SPEC_ENGINE_OPTIONS, replicaId, firstListenMs: 50, joinRetryMs: 100 } });
    const [a, b] = [make('ra'), make('rb')];
    replicas.push(a, b);
    engines.push(a, b);
    const { sessionId } = await a.initialize(principal, init(), 'trace');
    const record = await a.session(sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    a.attachStandalone(record, agentStream());
    registry.replace([fakeConfig('u1', 'files'), fakeConfig('u2', 'more')], () => undefined);
    const onB = await b.session(sessionId ?? '', principal);
    if (!onB) throw new Error('no session');
    await b.request(onB, req('tools/list'), NO_STREAM, 'trace'); // B joins u2 (session 3)
    await sleep(1_200);
    a.joinMissingUpstreams(); // A's background round adopts B's join
    await waitFor(() => connector.listens.some((call) => call.upstreamId === 'u2' && call.session !== 3 && call.on));
    // B's u2 session listens too (the agent listens somewhere): whichever gets the upstream's one stream relays it.
    const on = new Map<number, boolean>();
    for (const call of connector.listens) if (call.upstreamId === 'u2') on.set(call.session, call.on);
    expect([...on.values()]).toEqual([true, true]);
  });
  it('tells the replica the agent listens on when it lets a listened session\'s upstream sessions go', async () => {
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    connector.listenable.add('u1');
    const { a, b, broadcast } = twoReplicas(connector, { firstListenMs: 0, localIdleMs: 50 });
    const { sessionId } = await a.initialize(principal, init(), 'trace');
    const record = await b.session(sessionId ?? '', principal);
    if (!record) throw new Error('no session');
    await b.request(record, req('tools/list'), NO_STREAM, 'trace'); // B holds an upstream session (2) of it
    a.attachStandalone(record, agentStream());
    expect(connector.listens).toEqual([
      { upstreamId: 'u1', session: 1, on: true },
      { upstreamId: 'u1', session: 2, on: true },
    ]);
    // B may hold the upstream's one stream (A waiting out 409s): letting it go, B says so, and A asks again at once
    // (\`listen(true)\` during a 409 wait: resilience.int-spec.ts).
    await sleep(120);
    await b.sweepNow(); // idle on B past localIdleMs: released there
    expect(connector.ended).toContainEqual({ upstreamId: 'u1', how: 'dispose' });
    expect(broadcast.filter((message) => message.type === 'upstreams-released')).toEqual([{ type: 'upstreams-released', sessionId }]);
    // Not for a session nobody listens to elsewhere: A's own release says nothing.
    const quiet = await a.initialize(principal, init(), 'trace');
    await sleep(120);
    await a.sweepNow();
    expect(broadcast.filter((message) => message.type === 'upstreams-released' && message.sessionId === quiet.sessionId)).toEqual([]);
  });
});
