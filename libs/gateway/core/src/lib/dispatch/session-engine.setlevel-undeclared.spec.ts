/**
 * `logging/setLevel` is refused (-32601) on a session whose initialize declared no logging, though an upstream joined
 * since has it: that upstream's log messages are not passed on to such an agent (`relayable`), so a level set for
 * them would be a success with no effect, and the upstream would produce what nobody gets.
 */
import type { JsonRpcMessage } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig } from '../testing/fake-upstreams';
import { NO_STREAM } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('logging/setLevel on a session whose initialize declared no logging', () => {
  it('is refused, though an upstream joined since has logging', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) },
      u2: { capabilities: { tools: {}, logging: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) },
    });
    const engine = makeEngine({ registry, connector, options: { joinRetryMs: 10 } });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    const told: JsonRpcMessage[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => told.push(message) > 0 });
    registry.replace([fakeConfig('u1', 'files'), fakeConfig('u2', 'logs')], () => undefined);
    engine.joinMissingUpstreams();
    await expect.poll(() => (connector.notificationHandlers.get('u2') ?? []).length > 0).toBe(true);

    const set = await engine.request(record, req('logging/setLevel', { level: 'debug' }), NO_STREAM, 'trace');
    expect(set).toMatchObject({ error: { code: -32601 } });
    expect(connector.calls.some((call) => call.upstreamId === 'u2' && call.method === 'logging/setLevel')).toBe(false);
    connector.emit('u2', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'debug', data: 'as asked' } });
    await sleep(20);
    expect(told.some((message) => 'method' in message && message.method === 'notifications/message')).toBe(false);
  });
});
