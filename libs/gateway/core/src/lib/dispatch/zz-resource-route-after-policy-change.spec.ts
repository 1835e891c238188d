import { createLogger } from '@portcullis/shared/util-logger';
import { type JsonRpcRequest, type Principal } from '@portcullis/gateway/mcp';
import { afterEach, describe, expect, it } from 'vitest';
import { GATEWAY_RPC } from '../http/gateway-error';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, type FakeUpstream, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { GatewayRequestError, SessionEngine } from './session-engine';
import { NO_STREAM } from './sinks';

const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1' };
const logger = createLogger({ service: 'spec', level: 'silent' });
const engines: SessionEngine[] = [];
afterEach(async () => void (await Promise.all(engines.splice(0).map((e) => e.shutdown()))));
let nextId = 1;
const req = (method: string, params?: Record<string, unknown>): JsonRpcRequest => ({ jsonrpc: '2.0', id: nextId++, method, ...(params ? { params } : {}) });

/** Both upstreams list the same URI; each answers a read with its own prefix. */
const lister = (prefix: string): FakeUpstream & { prefix: string } => ({
  prefix,
  capabilities: { resources: {} },
  handle: async (method) => {
    if (method === 'resources/list') return { resources: [{ uri: 'notes://shared/readme', name: 'readme' }] };
    if (method === 'resources/templates/list') return { resourceTemplates: [] };
    if (method === 'resources/read') return { contents: [{ uri: 'notes://shared/readme', text: `from ${prefix}` }] };
    return {};
  },
});

describe('resource routes and a policy change', () => {
  it('after the policy hides upstream a\'s copy of a URI that b lists too, the URI the agent still sees listed (b\'s) is read from b, as in a new session', async () => {
    // The policy: a principal may read notes://shared/readme on "a" until `hidden`; on "b" always.
    let hidden = false;
    const deniedOnA = (upstreamName: string, uri: unknown) => hidden && upstreamName === 'a' && uri === 'notes://shared/readme';
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('ua', 'a'), fakeConfig('ub', 'b')], () => undefined);
    const engine = new SessionEngine({
      registry,
      connector: new FakeConnector({ ua: lister('a'), ub: lister('b') }),
      sessions: new MemorySessionStore(),
      logger,
      hooks: {
        filter: (_record, kind, upstream, items) => (kind === 'resource' ? items.filter((item) => !deniedOnA(upstream.name, item['uri'])) : items),
        admit: (info) => {
          if (info.target && deniedOnA(info.target.upstream.name, info.target.name)) throw new GatewayRequestError(GATEWAY_RPC.POLICY_DENIED, 'denied', undefined, 'denied');
          return undefined;
        },
      },
      options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 200 },
    });
    engines.push(engine);
    const open = async () => {
      const { sessionId } = await engine.initialize(principal, req('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } }), 'trace');
      return (await engine.session(sessionId ?? '', principal))!;
    };
    const record = await open();
    await engine.request(record, req('resources/list'), NO_STREAM, 'trace');
    expect(await engine.request(record, req('resources/read', { uri: 'notes://shared/readme' }), NO_STREAM, 'trace')).toMatchObject({ result: { contents: [{ text: 'from a' }] } });

    // The policy changes: a's copy is hidden from this principal; the agent is told its lists changed and lists again.
    hidden = true;
    engine.listsChangedFor('t1');
    const listed = await engine.request(record, req('resources/list'), NO_STREAM, 'trace');
    expect(listed).toMatchObject({ result: { resources: [{ uri: 'notes://shared/readme' }] } }); // b's, still listed

    // The session that listed before the change routes the URI as a new session of the same principal does (today:
    // from b), not to the upstream its stale route names (a, which the policy now denies it).
    const fresh = await open();
    await engine.request(fresh, req('resources/list'), NO_STREAM, 'trace');
    const strip = (answer: unknown) => JSON.stringify({ ...(answer as Record<string, unknown>), id: 0 });
    const inFresh = strip(await engine.request(fresh, req('resources/read', { uri: 'notes://shared/readme' }), NO_STREAM, 'trace'));
    const inOld = strip(await engine.request(record, req('resources/read', { uri: 'notes://shared/readme' }), NO_STREAM, 'trace'));
    expect(inOld).toBe(inFresh);
  });
});
