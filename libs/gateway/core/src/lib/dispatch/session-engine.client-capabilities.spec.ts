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

/**
 * An upstream's form elicitation (request `id`) while the agent of `record` listens on `engine`: what the agent was sent,
 * and the code the upstream was answered with ('pending' when none came within 200 ms).
 */
async function elicitedThrough(engine: ReturnType<typeof makeEngine>, connector: FakeConnector, record: SessionRecord, id: number) {
  const toAgent: unknown[] = [];
  engine.attachStandalone(record, { canStream: true, send: (m) => toAgent.push(m) > 0 });
  const outcome = connector.ask('u1', form(id)).then(
    () => 0,
    (error: { code: number }) => error.code,
  );
  await new Promise((resolve) => setTimeout(resolve, 50));
  return { toAgent, answered: await Promise.race([outcome, new Promise((resolve) => setTimeout(() => resolve('pending'), 200))]) };
}

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
    expect(await elicitedThrough(replica, connector, onReplica, 2)).toEqual({ toAgent: [], answered: -32601 });
  });

  it('does not send a form to a 2025-06-18 agent that named url-mode elicitation only: it has no elicitation its version can be sent', async () => {
    const { registry, connector, sessions } = setUp();
    const engine = makeEngine({ registry, connector, sessions });
    const { record } = await openSession(engine, { protocolVersion: '2025-06-18', capabilities: { elicitation: { url: {} } } });
    expect(await elicitedThrough(engine, connector, record, 1)).toEqual({ toAgent: [], answered: -32601 });
  });
});
