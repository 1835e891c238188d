import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { describe, expect, it } from 'vitest';
import { AuditBatcher } from './audit-batcher';
import type { AuditEventStore } from './audit-event.store';

const event = (id: string): AuditEventV1 => ({ eventId: id }) as AuditEventV1;

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

  it('isolates a poisonous event: the rest of its batch is stored, only its own submit fails', async () => {
    const store = new RecordingStore();
    store.poison.add('b');
    const batcher = new AuditBatcher({ store, maxBatch: 3, lingerMs: 5 });
    const results = await Promise.allSettled(['a', 'b', 'c'].map((id) => batcher.submit(event(id))));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(store.calls).toEqual([['a', 'b', 'c'], ['a'], ['b'], ['c']]);
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
