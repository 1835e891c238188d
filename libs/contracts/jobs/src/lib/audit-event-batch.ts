import { createHash } from 'node:crypto';
import { z } from 'zod';
import { auditEventV1, type AuditEventV1 } from './audit-event';

/** Most events one `audit.events.ingest` job may carry (producers also bound a job's bytes). */
export const AUDIT_BATCH_MAX_EVENTS = 5_000;

/**
 * A batch of audit events in one job (`audit.events.ingest`), version 1. One BullMQ job per emitter flush instead of
 * one per event: the queue's per-job cost is paid once per batch. Per-event idempotency is unchanged (the event id is
 * unique in Postgres); the job id is derived from the event ids, so resending the same batch is a no-op in Redis too.
 */
export const auditEventBatchV1 = z.object({
  v: z.literal(1),
  events: z.array(auditEventV1).min(1).max(AUDIT_BATCH_MAX_EVENTS),
});
export type AuditEventBatchV1 = z.infer<typeof auditEventBatchV1>;

/** The batch without looking inside its events: a worker validates events one by one, so one bad event cannot void the rest. */
const auditEventBatchEnvelopeV1 = z.object({
  v: z.literal(1),
  events: z.array(z.unknown()).min(1).max(AUDIT_BATCH_MAX_EVENTS),
});

export interface InvalidAuditEvent {
  /** Position in the batch. */
  readonly index: number;
  /** As received. */
  readonly raw: unknown;
  /** The event id if the payload has a usable one, for logs and dead letters. */
  readonly eventId: string | null;
  readonly error: string;
}

export interface ParsedAuditEventBatch {
  readonly valid: AuditEventV1[];
  readonly invalid: InvalidAuditEvent[];
}

/**
 * Parses a batch job's payload event by event. Throws only if the envelope itself is wrong (not a v1 batch, no
 * events, too many); invalid events are returned apart from the valid ones.
 */
export function parseAuditEventBatch(payload: unknown): ParsedAuditEventBatch {
  const envelope = auditEventBatchEnvelopeV1.parse(payload);
  const valid: AuditEventV1[] = [];
  const invalid: InvalidAuditEvent[] = [];
  envelope.events.forEach((raw, index) => {
    const result = auditEventV1.safeParse(raw);
    if (result.success) {
      valid.push(result.data);
      return;
    }
    const id = (raw as { eventId?: unknown } | null)?.eventId;
    invalid.push({
      index,
      raw,
      eventId: typeof id === 'string' && id.length <= 64 ? id : null,
      error: result.error.issues
        .slice(0, 3)
        .map((issue) => `${issue.path.join('.') || '(event)'}: ${issue.message}`)
        .join('; '),
    });
  });
  return { valid, invalid };
}

/**
 * The job id of a batch: `audit-batch-` and 128 bits of SHA-256 over its event ids in order. The same events in the
 * same order give the same id (a resent flush is one job); any other batch, another id.
 */
export function auditBatchJobId(eventIds: readonly string[]): string {
  const digest = createHash('sha256').update(eventIds.join('\n')).digest('hex').slice(0, 32);
  return `audit-batch-${digest}`;
}
