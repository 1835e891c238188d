import { z } from 'zod';

/** What policy decided; null where no policy applies (initialize, ping, control-plane changes). */
export const auditDecision = z.enum(['allow', 'deny', 'require_approval']);
export const auditOutcome = z.enum(['ok', 'error', 'denied', 'rate_limited', 'timeout', 'cancelled', 'pending_approval']);
export const auditKind = z.enum(['mcp', 'control_plane']);

/**
 * A UUID in lower case, whatever case it came in: Postgres hands `uuid` columns back in lower case, and the hash chain
 * is taken over what was sent and checked over what is read back, so an id in upper case would break the chain for
 * good (and defeat the duplicate lookup by id).
 */
const uuid = z.uuid().transform((value) => value.toLowerCase());
/** What an `integer` column holds: a larger value would fail the insert (and the event with it) after validation. */
const int4 = z.number().int().nonnegative().max(2_147_483_647);

/** The instants a `timestamptz` column takes and gives back as an ISO text of four-digit year: 0001-01-01 to 9999. */
const EARLIEST_OCCURRED_AT_MS = Date.parse('0001-01-01T00:00:00.000Z');
const LATEST_OCCURRED_AT_MS = Date.parse('9999-12-31T23:59:59.999Z');
/**
 * An ISO date-time whose instant, in UTC, lies in years 1 to 9999. `z.iso.datetime` alone takes year 0000 (which
 * Postgres refuses as out of range: there is no year 0) and offsets that carry year 0001 or 9999 across the edge; such
 * an event passed validation and then failed its insert, for good, in the worker (dead-lettered only after every
 * retry) or in the outbox drain. Refused here, it is an invalid event: dead-lettered at once, or left named.
 */
const occurredAt = z.iso.datetime({ offset: true }).refine(
  (value) => {
    const ms = Date.parse(value);
    return ms >= EARLIEST_OCCURRED_AT_MS && ms <= LATEST_OCCURRED_AT_MS;
  },
  { message: 'occurredAt must lie between years 0001 and 9999 (UTC)' },
);

/** How many levels of arrays and objects an event's `arguments` may nest: deeper parts the worker stores as PART_TOO_DEEP. */
export const AUDIT_JSON_MAX_DEPTH = 1_000;
/** The `params` of the issue an event's `arguments` nested deeper than AUDIT_JSON_MAX_DEPTH raise. */
export const AUDIT_JSON_TOO_DEEP = Object.freeze({ auditJson: 'too_deep' });

/**
 * What keeps `value` from being a JSON value (null, a boolean, a string, a finite number, or an array or plain object
 * of them) nested at most AUDIT_JSON_MAX_DEPTH levels, if anything. Walks it without copying anything.
 */
function jsonProblem(value: unknown, depth: number): 'not JSON' | 'too deep' | undefined {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : 'not JSON';
  if (typeof value !== 'object') return 'not JSON';
  if (depth >= AUDIT_JSON_MAX_DEPTH) return 'too deep';
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index += 1) {
      const problem = jsonProblem(value[index], depth + 1);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return 'not JSON';
  for (const key of Object.keys(value)) {
    const problem = jsonProblem((value as Record<string, unknown>)[key], depth + 1);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

/**
 * A JSON value from an agent, an upstream or a control-plane change, passed on as it came: checked, never rebuilt.
 * `z.json()` rebuilds objects by assignment, which turns an own `__proto__` key (JSON.parse makes one, the gateway
 * forwards it to the upstream, redaction keeps it) into a prototype and drops it, so the stored and hashed row
 * recorded less than the call carried. Passing the value on also leaves nothing that could set a prototype.
 */
const auditJson = z.custom<z.core.util.JSONType>().superRefine((value, ctx) => {
  const problem = jsonProblem(value, 0);
  if (problem === 'too deep') {
    ctx.addIssue({ code: 'custom', message: `nested deeper than ${AUDIT_JSON_MAX_DEPTH} levels`, params: AUDIT_JSON_TOO_DEEP });
  } else if (problem !== undefined) ctx.addIssue({ code: 'custom', message: 'not a JSON value' });
});

/**
 * One audit event as the gateway or control plane emits it (already redacted). Version 1.
 * `eventId` is a UUIDv7: time-ordered and the job id, so a retried enqueue is a no-op.
 */
export const auditEventV1 = z.object({
  v: z.literal(1),
  eventId: uuid,
  tenantId: uuid,
  occurredAt,
  kind: auditKind,
  method: z.string().min(1).max(200),
  actorUserId: uuid.nullable(),
  agentClientId: uuid.nullable(),
  apiKeyId: uuid.nullable(),
  mcpSessionId: z.string().max(200).nullable(),
  upstreamId: uuid.nullable(),
  tool: z.string().max(300).nullable(),
  /** Control-plane events: what was acted on (`policy`, `upstream`...) and its id. */
  targetType: z.string().max(100).nullable(),
  targetId: z.string().max(200).nullable(),
  decision: auditDecision.nullable(),
  reason: z.string().max(2_000).nullable(),
  snapshotVersion: int4.nullable(),
  approvalId: uuid.nullable(),
  latencyMs: int4.nullable(),
  outcome: auditOutcome,
  errorCode: z.string().max(100).nullable(),
  /**
   * Arguments and result (or, for control-plane events, before/after) with secrets already redacted: the only part of an
   * event that holds JSON from outside, validated as it is (`auditJson`), never copied.
   */
  arguments: auditJson.nullable(),
  traceId: z.string().max(64).nullable(),
  /** W3C traceparent of the emitting request, so the worker's span joins the same trace. */
  traceparent: z.string().max(60).nullable(),
});

export type AuditEventV1 = z.infer<typeof auditEventV1>;
