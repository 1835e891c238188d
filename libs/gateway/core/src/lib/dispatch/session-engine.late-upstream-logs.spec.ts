/**
 * A session whose upstreams were not all there at initialize (one still starting past initializeWaitMs, an `npx`
 * stdio server on a cold start, or briefly down) is told of the three lists with listChanged (`openLists`), and of
 * logging: once the late upstream joins, its log messages reach the agent as those of the others do.
 */
import type { JsonRpcMessage } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig } from '../testing/fake-upstreams';

const { makeEngine, openSession } = engineSpecs();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('an upstream that declares logging and was still starting at initialize', () => {
  it("has its log messages reach the agent once it joined", async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {}, logging: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) },
    });
    connector.openDelayMs.set('u1', 100);
    const engine = makeEngine({ registry, connector, options: { initializeWaitMs: 20 } });
    const { record, response } = await openSession(engine, { protocolVersion: '2025-11-25' });
    const advertised = ('result' in response ? response.result['capabilities'] : {}) as Record<string, unknown>;
    // Told of the lists, so that the upstream can serve once it joins.
    expect(advertised).toMatchObject({ tools: { listChanged: true } });
    const told: JsonRpcMessage[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => told.push(message) > 0 });
    await expect.poll(() => (connector.notificationHandlers.get('u1') ?? []).length > 0).toBe(true);
    await sleep(20);
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'error', logger: 'db', data: 'connection lost' } });
    await sleep(20);
    expect(told.map((message) => ('method' in message ? message.method : 'answer')), 'the joined upstream\'s error log').toContain('notifications/message');
  });
});
