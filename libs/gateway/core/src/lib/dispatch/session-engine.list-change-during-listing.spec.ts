/**
 * A URI two upstreams list is listed once, as the upstream its reads go to: the gateway is the agent's one server and
 * its URIs are to be unique. That held only while the listing could learn routes: a
 * `notifications/resources/list_changed` of any upstream of the session arriving while the listing was under way (a
 * file-watching server announces changes all the time) meant nothing was learned, and both copies were listed in the
 * same page, the second one never readable (found by review).
 */
import { describe, expect, it } from 'vitest';
import type { JsonRpcResponse } from '@portcullis/gateway/mcp';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig } from '../testing/fake-upstreams';
import { NO_STREAM } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();

describe('a URI two upstreams list, while a resources list change comes in', () => {
  it('is listed once in a page', async () => {
    const uri = 'notes://shared/readme';
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('ua', 'a'), fakeConfig('ub', 'b')], () => undefined);
    let announce = false;
    // `connector` is set below; the handler runs only once the engine lists.
    // eslint-disable-next-line prefer-const
    let connector: FakeConnector;
    const lister = (prefix: string) => ({
      capabilities: { resources: { listChanged: true } },
      handle: async (method: string) => {
        if (method === 'resources/list') {
          // A watched directory changed as it was listed: the upstream says so on its stream.
          if (prefix === 'b' && announce) connector.emit('ub', { jsonrpc: '2.0', method: 'notifications/resources/list_changed' });
          return { resources: [{ uri, name: `readme of ${prefix}` }] };
        }
        return { contents: [{ uri, text: `from ${prefix}` }] };
      },
    });
    connector = new FakeConnector({ ua: lister('a'), ub: lister('b') });
    const engine = makeEngine({ registry, connector });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    announce = true;
    const page = (await engine.request(record, req('resources/list'), NO_STREAM, 'trace')) as JsonRpcResponse & { result: { resources: { uri: string; name: string }[] } };
    const uris = page.result.resources.map((resource) => resource.uri);
    expect(uris, JSON.stringify(page.result.resources)).toEqual([uri]);
  });
});
