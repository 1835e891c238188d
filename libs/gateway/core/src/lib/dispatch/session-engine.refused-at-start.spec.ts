/**
 * A starting replica ends the sessions of principals refused now (`endSessionsOfRefused`), judged only for sessions
 * made before the load it judges from began (a key made and used on another replica since is not in that load).
 */
import type { Principal } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore } from '../testing/fake-upstreams';

const { makeEngine, openSession } = engineSpecs();

const TENANT = '3f1d2c4b-5a69-4b7c-8d9e-0f1a2b3c4d5e';
const refusedAgent: Principal = { tenantId: TENANT, kind: 'agent_client', id: 'refused' };
const usableAgent: Principal = { tenantId: TENANT, kind: 'agent_client', id: 'usable' };

function setUp() {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'files')], () => undefined);
  const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
  const sessions = new MemorySessionStore();
  return { sessions, engine: makeEngine({ registry, connector, sessions }) };
}

describe('ending the sessions of principals refused at a replica start', () => {
  it('ends those of refused principals made before the load, and no others', async () => {
    const { sessions, engine } = setUp();
    const refusedOld = (await openSession(engine, { principal: refusedAgent })).record;
    const usable = (await openSession(engine, { principal: usableAgent })).record;
    const loadBegan = Date.now() + 1;
    await new Promise((resolve) => setTimeout(resolve, 5));
    const refusedNew = (await openSession(engine, { principal: refusedAgent })).record;

    const ended = await engine.endSessionsOfRefused((owner) => owner.principalId === 'refused', loadBegan, 'spec');

    expect(ended).toBe(1);
    expect(sessions.records.has(refusedOld.id)).toBe(false);
    // Made after the load began: that load cannot judge it.
    expect(sessions.records.has(refusedNew.id)).toBe(true);
    expect(sessions.records.has(usable.id)).toBe(true);
  });
});

describe('a store that cannot be read at the start', () => {
  it('rejects, so the start looks again later', async () => {
    const { sessions, engine } = setUp();
    sessions.owners = () => Promise.reject(new Error('ECONNREFUSED'));
    await expect(engine.endSessionsOfRefused(() => true, Date.now(), 'spec')).rejects.toThrow('ECONNREFUSED');
  });
});
