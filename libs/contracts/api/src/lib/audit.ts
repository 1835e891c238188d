import { z } from 'zod';

// Year 0000 is ISO 8601's 1 BC, which Postgres has no year for, and Postgres takes zone offsets up to ±15:59 only:
// either would fail in the database (a 500) rather than as the caller's mistake.
const isoTime = z.iso
  .datetime({ offset: true, error: 'must be an ISO 8601 date-time with a zone, e.g. 2026-12-01T00:00:00Z' })
  .refine((value) => !value.startsWith('0000'), 'must be in year 0001 or later')
  .refine((value) => Number(/[+-](\d{2}):?\d{2}$/.exec(value)?.[1] ?? 0) <= 15, 'must have a zone offset within ±15:59');

/**
 * What an auditor can filter audit events by. `from` is inclusive, `to` exclusive (occurred time). The same fields
 * select the rows of an export.
 */
const filterFields = {
  from: isoTime.optional(),
  to: isoTime.optional(),
  actorUserId: z.uuid().optional(),
  agentClientId: z.uuid().optional(),
  upstreamId: z.uuid().optional(),
  tool: z.string().min(1).max(300).optional(),
  method: z.string().min(1).max(200).optional(),
  decision: z.enum(['allow', 'deny', 'require_approval']).optional(),
  outcome: z.string().min(1).max(50).optional(),
};

const timeRangeInOrder = (value: { from?: string | undefined; to?: string | undefined }) =>
  value.from === undefined || value.to === undefined || Date.parse(value.from) < Date.parse(value.to);
const timeRangeIssue = { path: ['to'], message: 'must be after `from`' };

export const auditEventFilters = z.strictObject(filterFields).refine(timeRangeInOrder, timeRangeIssue);
export type AuditEventFilters = z.infer<typeof auditEventFilters>;

/** A chain sequence number as text (a bigint in the database; JSON numbers lose precision past 2^53). */
const sequenceNumber = z
  .string()
  .regex(/^\d{1,19}$/, 'a sequence number')
  // Postgres's bigint ends there: a larger one failed its cast in the query (a 500). (zod runs this after a failed
  // regex too: only digits are converted.)
  .refine((value) => !/^\d+$/.test(value) || BigInt(value) <= 9_223_372_036_854_775_807n, 'a sequence number (at most 9223372036854775807)');

/**
 * `GET /api/v1/tenants/:tenantId/audit/events`: filters plus a cursor page, newest first. Or, with `afterSeq`, the
 * events after that sequence number in chain order (oldest first): the way to follow the trail without missing one.
 * An event is stored when its request ends, possibly long after its `occurredAt` (a long call, a held approval, an
 * event replayed from a spool), so a poll by time misses late ones; sequence numbers are given in commit order.
 */
export const auditEventsQuery = z
  .strictObject({
    ...filterFields,
    cursor: z.string().max(512).optional(),
    afterSeq: sequenceNumber.optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
  })
  .refine(timeRangeInOrder, timeRangeIssue)
  .refine((value) => value.cursor === undefined || value.afterSeq === undefined, {
    path: ['afterSeq'],
    message: 'not with `cursor`: continue an afterSeq read with the last event\'s seq',
  });
export type AuditEventsQuery = z.infer<typeof auditEventsQuery>;

/** `GET .../audit/events.csv|.jsonl`: the filters of a small synchronous export (no cursor). */
export const auditEventsExportQuery = auditEventFilters;

export const auditEventResponse = z.object({
  id: z.string(),
  seq: z.string(),
  occurredAt: z.string(),
  recordedAt: z.string(),
  kind: z.string(),
  method: z.string(),
  actorUserId: z.string().nullable(),
  agentClientId: z.string().nullable(),
  apiKeyId: z.string().nullable(),
  mcpSessionId: z.string().nullable(),
  upstreamId: z.string().nullable(),
  tool: z.string().nullable(),
  targetType: z.string().nullable(),
  targetId: z.string().nullable(),
  decision: z.string().nullable(),
  reason: z.string().nullable(),
  snapshotVersion: z.number().nullable(),
  approvalId: z.string().nullable(),
  latencyMs: z.number().nullable(),
  arguments: z.unknown(),
  outcome: z.string(),
  errorCode: z.string().nullable(),
  traceId: z.string().nullable(),
  /** 1: `hash` leaves `recordedAt` out (events stored before version 2); 2: it covers it (docs/audit.md §3). */
  hashVersion: z.number().int(),
  prevHash: z.string().nullable(),
  hash: z.string(),
});
export type AuditEventResponse = z.infer<typeof auditEventResponse>;

