/**
 * A standalone stream handed over between replicas: the older one ends as replaced only when the newer one, announced
 * on the bus, says it resumes no stream or another one (a resume of it later is then refused 409: a second client on
 * the session); a resume of it, or an announcement from an earlier version that says neither, ends it unmarked. And on
 * one replica, a chain of resumes: an agent that never gets an event id of the streams after its first names the first
 * on each reconnect, and each time the current stream stands for it.
 */
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore } from '../testing/fake-upstreams';
import type { BusMessage } from './session-engine';

const { makeEngine, openSession, recordOn } = engineSpecs();

/** Two replicas (rx, ry) whose bus only queues: `flush` delivers what was published, in order, to both. */
async function queuedReplicas() {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'files')], () => undefined);
  const connector = new FakeConnector({ u1: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: [] }) } });
  const sessions = new MemorySessionStore();
  const queued: BusMessage[] = [];
  const bus = { broadcast: (message: BusMessage) => void queued.push(JSON.parse(JSON.stringify(message)) as BusMessage), sendTo: () => undefined };
  const make = (replicaId: string) => makeEngine({ registry, connector, sessions, bus, options: { replicaId } });
  const [x, y] = [make('rx'), make('ry')];
  const { record: onX } = await openSession(x);
  const onY = await recordOn(y, onX.id);
  const flush = () => {
    for (const message of queued.splice(0)) for (const engine of [x, y]) engine.onBusMessage(message);
  };
  return { x, y, onX, onY, queued, flush };
}

describe('standalone stream handover across replicas', () => {
  const announced = async (announcement: Partial<BusMessage>): Promise<(string | undefined)[]> => {
    const { x, onX, queued, flush } = await queuedReplicas();
    const reasons: (string | undefined)[] = [];
    x.attachStandalone(onX, { id: 's-agent-stream', canStream: true, send: () => true, close: (reason?: 'replaced') => void reasons.push(reason ?? 'ended') });
    flush();
    queued.push({ type: 'standalone-attached', sessionId: onX.id, token: 'token-of-the-other-replica', renews: true, ...announcement } as BusMessage);
    flush();
    return reasons;
  };

  it('ends the older stream as replaced when the newer one resumes none or another', async () => {
    expect(await announced({ fresh: true })).toEqual(['replaced']);
    expect(await announced({ resumes: 's-another-stream' })).toEqual(['replaced']);
  });

  it('ends it unmarked when the newer one resumes it, or comes from an earlier version that does not say (a 2025-06-18 agent, which gets no priming event, still holds its id)', async () => {
    expect(await announced({ resumes: 's-agent-stream' })).toEqual(['ended']);
    expect(await announced({})).toEqual(['ended']);
  });

  it('tells its stream which relayed messages came before its own announcement came back (an older stream parked elsewhere logged those too)', async () => {
    const { x, onX, queued, flush } = await queuedReplicas();
    const early: boolean[] = [];
    const note = { jsonrpc: '2.0', method: 'notifications/tools/list_changed' } as const;
    x.attachStandalone(onX, { id: 's-new', canStream: true, send: (_message, before = false) => early.push(before) > 0 }, 's-old');
    // Published by a third replica before the announcement reached the bus, then after it.
    queued.unshift({ type: 'standalone', sessionId: onX.id, message: note } as BusMessage);
    flush();
    queued.push({ type: 'standalone', sessionId: onX.id, message: note } as BusMessage);
    flush();
    expect(early).toEqual([true, false]);
  });

  it('marks nothing early when the stream it resumes was this replica\'s own (closed here at attach, it logged none of it)', async () => {
    const { x, onX, queued, flush } = await queuedReplicas();
    let oldClosed = false;
    x.attachStandalone(onX, { id: 's-old', canStream: true, send: () => true, close: () => void (oldClosed = true) });
    flush();
    const early: boolean[] = [];
    x.attachStandalone(onX, { id: 's-new', canStream: true, send: (_message, before = false) => early.push(before) > 0 }, 's-old');
    expect(oldClosed).toBe(true);
    queued.unshift({ type: 'standalone', sessionId: onX.id, message: { jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'file:///a' } } } as BusMessage);
    flush();
    expect(early).toEqual([false]);
  });
});


/**
 * Three replicas (rx, ry, rz) announcing their streams every 100 ms, on a bus that only queues: `flush` delivers what was
 * published, in order, to all three, but for a message type `lost` for one of them (a publish it missed).
 */
function lossyReplicas() {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'files')], () => undefined);
  const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
  const sessions = new MemorySessionStore();
  const queued: BusMessage[] = [];
  const bus = { broadcast: (message: BusMessage) => void queued.push(JSON.parse(JSON.stringify(message)) as BusMessage), sendTo: () => undefined };
  const make = (replicaId: string) => makeEngine({ registry, connector, sessions, bus, options: { replicaId, listenerAnnounceMs: 100 } });
  const [x, y, z] = [make('rx'), make('ry'), make('rz')];
  const flush = (lost?: { engine: unknown; type: BusMessage['type'] }) => {
    for (const message of queued.splice(0)) for (const engine of [x, y, z]) if (!(lost && engine === lost.engine && message.type === lost.type)) engine.onBusMessage(message);
  };
  /** The token of the first stream announcement still queued. */
  const tokenOf = () => (queued.find((message) => message.type === 'standalone-attached') as { token: string }).token;
  /** A session opened on x, as each replica reads it. */
  const session = async () => {
    const { record: onX } = await openSession(x);
    return { onX, onY: await recordOn(y, onX.id), onZ: await recordOn(z, onX.id) };
  };
  /** Past the conflict grace (4 s), and two held rounds later. */
  const pastGrace = async () => {
    await new Promise((resolve) => setTimeout(resolve, 4_400));
    flush();
    await new Promise((resolve) => setTimeout(resolve, 250));
    flush();
  };
  return { x, y, z, flush, tokenOf, session, pastGrace };
}

