import { createHash } from 'node:crypto';
import { isStackExhausted } from '@portcullis/shared/util-errors';
import { z } from 'zod';
import { AUDIT_JSON_MAX_DEPTH, AUDIT_JSON_TOO_DEEP, auditEventV1, type AuditEventV1 } from './audit-event';

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
  /** As received (for a v2 batch: the row decoded into an event object). */
  readonly raw: unknown;
  /** The event id if the payload has a usable one, for logs and dead letters. */
  readonly eventId: string | null;
  readonly error: string;
}

export interface ParsedAuditEventBatch {
  readonly valid: AuditEventV1[];
  readonly invalid: InvalidAuditEvent[];
  /** Every event of the batch in order, as event objects (a v2 batch's rows decoded), valid or not. */
  readonly events: unknown[];
}

/**
 * The fields of an event after `v`, in the schema's order: the columns of a v2 batch's rows. A v2 batch carries its
 * own `fields`, so a reader never depends on this order matching the writer's.
 */
export const AUDIT_EVENT_FIELDS: readonly (keyof AuditEventV1)[] = Object.freeze(
  (Object.keys(auditEventV1.shape) as (keyof AuditEventV1)[]).filter((key) => key !== 'v'),
);
const KNOWN_FIELDS: ReadonlySet<string> = new Set(AUDIT_EVENT_FIELDS);

/**
 * A batch of audit events in one job, version 2: the same events as v1 without repeating every key in every event
 * (`fields` names the columns once, each row holds one event's values in that order). About 40 % fewer bytes for
 * typical events: less to serialise on the gateway, to copy into Redis and to parse in the worker (ADR 0010).
 */
export const auditEventBatchV2 = z.object({
  v: z.literal(2),
  fields: z
    .array(z.string().max(100))
    .min(1)
    .max(200)
    .refine((fields) => new Set(fields).size === fields.length, 'field names must be distinct'),
  // Rows are checked one by one after decoding, so one bad row cannot void the others.
  rows: z.array(z.unknown()).min(1).max(AUDIT_BATCH_MAX_EVENTS),
});
export type AuditEventBatchV2 = z.infer<typeof auditEventBatchV2>;

/** Events as a v2 batch (1..AUDIT_BATCH_MAX_EVENTS of them, like v1). */
export function encodeAuditEventBatchV2(events: readonly AuditEventV1[]): AuditEventBatchV2 {
  const fields = AUDIT_EVENT_FIELDS;
  // Arrays grown by push stay "packed" in V8: JSON.stringify walks them on its fast path. Preallocated ones
  // (`new Array(n)`) are "holey" and take the slow, per-element lookup path (about a third slower for a batch).
  const rows: unknown[][] = [];
  for (const event of events) {
    const row: unknown[] = [];
    for (const field of fields) row.push(event[field]);
    rows.push(row);
  }
  return { v: 2, fields: fields as string[], rows };
}

/** What is wrong with a row's shape (not an array, or not one value per field), if anything. */
function rowProblem(fields: readonly string[], row: unknown): string | undefined {
  if (!Array.isArray(row)) return 'row: not an array';
  if (row.length !== fields.length) return `row: ${row.length} values for ${fields.length} fields`;
  return undefined;
}

/**
 * A row back into an event object (`v: 1`), or null when the row's shape is wrong (which then fails validation as an
 * event). Columns this version does not know are skipped (a newer writer's extra fields), so a name such as
 * `__proto__` never reaches the object.
 */
function decodeRow(fields: readonly string[], row: unknown): Record<string, unknown> | null {
  if (rowProblem(fields, row) !== undefined) return null;
  const values = row as unknown[];
  const event: Record<string, unknown> = { v: 1 };
  for (let column = 0; column < fields.length; column += 1) {
    const field = fields[column] as string;
    if (KNOWN_FIELDS.has(field)) event[field] = values[column];
  }
  return event;
}

interface BatchEvents {
  /** As event objects, in order (a v2 row decoded; a row of the wrong shape as received). */
  readonly events: unknown[];
  /** Why a v2 row could not be decoded, by position. */
  readonly rowProblems: ReadonlyMap<number, string>;
}

/** The events of a batch job's payload (v1 as they are, v2 rows decoded); throws if the envelope is wrong. */
function batchEvents(payload: unknown): BatchEvents {
  if ((payload as { v?: unknown } | null)?.v !== 2) return { events: auditEventBatchEnvelopeV1.parse(payload).events, rowProblems: new Map() };
  const { fields, rows } = auditEventBatchV2.parse(payload);
  const rowProblems = new Map<number, string>();
  const events = rows.map((row, index) => {
    const problem = rowProblem(fields, row);
    if (problem === undefined) return decodeRow(fields, row);
    rowProblems.set(index, problem);
    return row;
  });
  return { events, rowProblems };
}

