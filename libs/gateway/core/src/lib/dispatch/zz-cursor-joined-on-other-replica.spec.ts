import { createLogger } from '@portcullis/shared/util-logger';
import { type JsonRpcRequest, type Principal } from '@portcullis/gateway/mcp';
import { afterEach, describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { SessionEngine, type BusMessage } from './session-engine';
import { NO_STREAM } from './sinks';

const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1' };
const logger = createLogger({ service: 'spec', level: 'silent' });
const engines: SessionEngine[] = [];
afterEach(async () => void (await Promise.all(engines.splice(0).map((e) => e.shutdown()))));
let nextId = 1;
const req = (method: string, params?: Record<string, unknown>): JsonRpcRequest => ({ jsonrpc: '2.0', id: nextId++, method, ...(params ? { params } : {}) });
const tools = (...names: string[]) => names.map((name) => ({ name, inputSchema: { type: 'object' } }));

describe('a cursor naming an upstream another replica joined', () => {
  it('is taken on this replica even when this replica read the record for joins less than a second before', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'one')], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {} }, handle: async () => ({ tools: tools('a') }) },
      u2: {
        capabilities: { tools: {} },
        handle: async (method, params) => (method === 'tools/list' ? (params?.['cursor'] === undefined ? { tools: tools('b'), nextCursor: 'more' } : { tools: tools('c') }) : {}),
      },
    });
    const sessions = new MemorySessionStore();
    const replicas: SessionEngine[] = [];
    const bus = {
      broadcast: (message: BusMessage) => replicas.forEach((replica) => replica.onBusMessage(message)),
      sendTo: (replicaId: string, message: BusMessage) => replicas.find((_r, i) => ['ra', 'rb'][i] === replicaId)?.onBusMessage(message),
    };
    const make = (replicaId: string) =>
      new SessionEngine({ registry, connector, sessions, logger, bus, options: { ...SPEC_ENGINE_OPTIONS, replicaId, listTimeoutMs: 200, joinRetryMs: 10 } });
    const a = make('ra');
    const b = make('rb');
    replicas.push(a, b);
    engines.push(a, b);
    const { sessionId } = await a.initialize(principal, req('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } }), 'trace');
    const onA = (await a.session(sessionId ?? '', principal))!;
    const onB = (await b.session(sessionId ?? '', principal))!;

    // The tenant adds u2 while it is still starting: a listing through B tries to join it and fails.
    registry.replace([fakeConfig('u1', 'one'), fakeConfig('u2', 'two')], () => undefined);
    connector.down.add('u2');
    expect(await b.request(onB, req('tools/list'), NO_STREAM, 'trace')).toMatchObject({ result: { tools: [{ name: 'one__a' }] } });
    // u2 is up a moment later; the agent's next listing lands on A, which joins it and hands out a cursor naming it.
    connector.down.delete('u2');
    const first = await a.request(onA, req('tools/list'), NO_STREAM, 'trace');
    if (!('result' in first)) throw new Error(JSON.stringify(first));
    expect(first.result['tools']).toMatchObject([{ name: 'one__a' }, { name: 'two__b' }]);
    // The next page goes through B: the gateway's own cursor must not be "Invalid".
    const rest = await b.request(onB, req('tools/list', { cursor: first.result['nextCursor'] }), NO_STREAM, 'trace');
    expect(rest).toMatchObject({ result: { tools: [{ name: 'two__c' }] } });
  });
});
