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

/**
 * One audit event as the gateway or control plane emits it (already redacted). Version 1.
 * `eventId` is a UUIDv7: time-ordered and the job id, so a retried enqueue is a no-op.
 */
export const auditEventV1 = z.object({
  v: z.literal(1),
  eventId: uuid,
  tenantId: uuid,
  occurredAt: z.iso.datetime({ offset: true }),
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
  /** Arguments (or, for control-plane events, before/after) with secrets already redacted. */
  arguments: z.json().nullable(),
  traceId: z.string().max(64).nullable(),
  /** W3C traceparent of the emitting request, so the worker's span joins the same trace. */
  traceparent: z.string().max(60).nullable(),
});

export type AuditEventV1 = z.infer<typeof auditEventV1>;
