/**
 * Resource routing learns which upstream serves a URI by walking the merged resources listing (`learnRoutes`), as far
 * as an agent may page it (MAX_UPSTREAM_PAGES of each upstream). Before, the walk stopped at 50 merged pages: a resource
 * an upstream listed on its 51st page or later was shown by resources/list, yet resources/read of it answered -32002 on
 * any replica that had not served that page itself, and on that one too after a list change.
 */
import type { JsonRpcResponse } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore } from '../testing/fake-upstreams';
import { NO_STREAM } from './sinks';

const { req, makeEngine, openSession, recordOn } = engineSpecs();

/** One resource a page, 70 pages (a server paginating 1 item a page stands for one paginating 100 of 7,000). */
function pagedLister() {
  return new FakeConnector({
    u1: {
      capabilities: { resources: {} },
      handle: async (method, params) => {
        if (method === 'resources/list') {
          const page = params?.['cursor'] === undefined ? 1 : Number(params['cursor']);
          return { resources: [{ uri: `mem://r/${page}`, name: `r${page}` }], ...(page < 70 ? { nextCursor: String(page + 1) } : {}) };
        }
        if (method === 'resources/templates/list') return { resourceTemplates: [] };
        if (method === 'resources/read') return { contents: [{ uri: params?.['uri'], text: 'hello' }] };
        return {};
      },
    },
  });
}

describe('resources/read of a resource listed past the 50th page', () => {
  it('is read on a replica that did not serve the listing page (sessions are served by any replica)', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = pagedLister();
    const sessions = new MemorySessionStore();
    const one = makeEngine({ registry, connector, sessions, options: { listTimeoutMs: 500 } });
    const two = makeEngine({ registry, connector, sessions, options: { listTimeoutMs: 500, replicaId: 'r2' } });
    const { record } = await openSession(one, { protocolVersion: '2025-11-25' });
    let cursor: string | undefined;
    const uris: string[] = [];
    for (let i = 0; i < 100; i++) {
      const page = (await one.request(record, req('resources/list', cursor === undefined ? {} : { cursor }), NO_STREAM, 't')) as JsonRpcResponse & { result: { resources: { uri: string }[]; nextCursor?: string } };
      uris.push(...page.result.resources.map((r) => r.uri));
      cursor = page.result.nextCursor;
      if (cursor === undefined) break;
    }
    // The agent was shown it...
    expect(uris).toContain('mem://r/60');
    // ...and its next request lands on the other replica.
    const read = await two.request(await recordOn(two, record.id), req('resources/read', { uri: 'mem://r/60' }), NO_STREAM, 't');
    expect(read, JSON.stringify(read)).toMatchObject({ result: { contents: [{ uri: 'mem://r/60', text: 'hello' }] } });
  });

  it('is read on the replica that listed it once the upstream said its resources changed', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    const connector = pagedLister();
    const engine = makeEngine({ registry, connector, options: { listTimeoutMs: 500 } });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    let cursor: string | undefined;
    for (let i = 0; i < 100; i++) {
      const page = (await engine.request(record, req('resources/list', cursor === undefined ? {} : { cursor }), NO_STREAM, 't')) as JsonRpcResponse & { result: { nextCursor?: string } };
      cursor = page.result.nextCursor;
      if (cursor === undefined) break;
    }
    connector.emit('u1', { jsonrpc: '2.0', method: 'notifications/resources/list_changed' });
    const read = await engine.request(record, req('resources/read', { uri: 'mem://r/60' }), NO_STREAM, 't');
    expect(read, JSON.stringify(read)).toMatchObject({ result: { contents: [{ uri: 'mem://r/60', text: 'hello' }] } });
  });
});
