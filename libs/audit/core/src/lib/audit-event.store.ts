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
