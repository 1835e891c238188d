/**
 * An upstream joining a session late (`joinOne`) checks the registry after its connect, then writes the session's
 * record (a Redis round trip, retried on contention) before it attaches. A reload that disables the upstream in that
 * window found nothing to retire: the join holds the session to the registry again once attached, so the disabled
 * upstream does not stay (a stdio server's process, the tenant's credentials in its environment, running on).
 */
import type { SessionRecord } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig, MemorySessionStore } from '../testing/fake-upstreams';

const { makeEngine, openSession } = engineSpecs();

class GatedStore extends MemorySessionStore {
  gate: Promise<void> | undefined;
  entered: (() => void) | undefined;
  override async change(id: string, edit: (record: SessionRecord) => SessionRecord | undefined) {
    if (this.gate !== undefined) {
      this.entered?.();
      await this.gate;
    }
    return super.change(id, edit);
  }
}

describe('an upstream disabled while its late join writes the record', () => {
  it('is not attached to the session once the write lands', async () => {
    const registry = new UpstreamRegistry('__');
    const fast = fakeConfig('u1', 'files');
    const slow = { ...fakeConfig('u2', 'local'), transport: 'stdio' as const, url: null, command: 'server' };
    registry.replace([fast, slow], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) },
      u2: { capabilities: { tools: {}, logging: {} }, handle: async () => ({ tools: [] }) },
    });
    connector.unresumable.add('u2');
    connector.openDelayMs.set('u2', 150);
    const store = new GatedStore();
    let release: () => void = () => undefined;
    store.gate = new Promise<void>((resolve) => (release = resolve));
    const entered = new Promise<void>((resolve) => (store.entered = resolve));
    const engine = makeEngine({ registry, connector, sessions: store, options: { initializeWaitMs: 20 } });
    // Initialize answers without u2 (still connecting); its join goes on.
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    // u2 connected, passed joinOne's registry check, and is writing the record: now an admin disables it.
    await entered;
    registry.replace([fast], () => undefined);
    engine.retireDeparted('t1');
    release();
    store.gate = undefined;
    await new Promise((resolve) => setTimeout(resolve, 100));
    // The join did write (it is the change held above)...
    expect(store.records.get(record.id)?.upstreams['u2']?.joined).toBe(true);
    // ...and the disabled upstream's session (a stdio process here) must be ended, as it is for a session that had it already.
    expect(connector.ended.filter((ended) => ended.upstreamId === 'u2'), "the disabled upstream's session still attached").not.toHaveLength(0);
  });
});
