import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { describe, expect, it } from 'vitest';
import { AuditBatcher } from './audit-batcher';
import { AuditStoreError, type AuditEventStore } from './audit-event.store';

const event = (id: string, tenantId = 't'): AuditEventV1 => ({ eventId: id, tenantId }) as AuditEventV1;

class RecordingStore implements AuditEventStore {
  readonly calls: string[][] = [];
  poison = new Set<string>();
  async insert(events: readonly AuditEventV1[]) {
    this.calls.push(events.map((e) => e.eventId));
    if (events.some((e) => this.poison.has(e.eventId))) throw new Error('bad row');
    return { inserted: events.length, duplicates: 0 };
  }
}

describe('AuditBatcher', () => {
  it('writes a full batch at once and a partial one after its linger', async () => {
    const store = new RecordingStore();
    const batcher = new AuditBatcher({ store, maxBatch: 3, lingerMs: 5 });
    const done = ['a', 'b', 'c', 'd'].map((id) => batcher.submit(event(id)));
    await Promise.all(done);
    expect(store.calls).toEqual([['a', 'b', 'c'], ['d']]);
  });

  it('under a backlog, cuts batches by tenant: the tenant of the oldest event first, then the busiest', async () => {
    const store = new RecordingStore();
    const batcher = new AuditBatcher({ store, maxBatch: 4, lingerMs: 1, maxInFlight: 1 });
    // a1 b1 b2 c1 b3 c2 b4 a2 b5 (tenant = first letter)
    const ids = ['a1', 'b1', 'b2', 'c1', 'b3', 'c2', 'b4', 'a2', 'b5'];
    const result = batcher.submitMany(ids.map((id) => event(id, id.slice(0, 1))));
    await result;
    expect(store.calls).toEqual([
      ['a1', 'b1', 'b2', 'a2'], // a (oldest) whole, then b (busiest), in arrival order
      ['c1', 'b3', 'c2', 'b4'], // c1 is now the oldest: c whole, then b; arrival order within the batch
      ['b5'], // what is left fits: all of it
    ]);
    expect((await result).failed).toEqual([]);
  });

  it('isolates a poisonous event: the rest of its batch is stored, only its own submit fails', async () => {
    const store = new RecordingStore();
    store.poison.add('b');
    const batcher = new AuditBatcher({ store, maxBatch: 3, lingerMs: 5 });
    const results = await Promise.allSettled(['a', 'b', 'c'].map((id) => batcher.submit(event(id))));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    // Split in halves, in order, until the bad one is alone.
    expect(store.calls).toEqual([['a', 'b', 'c'], ['a', 'b'], ['a'], ['b'], ['c']]);
  });

  it('settles a group of events together and reports which of them failed', async () => {
    const store = new RecordingStore();
    store.poison.add('e5');
    store.poison.add('e12');
    const batcher = new AuditBatcher({ store, maxBatch: 100, lingerMs: 1 });
    const ids = Array.from({ length: 16 }, (_, i) => `e${i}`);
    const [first, second] = await Promise.all([
      batcher.submitMany(ids.slice(0, 8).map((id) => event(id))),
      batcher.submitMany(ids.slice(8).map((id) => event(id))),
    ]);
    expect(first?.failed.map((f) => f.event.eventId)).toEqual(['e5']);
    expect(second?.failed.map((f) => f.event.eventId)).toEqual(['e12']);
    expect(second?.failed[0]?.error).toEqual(new Error('bad row'));
    // Bisection: far fewer inserts than one per event, and every good event stored in one of them.
    expect(store.calls.length).toBeLessThan(16);
    const stored = new Set(store.calls.filter((c) => !c.some((id) => store.poison.has(id))).flat());
    expect(stored).toEqual(new Set(ids.filter((id) => !store.poison.has(id))));
    expect(await batcher.submitMany([])).toEqual({ failed: [] });
  });

  it('retries only what the store reports as failed, and does not split a transient failure', async () => {
    const calls: string[][] = [];
    let transient = true;
    const store: AuditEventStore = {
      async insert(events) {
        calls.push(events.map((e) => e.eventId));
        const failed = events.filter((e) => e.eventId.startsWith('t1-'));
        if (failed.length > 0)
          throw new AuditStoreError('tenant 1 failed', failed, transient, { cause: new Error('x') });
        return { inserted: events.length, duplicates: 0 };
      },
    };
    const batcher = new AuditBatcher({ store, maxBatch: 10, lingerMs: 1 });
    const events = ['t1-a', 't2-a', 't1-b', 't2-b'].map((id) => event(id));
    const result = await batcher.submitMany(events);
    expect(result.failed.map((f) => f.event.eventId)).toEqual(['t1-a', 't1-b']);
    expect(calls).toEqual([['t1-a', 't2-a', 't1-b', 't2-b']]); // database down: no point in splitting

    calls.length = 0;
    transient = false;
    await batcher.submitMany(events);
    // Not transient: only tenant 1's events are split and retried; tenant 2's were stored by the first insert.
    expect(calls).toEqual([['t1-a', 't2-a', 't1-b', 't2-b'], ['t1-a'], ['t1-b']]);
  });

  it('bounds the batches written at once and drains', async () => {
    let inFlight = 0;
    let peak = 0;
    const store: AuditEventStore = {
      async insert(events) {
        inFlight += 1;
        peak = Math.max(peak, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 5));
        inFlight -= 1;
        return { inserted: events.length, duplicates: 0 };
      },
    };
    const batcher = new AuditBatcher({ store, maxBatch: 2, lingerMs: 1, maxInFlight: 2 });
    const all = Array.from({ length: 20 }, (_, i) => batcher.submit(event(String(i))));
    await batcher.drain();
    await Promise.all(all);
    expect(peak).toBe(2);
  });
});
