/**
 * A URI whose route moved to another upstream (a listed resource now beats a template elsewhere) and that the agent
 * subscribed to again is held on both upstreams: one resources/unsubscribe ends it on every one of them, and the
 * record keeps none (MCP: after unsubscribe, no more updates about the URI).
 */
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore } from '../testing/fake-upstreams';
import { NO_STREAM } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();
const updated = (uri: string) => ({ jsonrpc: '2.0' as const, method: 'notifications/resources/updated', params: { uri } });
const updatesIn = (messages: readonly unknown[]) =>
  messages.filter((m) => (m as { method?: string }).method === 'notifications/resources/updated').map((m) => (m as { params: { uri: string } }).params.uri);

describe('resources: one unsubscribe ends the agent\'s subscription to a URI', () => {
  it('after the URI moved to another upstream and the agent subscribed again, one unsubscribe ends every upstream\'s subscription', async () => {
    let u2Lists = false;
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'a'), fakeConfig('u2', 'b')], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities: { resources: { subscribe: true, listChanged: true } },
        handle: async (method) =>
          method === 'resources/list' ? { resources: [] } : method === 'resources/templates/list' ? { resourceTemplates: [{ uriTemplate: 'mem://{id}', name: 't' }] } : {},
      },
      u2: {
        capabilities: { resources: { subscribe: true, listChanged: true } },
        handle: async (method) =>
          method === 'resources/list' ? { resources: u2Lists ? [{ uri: 'mem://x', name: 'x' }] : [] } : method === 'resources/templates/list' ? { resourceTemplates: [] } : {},
      },
    });
    const sessions = new MemorySessionStore();
    const engine = makeEngine({ registry, connector, sessions });
    const { record } = await openSession(engine);
    const toAgent: unknown[] = [];
    engine.attachStandalone(record, { canStream: true, send: (m) => toAgent.push(m) > 0 });

    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://x' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    // u2 now lists the URI itself (a listed resource beats another upstream's template) and says so.
    u2Lists = true;
    connector.emit('u2', { jsonrpc: '2.0', method: 'notifications/resources/list_changed' });
    // The agent subscribes again (idempotent in MCP), then unsubscribes once.
    expect(await engine.request(record, req('resources/subscribe', { uri: 'mem://x' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(await engine.request(record, req('resources/unsubscribe', { uri: 'mem://x' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    toAgent.length = 0;
    connector.emit('u1', updated('mem://x'));
    connector.emit('u2', updated('mem://x'));
    // MCP: after resources/unsubscribe the client gets no more updates about the URI.
    expect(updatesIn(toAgent)).toEqual([]);
    expect(sessions.records.get(record.id)?.subscriptions ?? {}).toEqual({});
  });
});
