/**
 * MCP 2025-11-25 (server utilities, logging): "Servers that emit log message notifications MUST declare the logging
 * capability". The gateway's `logging` capability is fixed at initialize from the upstreams present then; an upstream
 * that joins later (added by the tenant, or down at initialize) is excluded from it ("what initialize told the agent
 * stays as it was"), yet its `notifications/message` are relayed to the agent all the same: the gateway emits log
 * messages on a session whose initialize declared no logging (and the agent never had the chance to set a level).
 */
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig } from '../testing/fake-upstreams';

const { makeEngine, openSession } = engineSpecs();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('log messages of an upstream joined after initialize', () => {
  it('do not reach an agent whose initialize advertised no logging capability', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) },
      u2: { capabilities: { tools: {}, logging: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [] } : {}) },
    });
    const engine = makeEngine({ registry, connector, options: { joinRetryMs: 10 } });
    const { record, response } = await openSession(engine, { protocolVersion: '2025-11-25' });
    const advertised = (response as { result: { capabilities: Record<string, unknown> } }).result.capabilities;
    expect(advertised['logging']).toBeUndefined();
    const told: { method?: string }[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => told.push(message as { method?: string }) > 0 });

    registry.replace([fakeConfig('u1', 'files'), fakeConfig('u2', 'logs')], () => undefined);
    engine.joinMissingUpstreams();
    await sleep(300);
    expect(connector.opened.some((o) => o.upstreamId === 'u2')).toBe(true);

    connector.emit('u2', { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'error', logger: 'db', data: 'connection lost' } });
    await sleep(50);
    expect(told.map((m) => m.method)).not.toContain('notifications/message');
  });
});
