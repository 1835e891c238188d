/**
 * What the agent may list changes with the tenant's upstreams ("listChanged is always set for tools, prompts and
 * resources … the tenant's upstreams being added", capabilities.ts). An upstream the tenant adds while a session runs
 * joins it (`joinMissingUpstreams`), but when it brings an area no upstream had at initialize (a tenant with no upstream
 * yet, or one whose upstreams had no prompts), initialize advertised no such capability: the agent is never told the
 * list changed, and a client that follows the capabilities never lists it for the rest of the session. Meanwhile the
 * gateway serves prompts/list with the new upstream's prompts, a capability it never declared.
 */
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig } from '../testing/fake-upstreams';
import { NO_STREAM } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const tool = (name: string) => ({ name, inputSchema: { type: 'object' } });

describe('an upstream the tenant adds while a session runs, bringing an area initialize did not advertise', () => {
  it('is announced to a listening agent when the tenant had no upstream at all at initialize', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [tool('echo')] } : {}) },
    });
    const engine = makeEngine({ registry, connector, options: { joinRetryMs: 10 } });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    const told: { method?: string }[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => told.push(message as { method?: string }) > 0 });

    // The administrator configures the tenant's first upstream; the registry reloads and sessions join it.
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    engine.listsChangedFor('t1');
    engine.joinMissingUpstreams();
    await sleep(300);

    // The session has the upstream (its tools are served)…
    const listed = (await engine.request(record, req('tools/list'), NO_STREAM, 'trace')) as { result?: { tools: { name: string }[] } };
    expect(listed.result?.tools.map((t) => t.name)).toEqual(['files__echo']);
    // …but the agent was never told: initialize advertised no `tools` at all, so no list_changed may be sent.
    expect(told.map((m) => m.method)).toContain('notifications/tools/list_changed');
  });

  it('announces prompts of an upstream added to a tenant whose upstreams had only tools', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {} }, handle: async (method) => (method === 'tools/list' ? { tools: [tool('echo')] } : {}) },
      u2: { capabilities: { prompts: {} }, handle: async (method) => (method === 'prompts/list' ? { prompts: [{ name: 'review' }] } : {}) },
    });
    const engine = makeEngine({ registry, connector, options: { joinRetryMs: 10 } });
    const { record, response } = await openSession(engine, { protocolVersion: '2025-11-25' });
    const advertised = (response as { result: { capabilities: Record<string, unknown> } }).result.capabilities;
    const told: { method?: string }[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => told.push(message as { method?: string }) > 0 });

    registry.replace([fakeConfig('u1', 'files'), fakeConfig('u2', 'docs')], () => undefined);
    engine.listsChangedFor('t1');
    engine.joinMissingUpstreams();
    await sleep(300);

    // The gateway serves the new prompts…
    const prompts = (await engine.request(record, req('prompts/list'), NO_STREAM, 'trace')) as { result?: { prompts: { name: string }[] } };
    expect(prompts.result?.prompts.map((p) => p.name)).toEqual(['docs__review']);
    // …so it must have declared prompts (with listChanged) and told the listening agent they changed.
    expect(advertised['prompts']).toMatchObject({ listChanged: true });
    expect(told.map((m) => m.method)).toContain('notifications/prompts/list_changed');
  });
});
