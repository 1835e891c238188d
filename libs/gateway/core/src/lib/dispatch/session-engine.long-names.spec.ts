import { describe, expect, it } from 'vitest';
import type { RequestHooks } from '../hooks/request-hooks';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig } from '../testing/fake-upstreams';
import { NO_STREAM } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();

/**
 * An upstream's names and URIs longer than the gateway could ever list never reach the hooks: the policy folds and
 * normalises every name it judges, uncached past 512 characters, and one resource URI of 7 million characters held the
 * replica for seconds on every listing and read of every session (found by a review, 2026-12-07).
 */
describe('names and URIs past what the gateway lists', () => {
  const long = (start: string) => `${start}${'é'.repeat(200_000)}`;
  const hugeUri = long('file:///srv/docs/');

  function engineWithSpy() {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    /** The longest name or URI each hook was asked about. */
    const longest = { filter: 0, alsoReadable: 0 };
    const hooks: RequestHooks = {
      filter: (_record, _kind, _upstream, items) => {
        for (const item of items) longest.filter = Math.max(longest.filter, ...['name', 'uri', 'uriTemplate'].map((key) => String(item[key] ?? '').length));
        return items;
      },
      alsoReadable: (_info, uri) => {
        longest.alsoReadable = Math.max(longest.alsoReadable, uri.length);
        return true;
      },
    };
    const engine = makeEngine({
      registry,
      hooks,
      connector: new FakeConnector({
        u1: {
          capabilities: { tools: {}, prompts: {}, resources: {}, completions: {} },
          handle: async (method) => {
            if (method === 'tools/list') return { tools: [{ name: 'x'.repeat(129), inputSchema: { type: 'object' } }, { name: 'read', inputSchema: { type: 'object' } }] };
            if (method === 'prompts/list') return { prompts: [{ name: long('p') }, { name: 'summary' }] };
            if (method === 'resources/list') return { resources: [{ uri: hugeUri, name: 'huge' }, { uri: 'file:///srv/docs/', name: 'docs' }] };
            if (method === 'resources/templates/list') return { resourceTemplates: [{ uriTemplate: `${long('file:///t/')}{x}`, name: 'huge' }, { uriTemplate: 'repo://{org}', name: 'repo' }] };
            if (method === 'resources/read') return { contents: [{ uri: 'file:///srv/docs/', text: 'index' }, { uri: hugeUri, text: 'x' }, { uri: 'file:///srv/docs/a', text: 'a' }] };
            if (method === 'completion/complete') return { completion: { values: ['acme', long('org-')] } };
            return {};
          },
        },
      }),
    });
    return { engine, longest };
  }

  it('are left out of listings before the hooks judge them', async () => {
    const { engine, longest } = engineWithSpy();
    const record = (await openSession(engine)).record;
    const listed = async (method: string, field: string, key: string) => {
      const answer = (await engine.request(record, req(method), NO_STREAM, 'trace')) as { result: Record<string, Record<string, unknown>[]> };
      return answer.result[field]?.map((item) => item[key]);
    };
    expect(await listed('tools/list', 'tools', 'name')).toEqual(['files__read']);
    expect(await listed('prompts/list', 'prompts', 'name')).toEqual(['files__summary']);
    expect(await listed('resources/list', 'resources', 'uri')).toEqual(['file:///srv/docs/']);
    expect(await listed('resources/templates/list', 'resourceTemplates', 'uriTemplate')).toEqual(['repo://{org}']);
    expect(longest.filter).toBeGreaterThan(0);
    expect(longest.filter).toBeLessThanOrEqual(8 * 1024);
  });

  it("are not passed on in a read's contents nor in completions, without the hooks judging them", async () => {
    const { engine, longest } = engineWithSpy();
    const record = (await openSession(engine)).record;
    await engine.request(record, req('resources/list'), NO_STREAM, 'trace');
    await engine.request(record, req('resources/templates/list'), NO_STREAM, 'trace');
    const read = (await engine.request(record, req('resources/read', { uri: 'file:///srv/docs/' }), NO_STREAM, 'trace')) as unknown as { result: { contents: { uri: string }[] } };
    expect(read.result.contents.map((item) => item.uri)).toEqual(['file:///srv/docs/', 'file:///srv/docs/a']);
    expect(longest.alsoReadable).toBe('file:///srv/docs/a'.length);
    longest.filter = 0;
    const completed = await engine.request(record, req('completion/complete', { ref: { type: 'ref/resource', uri: 'repo://{org}' }, argument: { name: 'org', value: '' } }), NO_STREAM, 'trace');
    expect(completed).toMatchObject({ result: { completion: { values: ['acme'] } } });
    expect(longest.filter).toBe('repo://acme'.length);
  });

  it('are dropped from resources/updated before the hooks judge them; an update within bounds still reaches the agent (found by re-review)', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    let longest = 0;
    const hooks: RequestHooks = {
      filter: (_record, _kind, _upstream, items) => {
        for (const item of items) longest = Math.max(longest, String(item['uri'] ?? item['name'] ?? '').length);
        return items;
      },
    };
    const connector = new FakeConnector({
      u1: {
        capabilities: { resources: { subscribe: true } },
        handle: async (method) => (method === 'resources/list' ? { resources: [{ uri: 'file:///srv/docs/', name: 'docs' }] } : method === 'resources/templates/list' ? { resourceTemplates: [] } : {}),
      },
    });
    const engine = makeEngine({ registry, hooks, connector });
    const { record } = await openSession(engine);
    const toAgent: unknown[] = [];
    engine.attachStandalone(record, { canStream: true, send: (message) => toAgent.push(message) > 0 });
    await engine.request(record, req('resources/list'), NO_STREAM, 'trace');
    expect(await engine.request(record, req('resources/subscribe', { uri: 'file:///srv/docs/' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    longest = 0;
    // A subscription to a directory covers what is under it, at any length.
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: hugeUri } });
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'file:///srv/docs/a' } });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(longest).toBe('file:///srv/docs/a'.length);
    expect(toAgent).toEqual([{ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'file:///srv/docs/a' } }]);
  });
});
