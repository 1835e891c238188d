import type { AuditEventV1 } from '@portcullis/contracts/jobs';

export interface AuditInsertResult {
  /** Newly stored. */
  readonly inserted: number;
  /** Already stored (a retried or replayed event id): skipped. */
  readonly duplicates: number;
}

/**
 * Thrown by `AuditEventStore.insert` when some of the events were not stored. The others were (or were already
 * there): the caller may treat them as stored.
 */
export class AuditStoreError extends Error {
  constructor(
    message: string,
    /** The events not stored. */
    readonly failed: readonly AuditEventV1[],
    /**
     * The failure is not these events' fault (database unreachable, pool exhausted, serialisation conflict): retry
     * them later as they are. Otherwise an event may be to blame, and storing fewer at a time can isolate it.
     */
    readonly transient: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AuditStoreError';
  }
}

/**
 * Where ingested audit events end up. Inserting an event id that is already stored is a no-op, so a retried batch is
 * harmless. A failure throws (an `AuditStoreError` when the store can tell which events failed and why).
 */
export interface AuditEventStore {
  insert(events: readonly AuditEventV1[]): Promise<AuditInsertResult>;
}

/** What `insertIsolatingFailures` reports, item by item (each item carries one event). */
export interface IsolatedInsertHandlers<T> {
  /** Its event is stored (or was already). */
  readonly stored: (item: T) => void;
  /**
   * Its event is not stored: it failed on its own, or in a failure the store called transient (then `error` is that
   * `AuditStoreError`, `transient` true, and the event may well be fine).
   */
  readonly failed: (item: T, error: unknown) => void;
}

/**
 * Stores the events of `items` with poison isolation, settling every item through `handlers` (never throws). If the
 * insert fails, the events the store does not name as failed are stored; the named ones are split in halves and
 * retried, in order (the first half's events take their chain positions first), recursively, until each bad event is
 * alone: k bad events among n cost about 2·k·log2(n) extra inserts, and every other event is stored. A failure the
 * store calls transient (database unreachable...) is not split: splitting cannot help, so those items fail as they
 * are. An error that is no `AuditStoreError` names nothing: all the items are split.
 *
 * Used by the batcher (jobs from Redis) and by the outbox drain, where one store transaction per tenant would otherwise
 * let one refused event hold back every other event of its tenant.
 */
export async function insertIsolatingFailures<T>(
  store: AuditEventStore,
  items: readonly T[],
  eventOf: (item: T) => AuditEventV1,
  handlers: IsolatedInsertHandlers<T>,
): Promise<void> {
  if (items.length === 0) return;
  let failedItems: readonly T[];
  let error: unknown;
  try {
    // Inserted or already there: either way the event is stored exactly once.
    await store.insert(items.map(eventOf));
    items.forEach((item) => handlers.stored(item));
    return;
  } catch (caught) {
    error = caught ?? new Error('audit store failed');
    failedItems = items;
    if (caught instanceof AuditStoreError) {
      const failedIds = new Set(caught.failed.map((event) => event.eventId));
      const named: T[] = [];
      for (const item of items) {
        if (failedIds.has(eventOf(item).eventId)) named.push(item);
        else handlers.stored(item);
      }
      failedItems = named;
      if (caught.transient) {
        failedItems.forEach((item) => handlers.failed(item, error));
        return;
      }
    }
  }
  if (failedItems.length <= 1) {
    failedItems.forEach((item) => handlers.failed(item, error));
    return;
  }
  const half = Math.ceil(failedItems.length / 2);
  await insertIsolatingFailures(store, failedItems.slice(0, half), eventOf, handlers);
  await insertIsolatingFailures(store, failedItems.slice(half), eventOf, handlers);
}
