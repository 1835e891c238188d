import type { AuditEventV1 } from '@portcullis/contracts/jobs';

/** Where ingested audit events end up. Inserting an event id that is already stored is a no-op. */
export interface AuditEventStore {
  insert(events: readonly AuditEventV1[]): Promise<{ inserted: number }>;
}

export const AUDIT_EVENT_STORE = Symbol('AUDIT_EVENT_STORE');
