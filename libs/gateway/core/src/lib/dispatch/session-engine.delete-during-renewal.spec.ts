/**
 * DELETE of a session (replica x) while another replica (y) replaces an upstream session the upstream forgot: the new
 * upstream session y stored in the record between x's read of it and x's delete was never closed (found by review):
 * x closed the upstream sessions the record named when it read it, and y, told the session ended, only let its copy go
 * (a Streamable HTTP upstream session is disposed, not closed, on release). x now closes those the record named as it
 * was removed.
 */
import { describe, expect, it } from 'vitest';
import { UpstreamUnavailableError, type SessionRecord } from '@portcullis/gateway/mcp';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore } from '../testing/fake-upstreams';
import type { BusMessage } from './session-engine';

const { makeEngine, openSession, recordOn, req } = engineSpecs();

/** A store whose delete waits for `open()` (the Redis round trip between `end`'s reload and its delete, stretched). */
class GatedStore extends MemorySessionStore {
  private gate: Promise<void> | undefined;
  open: () => void = () => undefined;
  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }
  override async delete(id: string): Promise<SessionRecord | undefined> {
    await this.gate;
    return super.delete(id);
  }
}

describe('DELETE racing an upstream session renewal on another replica', () => {
  it('closes the upstream session the other replica stored meanwhile', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    let forget = 0;
    const connector: FakeConnector = new FakeConnector({
      u1: {
        capabilities: { tools: {} },
        handle: async (method) => {
          if (method === 'tools/list') return { tools: [{ name: 'read', inputSchema: { type: 'object' } }] };
          if (method === 'tools/call' && forget > 0) {
            forget -= 1;
            throw new UpstreamUnavailableError('session_expired', 'The upstream no longer knows this session');
          }
          return { content: [] };
        },
      },
    });
    const sessions = new GatedStore();
    const queued: BusMessage[] = [];
    const bus = { broadcast: (message: BusMessage) => void queued.push(JSON.parse(JSON.stringify(message)) as BusMessage), sendTo: () => undefined };
    const x = makeEngine({ registry, connector, sessions, bus, options: { replicaId: 'rx' } });
    const y = makeEngine({ registry, connector, sessions, bus, options: { replicaId: 'ry' } });
    const { record } = await openSession(x);
    const onY: SessionRecord = await recordOn(y, record.id);
    const first = record.upstreams['u1']?.sessionId;

    // x ends the session: it reads the record, then its delete waits.
    sessions.hold();
    const ending = x.end(record, 'trace');
    await new Promise((resolve) => setTimeout(resolve, 10));
    // Meanwhile y's call finds the upstream session forgotten and stores a new one in the record.
    forget = 1;
    const sink = { canStream: false, send: () => false };
    await y.request(onY, req('tools/call', { name: 'files__read', arguments: {} }), sink, 'trace');
    const renewed = sessions.records.get(record.id)?.upstreams['u1']?.sessionId;
    expect(renewed).not.toBe(first);

    sessions.open();
    await ending;
    for (const message of queued.splice(0)) for (const engine of [x, y]) engine.onBusMessage(message);
    await new Promise((resolve) => setTimeout(resolve, 50));

    expect(sessions.records.has(record.id)).toBe(false);
    // Every upstream session the session had is ended upstream, the renewed one included.
    expect(connector.closedSessions).toEqual(expect.arrayContaining([first, renewed]));
  });
});
