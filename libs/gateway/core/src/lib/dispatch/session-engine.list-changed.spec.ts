/**
 * An upstream's list changes on a call's stream reach the agent there, each as it comes, while the replica bus hears of
 * them at most once an interval: one folded for the interval's end found the call over, and an agent with no GET stream
 * (MCP: a client MAY open one) never heard of the second change of a call.
 */
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig } from '../testing/fake-upstreams';
import type { BusMessage } from './session-engine';
import { NO_STREAM, type MessageSink } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const toolsChanged = { jsonrpc: '2.0' as const, method: 'notifications/tools/list_changed' };

describe('list changes on a call\'s stream', () => {
  it('reaches an agent without a GET stream: the second change of a call is told on the call stream that carried it', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    let tools = ['echo'];
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: { listChanged: true } },
        handle: async (method, _params, options) => {
          if (method === 'tools/list') return { tools: tools.map((name) => ({ name, inputSchema: { type: 'object' } })) };
          // The tool adds a tool, then another one, telling of each as it goes (both on the call's stream).
          tools = [...tools, 'added1'];
          options?.onNotification?.(toolsChanged);
          await sleep(50);
          tools = [...tools, 'added2'];
          options?.onNotification?.(toolsChanged);
          await sleep(50);
          return { content: [{ type: 'text', text: 'done' }] };
        },
      },
    });
    const engine = makeEngine({ registry, connector });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    // The agent never opens a GET stream: what the gateway tells it comes on its calls' streams.
    const told: { method: string; at: number }[] = [];
    let streaming = true;
    const sink: MessageSink = {
      get canStream() {
        return streaming;
      },
      send: (message) => (streaming && 'method' in message ? told.push({ method: message.method, at: Date.now() }) > 0 : false),
    };
    const answer = await engine.request(record, req('tools/call', { name: 'files__echo', arguments: {} }), sink, 'trace');
    streaming = false;
    expect(answer).toMatchObject({ result: { content: [{ text: 'done' }] } });
    await sleep(1_200);
    // Two changes happened while the call's stream was open: the agent must hear of the second one too (listing after
    // the first only, it would hold a list without `added2` for good).
    expect(told.filter((m) => m.method === toolsChanged.method)).toHaveLength(2);
  });
});

describe('list changes folded when the session leaves the replica', () => {
  it('are put on the bus as it leaves, so the other replicas drop pages listed after the first change', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: { listChanged: true } },
        handle: async (method, _params, options) => {
          if (method === 'tools/list') return { tools: [] };
          // Two changes within the interval: the first goes on the bus at once, the second is folded for its end.
          options?.onNotification?.(toolsChanged);
          await sleep(20);
          options?.onNotification?.(toolsChanged);
          return { content: [{ type: 'text', text: 'done' }] };
        },
      },
    });
    const broadcasts: BusMessage[] = [];
    const bus = { broadcast: (message: BusMessage) => void broadcasts.push(message), sendTo: () => undefined };
    const engine = makeEngine({ registry, connector, bus, options: { localIdleMs: 10 } });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    await engine.request(record, req('tools/call', { name: 'files__echo', arguments: {} }), NO_STREAM, 'trace');
    await sleep(30);
    // Idle here before the interval ends: the session leaves this replica, and its interval's timer with it.
    await engine.sweepNow();
    await sleep(1_200);
    const listChanges = broadcasts.filter((message) => message.type === 'lists-changed');
    expect(listChanges).toHaveLength(2);
    expect(listChanges[1]).toMatchObject({ sessionId: record.id, upstreamId: 'u1' });
  });
});

describe('an upstream storm of list changes', () => {
  // Found by review: any method ending in `/list_changed` was a list change keyed by its spelling, so an upstream
  // spelling each anew got a broadcast to every replica, a map entry and a timer per notification.
  it('is folded into one notice per interval; a method that only looks like one is no list change', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({ u1: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: [] }) } });
    const broadcasts: BusMessage[] = [];
    const bus = { broadcast: (message: BusMessage) => void broadcasts.push(message), sendTo: () => undefined };
    const engine = makeEngine({ registry, connector, bus });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    const listsChanged = () => broadcasts.filter((message) => message.type === 'lists-changed').length;

    for (let i = 0; i < 1_000; i += 1) connector.emit('u1', toolsChanged);
    expect(listsChanged()).toBe(1);
    for (let i = 0; i < 1_000; i += 1) connector.emit('u1', { jsonrpc: '2.0', method: `notifications/${i}${'x'.repeat(1_000)}/list_changed` });
    expect(listsChanged()).toBe(1);
    const live = (engine as unknown as { live: Map<string, { listNotices: Map<string, unknown> }> }).live.get(record.id);
    expect(live?.listNotices.size).toBe(1);
  });
});
