/**
 * A log level set through one replica reaches the stdio process another replica holds for the session, however that
 * replica's copy of the record takes the stored level: on `agent-state`, or with the record its own subscribe wrote
 * before that message came (it was told only when the level in the copy changed, so never in the second case).
 */
import { createLogger } from '@portcullis/shared/util-logger';
import type { JsonRpcRequest, Principal } from '@portcullis/gateway/mcp';
import { afterEach, describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { SessionEngine, type BusMessage } from './session-engine';
import { NO_STREAM } from './sinks';

const logger = createLogger({ level: 'silent' } as never);
const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1' };
const engines: SessionEngine[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((engine) => engine.shutdown()));
});
let nextId = 1;
const req = (method: string, params?: Record<string, unknown>): JsonRpcRequest => ({ jsonrpc: '2.0', id: nextId++, method, ...(params ? { params } : {}) });

describe('log level across replicas', () => {
  it("tells B's stdio process the level A set even when B's own subscribe brought the stored level into B's copy first", async () => {
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: {}, logging: {}, resources: { subscribe: true } },
        handle: async (method) =>
          method === 'tools/list' ? { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] } : method === 'resources/list' ? { resources: [{ uri: 'file:///a', name: 'a' }] } : method === 'tools/call' ? { content: [] } : {},
      },
    });
    connector.unresumable.add('u1');
    const registry = new UpstreamRegistry('__');
    registry.replace([{ ...fakeConfig('u1', 'files'), transport: 'stdio', url: null, command: 'server' }], () => undefined);
    const sessions = new MemorySessionStore();
    const queued: BusMessage[] = [];
    const bus = { broadcast: (message: BusMessage) => void queued.push(message), sendTo: () => undefined };
    const make = (replicaId: string) => new SessionEngine({ registry, connector, sessions, logger, bus, options: { ...SPEC_ENGINE_OPTIONS, replicaId } });
    const [a, b] = [make('ra'), make('rb')];
    engines.push(a, b);
    const flush = () => {
      for (const message of queued.splice(0)) for (const engine of [a, b]) engine.onBusMessage(message);
    };
    const { sessionId } = await a.initialize(principal, req('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } }), 'trace');
    const onA = await a.session(sessionId ?? '', principal);
    const onB = await b.session(sessionId ?? '', principal);
    if (!onA || !onB) throw new Error('no session');
    for (const [engine, record] of [[a, onA], [b, onB]] as const) {
      expect(await engine.request(record, req('tools/call', { name: 'files__echo', arguments: {} }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    }
    flush();
    const processes = [...new Set(connector.calls.filter((call) => call.method === 'tools/call').map((call) => call.sessionId))].sort();
    expect(processes).toHaveLength(2);
    // The agent sets its level through A and, at the same time, subscribes to a resource through B.
    expect(await a.request(onA, req('logging/setLevel', { level: 'debug' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    expect(await b.request(onB, req('resources/subscribe', { uri: 'file:///a' }), NO_STREAM, 'trace')).toMatchObject({ result: {} });
    flush();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const told = () => connector.calls.filter((call) => call.method === 'logging/setLevel').map((call) => `${call.sessionId} ${JSON.stringify(call.params)}`).sort();
    await expect.poll(told, { timeout: 1_000 }).toEqual(processes.map((process) => `${process} {"level":"debug"}`));
  });
});