/**
 * A batch job's payload, v1 or v2, as a v1 batch (what handlers receive). For the job contract; workers use
 * `parseAuditEventBatch`, which keeps the valid events of a batch that has invalid ones.
 */
export const auditEventBatch = z.preprocess((payload) => {
  if ((payload as { v?: unknown } | null)?.v !== 2) return payload;
  const parsed = auditEventBatchV2.safeParse(payload);
  // A bad v2 envelope is passed on as it is, to fail as a whole.
  return parsed.success ? { v: 1, events: parsed.data.rows.map((row) => decodeRow(parsed.data.fields, row)) } : payload;
}, auditEventBatchV1);

/**
 * Parses a batch job's payload (v1 or v2) event by event. Throws only if the envelope itself is wrong (unknown
 * version, no events, too many); invalid events are returned apart from the valid ones.
 */
export function parseAuditEventBatch(payload: unknown): ParsedAuditEventBatch {
  const { events, rowProblems } = batchEvents(payload);
  const valid: AuditEventV1[] = [];
  const invalid: InvalidAuditEvent[] = [];
  events.forEach((raw, index) => {
    const problem = rowProblems.get(index);
    if (problem !== undefined) {
      invalid.push({ index, raw, eventId: null, error: problem });
      return;
    }
    const result = validated(raw);
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
  return { valid, invalid, events };
}

/** Stands in for an event's `arguments` nested too deeply to validate (or store); the event itself is kept. */
export const ARGUMENTS_TOO_DEEP = Object.freeze({ unstorable: true, reason: 'nested too deeply to validate' });

/** Stands in for a part of an event's `arguments` nested deeper than AUDIT_JSON_MAX_DEPTH (the rest is kept). */
export const PART_TOO_DEEP = '[nested too deeply to store]';

/**
 * `value` with every array or object nested AUDIT_JSON_MAX_DEPTH levels or deeper replaced by PART_TOO_DEEP: the rest
 * of the arguments (and the result beside them) stay in the trail. Own `__proto__` keys stay own keys. Recurses at most
 * AUDIT_JSON_MAX_DEPTH levels.
 */
function withinDepth(value: unknown, depth: number): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (depth >= AUDIT_JSON_MAX_DEPTH) return PART_TOO_DEEP;
  if (Array.isArray(value)) return value.map((item: unknown) => withinDepth(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    Object.defineProperty(out, key, { value: withinDepth((value as Record<string, unknown>)[key], depth + 1), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Whether a validation failed on arguments nested deeper than AUDIT_JSON_MAX_DEPTH. */
function argumentsTooDeep(issues: readonly z.core.$ZodIssue[]): boolean {
  return issues.some((issue) => issue.code === 'custom' && issue.path[0] === 'arguments' && issue.params?.['auditJson'] === AUDIT_JSON_TOO_DEEP.auditJson);
}

/**
 * One event validated. Its `arguments` (JSON of any shape, checked as they are: never copied) may nest at most
 * AUDIT_JSON_MAX_DEPTH levels, which the worker's copies and hashing handle well within the stack. Parts nested deeper
 * are replaced by PART_TOO_DEEP and the rest kept: one deep sibling took the whole arguments (and the result) out of
 * the trail, so a call's real arguments could be hidden beside a 2 KB padding (found in review). Deep enough to
 * exhaust the stack here, the event is kept with a note in place of its arguments: a call recorded, not a batch (all
 * tenants' events of a flush) thrown out.
 */
function validated(raw: unknown): ReturnType<typeof auditEventV1.safeParse> {
  let result: ReturnType<typeof auditEventV1.safeParse>;
  try {
    result = auditEventV1.safeParse(raw);
  } catch (error) {
    if (!isStackExhausted(error) || typeof raw !== 'object' || raw === null) throw error;
    return auditEventV1.safeParse({ ...raw, arguments: ARGUMENTS_TOO_DEEP });
  }
  if (result.success || typeof raw !== 'object' || raw === null || !argumentsTooDeep(result.error.issues)) return result;
  return auditEventV1.safeParse({ ...raw, arguments: withinDepth((raw as { arguments?: unknown }).arguments, 0) });
}

/**
 * One event (the payload of an `audit.event.ingest` job), validated as the events of a batch are: arguments nested too
 * deeply are kept with PART_TOO_DEEP in place of the deeper parts. Throws the validation error of an invalid event.
 */
export function parseAuditEvent(raw: unknown): AuditEventV1 {
  const result = validated(raw);
  if (!result.success) throw result.error;
  return result.data;
}

/**
 * The job id of a batch: `audit-batch-` and 128 bits of SHA-256 over its event ids in order. The same events in the
 * same order give the same id (a resent flush is one job); any other batch, another id.
 */
export function auditBatchJobId(eventIds: readonly string[]): string {
  const digest = createHash('sha256').update(eventIds.join('\n')).digest('hex').slice(0, 32);
  return `audit-batch-${digest}`;
}
