import { parseAuditEvent, type AuditEventV1 } from '@portcullis/contracts/jobs';
import type { SystemPrismaClient } from '@portcullis/data/db';
import { AuditStoreError, insertIsolatingFailures, type AuditEventStore } from './audit-event.store';

export interface DrainAuditOutboxOptions {
  /**
   * Only rows at least this old: the control plane deletes its own row right after enqueueing the event, and a row it
   * is still handling is not taken from it (storing it twice would be harmless, only wasted work).
   */
  readonly olderThanMs: number;
  /** Rows taken per transaction (default 500). */
  readonly limit?: number;
  /** Rows not to take (found invalid by an earlier call), so that they cannot hold back the rows behind them. */
  readonly exclude?: readonly string[];
  /** Only this tenant's rows (an operator looking at one tenant; specs that share a database). */
  readonly tenantId?: string;
}

export interface DrainAuditOutboxResult {
  /** Events stored (or found stored already) and their rows deleted. */
  readonly stored: number;
  /**
   * Rows left in place, named for the operator: their text is not a valid event, or the store refused the event, alone,
   * for other than a passing cause (events of the same tenant taken with it are stored). A caller passes them as
   * `exclude` to the next call, so they hold back no other row. Rows whose events failed for a passing cause (the
   * database busy or away) stay too, unnamed; when nothing else was stored or named, the call throws that error.
   */
  readonly invalid: readonly string[];
}

interface OutboxRow {
  readonly id: string;
  readonly event: string;
}

/**
 * Stores the control-plane audit events left in `audit_outbox` (ADR 0010, decision 8) and deletes their rows: those
 * whose control plane could not enqueue them (Redis down) or died before it could. Cross-tenant, as
 * `portcullis_system`. The rows are locked (`FOR UPDATE SKIP LOCKED`) for the transaction, so two workers take
 * different rows; the rows go only once `store` has committed their events, and storing an event id that is stored
 * already is a no-op, so a crash in between costs a second, harmless insert. Without Redis: it never touches the queue.
 */
export async function drainAuditOutbox(db: SystemPrismaClient, store: AuditEventStore, options: DrainAuditOutboxOptions): Promise<DrainAuditOutboxResult> {
  const limit = options.limit ?? 500;
  return db.$transaction(
    async (tx) => {
      const rows = await tx.$queryRawUnsafe<OutboxRow[]>(
        `SELECT id::text AS id, event FROM audit_outbox
         WHERE created_at <= now() - make_interval(secs => $1::double precision / 1000) AND NOT (id = ANY($3::uuid[]))
           AND ($4::uuid IS NULL OR tenant_id = $4::uuid)
         ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED`,
        options.olderThanMs,
        limit,
        options.exclude ?? [],
        options.tenantId ?? null,
      );
      const taken: { readonly id: string; readonly event: AuditEventV1 }[] = [];
      const invalid: string[] = [];
      for (const row of rows) {
        const event = parsedRow(row);
        if (event === undefined) invalid.push(row.id);
        else taken.push({ id: row.id, event });
      }
      if (taken.length === 0) return { stored: 0, invalid };
      // The store commits one transaction per tenant, so one event it refuses fails its tenant's whole share of the
      // rows: those are split and retried (in order) until the refused events are alone. Only they stay, named; the
      // rest are stored and their rows go. An event that failed for a passing cause (the database busy or away) stays
      // too, unnamed, for the next drain.
      const done: string[] = [];
      let passing: unknown;
      await insertIsolatingFailures(store, taken, (row) => row.event, {
        stored: (row) => done.push(row.id),
        failed: (row, error) => {
          if (error instanceof AuditStoreError && !error.transient) invalid.push(row.id);
          else passing ??= error;
        },
      });
      // Nothing got anywhere, and not for any event's fault: the caller hears why (every row stays).
      if (passing !== undefined && done.length === 0 && invalid.length === 0) throw passing;
      await tx.$executeRawUnsafe('DELETE FROM audit_outbox WHERE id = ANY($1::uuid[])', done);
      return { stored: done.length, invalid };
    },
    // The store writes in transactions of its own while these rows stay locked.
    { timeout: 120_000, maxWait: 10_000 },
  );
}

/** The row's event, if its text is one and it is the event the row says (its id). */
function parsedRow(row: OutboxRow): AuditEventV1 | undefined {
  try {
    const event = parseAuditEvent(JSON.parse(row.event));
    return event.eventId === row.id ? event : undefined;
  } catch {
    return undefined;
  }
}