describe('a standalone-attached announcement lost for one replica (found by a review)', () => {
  it("is settled by the replicas' periodic announcements: one of the two streams ends, and a relayed message goes out once", async () => {
    const { x, y, z, flush, session, pastGrace } = lossyReplicas();
    const { onX, onY, onZ } = await session();
    const sent = { x: 0, y: 0 };
    const closed: string[] = [];
    x.attachStandalone(onX, { id: 's-x', canStream: true, send: () => ++sent.x > 0, close: (why) => void closed.push(`x:${String(why)}`) });
    flush();
    // A second stream of the session on y; x's subscriber misses its announcement.
    y.attachStandalone(onY, { id: 's-y', canStream: true, send: () => ++sent.y > 0, close: (why) => void closed.push(`y:${String(why)}`) });
    flush({ engine: x, type: 'standalone-attached' });
    // Within the grace, the held rounds settle nothing: both still hold a stream.
    await new Promise((resolve) => setTimeout(resolve, 300));
    flush();
    expect(closed).toEqual([]);
    // Past it, one (the same by both replicas' reckoning) is closed as replaced at the next rounds.
    await pastGrace();
    expect(closed).toHaveLength(1);
    expect(closed[0]).toMatch(/^[xy]:replaced$/);
    // z relays a session-level message: it goes out on the stream that stayed, once.
    const relayed = { type: 'standalone', sessionId: onZ.id, message: { jsonrpc: '2.0', method: 'notifications/tools/list_changed' } } as BusMessage;
    for (const engine of [x, y, z]) engine.onBusMessage(relayed);
    expect(sent.x + sent.y).toBe(1);
  }, 15_000);

  it('never closes the live stream that resumed a parked one, whatever the tokens, and ends the parked one unmarked (found by re-review)', async () => {
    const { x, y, flush, tokenOf, session, pastGrace } = lossyReplicas();
    // Both orders of the tokens: the parked stream's the greater (what a token rule alone got wrong), then the smaller.
    const outcomes: { parkedGreater: boolean; closed: string[] }[] = [];
    for (let tries = 0; tries < 40 && new Set(outcomes.map((outcome) => outcome.parkedGreater)).size < 2; tries += 1) {
      const closed: string[] = [];
      const { onX, onY } = await session();
      let away = false;
      x.attachStandalone(onX, { id: 's-x', canStream: true, get away() { return away; }, send: () => true, close: (why) => void closed.push(`x:${why ?? 'ended'}`) });
      const tx = tokenOf();
      flush();
      // The agent's connection on x dropped: the stream is parked there, logging for its resume; the agent resumes it on
      // y, and x's subscriber misses that announcement.
      away = true;
      y.attachStandalone(onY, { id: 's-y', canStream: true, send: () => true, close: (why) => void closed.push(`y:${why ?? 'ended'}`) }, 's-x');
      const ty = tokenOf();
      flush({ engine: x, type: 'standalone-attached' });
      if (outcomes.some((outcome) => outcome.parkedGreater === tx > ty)) continue;
      outcomes.push({ parkedGreater: tx > ty, closed });
    }
    expect(outcomes).toHaveLength(2);
    await pastGrace();
    // The agent is on y: its stream stays; the parked one on x, which it resumed, ends unmarked.
    for (const outcome of outcomes) expect(outcome.closed).toEqual(['x:ended']);
  }, 20_000);
});

describe('a standalone stream resumed again and again with the id of one stream of the chain', () => {
  // The stream an agent names on each reconnect is the last it got an event of: its first, or one in the middle of the
  // chain (re-review found each dropped from the chain after nine reconnects, in turn).
  it.each([
    ['its first stream', 1],
    ['a stream in the middle of the chain', 3],
  ])('is still taken for the current stream after 12 prompt reconnects naming %s', async (_label, named) => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const engine = makeEngine({ registry, connector: new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } }), sessions: new MemorySessionStore() });
    const { record } = await openSession(engine, { protocolVersion: '2025-06-18' });
    const closedAs: Record<string, string> = {};
    const sink = (id: string) => ({ canStream: true, id, send: () => true, close: (reason?: 'replaced') => void (closedAs[id] = reason ?? 'resumed') });
    engine.attachStandalone(record, sink('s1'));
    // Resolved as the GET route does: the stream the agent names (s1 until it got an event of `named`), taken for the
    // current one when that one stands for it.
    const reconnect = (k: number) => {
      const asked = k <= named ? 's1' : `s${named}`;
      const chained = engine.standaloneResuming(record.id, asked);
      engine.attachStandalone(record, sink(`s${k}`), chained ?? asked, asked);
      return chained;
    };
    for (let k = 2; k <= named; k += 1) reconnect(k);
    const recognised: (string | undefined)[] = [];
    for (let k = named + 1; k <= named + 12; k += 1) {
      const chained = reconnect(k);
      if (k > named + 1) recognised.push(chained);
    }
    expect(recognised).toEqual(Array.from({ length: 11 }, (_, i) => `s${named + i + 1}`));
    expect(Object.entries(closedAs).filter(([, reason]) => reason === 'replaced')).toEqual([]);
  });
});
