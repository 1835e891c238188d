/**
 * Upstreams joining a live session later. An upstream an admin repairs while a join of its broken version still hangs
 * (a black-holed address, a stuck name lookup) joins at once beside it: at the reload, and at the listing the agent
 * makes when told its lists changed. A re-review found it waiting for the doomed join, then for the next sweep.
 */
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore } from '../testing/fake-upstreams';
import { NO_STREAM } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();

describe('an upstream repaired while a join of its broken version hangs', () => {
  it('joins at the reload / the listing the agent makes when told its lists changed', async () => {
    const registry = new UpstreamRegistry('__');
    const good = fakeConfig('u1', 'files');
    const broken = fakeConfig('u2', 'crm');
    registry.replace([good, broken], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: [{ name: 'read', inputSchema: { type: 'object' } }] }) },
      u2: { capabilities: { tools: { listChanged: true } }, handle: async () => ({ tools: [{ name: 'customers', inputSchema: { type: 'object' } }] }) },
    });
    // The broken version hangs (until its connect timeout).
    connector.openDelayMs.set('u2', 1_500);
    const engine = makeEngine({ registry, connector, sessions: new MemorySessionStore(), options: { initializeWaitMs: 20, listTimeoutMs: 300 } });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    const toAgent: { method?: string }[] = [];
    engine.attachStandalone(record, { canStream: true, send: (m) => toAgent.push(m as { method?: string }) > 0 });

    // The admin repairs it (another URL): the reload swaps it in, tells the agent, and joins what is missing.
    connector.openDelayMs.set('u2', 0);
    registry.replace([good, { ...broken, url: 'http://repaired.example/mcp', version: 2 }], () => undefined);
    engine.retireDeparted('t1');
    engine.listsChangedFor('t1');
    engine.joinMissingUpstreams();

    // The agent lists, as told.
    const listed = await engine.request(record, req('tools/list'), NO_STREAM, 'trace');
    const names = 'result' in listed ? (listed.result['tools'] as { name: string }[]).map((tool) => tool.name) : [];
    // Joined beside the doomed join, which ends as reconfigured without undoing it.
    await new Promise((resolve) => setTimeout(resolve, 1_700));
    const joinedLater = Object.hasOwn((await engine.session(record.id, { tenantId: 't1', kind: 'agent_client', id: 'a1' }))?.upstreams ?? {}, 'u2');
    expect({ names, joinedLater }).toEqual({ names: ['crm__customers', 'files__read'], joinedLater: true });
  }, 10_000);
});
