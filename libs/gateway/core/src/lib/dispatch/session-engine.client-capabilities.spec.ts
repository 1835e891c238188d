/**
 * The client capabilities an agent declared, as the engine reads them: cut to what its negotiated version defines
 * (`clientCapabilitiesOf`), at initialize and again where read, so that a session stored by an earlier version of the
 * gateway (uncut) is held to it too. Found by re-review: a 2025-03-26 agent of such a session was still sent
 * elicitation/create, and a 2025-06-18 agent that named url-mode elicitation only was sent a form.
 */
import type { JsonRpcRequest, SessionRecord } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore } from '../testing/fake-upstreams';
import { NO_STREAM } from './sinks';

const { req, makeEngine, openSession, recordOn, principal } = engineSpecs();

function setUp() {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'llm')], () => undefined);
  const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [{ name: 'ask', inputSchema: { type: 'object' } }] }) } });
  const sessions = new MemorySessionStore();
  return { registry, connector, sessions };
}

const form = (id: number): JsonRpcRequest => ({
  jsonrpc: '2.0',
  id,
  method: 'elicitation/create',
  params: { message: 'pick', requestedSchema: { type: 'object', properties: { name: { type: 'string' } } } },
});

describe('client capabilities cut to the agent\'s version', () => {
  // A session stored by a replica of the previous version (a rolling deploy, or any session older than the deploy)
  // keeps the capabilities as declared.
  it('does not send elicitation/create to a 2025-03-26 agent whose session a previous version stored', async () => {
    const { registry, connector, sessions } = setUp();
    const older = makeEngine({ registry, connector, sessions });
    const { record } = await openSession(older, { protocolVersion: '2025-03-26', capabilities: { elicitation: {} } });
    // As the previous version wrote it: the capabilities as the agent declared them.
    const stored = sessions.records.get(record.id) as SessionRecord;
    sessions.records.set(record.id, { ...stored, clientCapabilities: { elicitation: {} } });
    const replica = makeEngine({ registry, connector, sessions });
    const onReplica = await recordOn(replica, record.id, principal);
    expect('result' in (await replica.request(onReplica, req('tools/list'), NO_STREAM, 'trace'))).toBe(true);
    const toAgent: unknown[] = [];
    replica.attachStandalone(onReplica, { canStream: true, send: (m) => toAgent.push(m) > 0 });
    const outcome = connector.ask('u1', form(2)).then(
      () => 0,
      (error: { code: number }) => error.code,
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(toAgent).toEqual([]);
    expect(await Promise.race([outcome, new Promise((resolve) => setTimeout(() => resolve('pending'), 200))])).toBe(-32601);
  });

  it('does not send a form to a 2025-06-18 agent that named url-mode elicitation only: it has no elicitation its version can be sent', async () => {
    const { registry, connector, sessions } = setUp();
    const engine = makeEngine({ registry, connector, sessions });
    const { record } = await openSession(engine, { protocolVersion: '2025-06-18', capabilities: { elicitation: { url: {} } } });
    const toAgent: unknown[] = [];
    engine.attachStandalone(record, { canStream: true, send: (m) => toAgent.push(m) > 0 });
    const outcome = connector.ask('u1', form(1)).then(
      () => 0,
      (error: { code: number }) => error.code,
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(toAgent).toEqual([]);
    expect(await Promise.race([outcome, new Promise((resolve) => setTimeout(() => resolve('pending'), 200))])).toBe(-32601);
  });
});
