/**
 * After a0550439 the gateway contradicts itself for an upstream that joined after initialize: `logging/setLevel` is
 * served (`supports`: "one that joined later serves agents that ask without looking at the capabilities"), sent to
 * the joined upstream and answered with success, so the agent believes it will get log messages at that level, and
 * the upstream now sends them (debug, here) — but `relayable` drops every one of them, for the session's whole life.
 * Either the request is refused (the capability was not declared), or what it turned on reaches the agent.
 */
import type { JsonRpcMessage } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig } from '../testing/fake-upstreams';
import { NO_STREAM } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('logging/setLevel accepted for an upstream joined after initialize', () => {
  it('is either refused or followed by the log messages it asked for', async () => {
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
    const accepted = 'result' in set;
    if (accepted) expect(connector.calls.some((call) => call.upstreamId === 'u2' && call.method === 'logging/setLevel')).toBe(true);
    connector.emit('u2', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'debug', data: 'as asked' } });
    await sleep(20);
    const logged = told.some((message) => 'method' in message && message.method === 'notifications/message');
    expect({ accepted, logged }, 'setLevel answered with success, yet its log messages dropped').not.toEqual({ accepted: true, logged: false });
  });
});