export const auditChainProblem = z.enum([
  'hash_mismatch',
  'prev_hash_mismatch',
  'seq_gap',
  'head_mismatch',
  // With verification keys configured (AUDIT_VERIFY_KEYS_FILE): the signed anchors and the retention checkpoint.
  'anchor_mismatch',
  'anchor_invalid',
  'checkpoint_mismatch',
]);

/**
 * `GET .../audit/verify` query: where to continue (`afterSeq`: the `lastSeq` of an incomplete answer; absent: from the
 * retention checkpoint) and how many events at most this request checks.
 */
export const auditVerifyQuery = z.object({
  afterSeq: sequenceNumber.optional(),
  maxEvents: z.coerce.number().int().min(1).max(5_000_000).default(1_000_000),
});
export type AuditVerifyQuery = z.infer<typeof auditVerifyQuery>;

/**
 * `GET .../audit/verify`: the tenant's chain from its retention checkpoint (or `afterSeq`) to the head read when
 * verifying began. One request checks at most `maxEvents` events and runs for at most about ten seconds; `complete:
 * false` then says to continue with `afterSeq=lastSeq`.
 */
export const auditVerifyResponse = z.discriminatedUnion('ok', [
  z.object({
    ok: z.literal(true),
    /** True when the chain was checked up to the head; false: continue with `afterSeq=lastSeq`. */
    complete: z.boolean(),
    checked: z.number().int(),
    fromSeq: z.string(),
    fromHash: z.string().nullable(),
    lastSeq: z.string(),
    lastHash: z.string().nullable(),
    headSeq: z.string(),
    /**
     * With verification keys configured: the newest signed anchor this step checked (each valid, each naming its
     * event's hash), null when it met none. Absent without keys.
     */
    anchored: z.object({ seq: z.string(), hash: z.string(), signedAt: z.string(), keyId: z.string() }).nullable().optional(),
  }),
  z.object({
    ok: z.literal(false),
    checked: z.number().int(),
    brokenAt: z.object({ seq: z.string(), id: z.string().nullable(), problem: auditChainProblem }),
  }),
]);
export type AuditVerifyResponse = z.infer<typeof auditVerifyResponse>;

export const auditAnchorsQuery = z.strictObject({
  /** Anchors with a greater seq (an earlier page's `nextCursor`); absent: from the first. */
  afterSeq: sequenceNumber.optional(),
  limit: z.coerce.number().int().min(1).max(1_000).default(200),
});
export type AuditAnchorsQuery = z.infer<typeof auditAnchorsQuery>;

/**
 * `GET .../audit/anchors`: the tenant's signed chain heads in seq order (docs/audit.md, signed anchors), to keep outside
 * the database and to check with the audit worker's public key. `nextCursor`, when set, is the `afterSeq` of the next
 * page.
 */
export const auditAnchorResponse = z.object({
  tenantId: z.string(),
  seq: z.string(),
  hash: z.string(),
  signedAt: z.string(),
  keyId: z.string(),
  /** Ed25519 over the RFC 8785 canonical JSON of {v: 1, tenantId, seq, hash, signedAt, keyId}, base64url. */
  signature: z.string(),
});
export type AuditAnchorResponse = z.infer<typeof auditAnchorResponse>;

export const auditExportFormat = z.enum(['csv', 'jsonl']);

export const createAuditExportRequest = z.strictObject({
  format: auditExportFormat,
  filters: auditEventFilters.default({}),
});
export type CreateAuditExportRequest = z.input<typeof createAuditExportRequest>;
export type ParsedCreateAuditExportRequest = z.output<typeof createAuditExportRequest>;

export const auditExportResponse = z.object({
  id: z.string(),
  format: auditExportFormat,
  filters: z.record(z.string(), z.unknown()),
  status: z.enum(['queued', 'running', 'completed', 'failed', 'expired', 'cancelled']),
  rowCount: z.number().int().nullable(),
  sha256: z.string().nullable(),
  firstSeq: z.string().nullable(),
  lastSeq: z.string().nullable(),
  firstHash: z.string().nullable(),
  lastHash: z.string().nullable(),
  /** The manifest the worker wrote next to the file; `npm run audit:verify -- --export <file> --manifest <it>`. */
  manifest: z.record(z.string(), z.unknown()).nullable(),
  error: z.string().nullable(),
  requestedById: z.string().nullable(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  completedAt: z.string().nullable(),
  /** Where to fetch the file once completed. */
  downloadPath: z.string().nullable(),
});
export type AuditExportResponse = z.infer<typeof auditExportResponse>;
