import type { AuditEventV1 } from '@portcullis/contracts/jobs';

export interface AuditInsertResult {
  /** Newly stored. */
  readonly inserted: number;
  /** Already stored (a retried or replayed event id): skipped. */
  readonly duplicates: number;
}

/**
 * Where ingested audit events end up. All-or-nothing per call; inserting an event id that is already stored is a
 * no-op, so a retried batch is harmless.
 */
export interface AuditEventStore {
  insert(events: readonly AuditEventV1[]): Promise<AuditInsertResult>;
}
