import { AUDIT_HASH_VERSION, type AuditHashVersion, type ChainedAuditFields, type StoredChainLink } from '@portcullis/audit/chain';
import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { storableJson, storableText } from '@portcullis/shared/util-redact';

const storable = (text: string | null): string | null => (text === null ? null : storableText(text));

/**
 * The fields the chain hashes, as they will be stored (timestamps at millisecond precision, UTC), hashed with the
 * current version: `recordedAt` is the store's time of insert, which it reads from the database in the same
 * transaction. Free text is made storable here whatever the producer did (lone surrogates and NUL become U+FFFD):
 * Postgres refuses NUL, and a lone surrogate would be stored as U+FFFD while the hash was taken over the original,
 * failing verification later.
 */
export function chainedFields(event: AuditEventV1, seq: bigint, recordedAt: Date): ChainedAuditFields {
  return {
    id: event.eventId,
    tenantId: event.tenantId,
    seq: seq.toString(),
    occurredAt: new Date(event.occurredAt).toISOString(),
    kind: event.kind,
    method: storableText(event.method),
    actorUserId: event.actorUserId,
    agentClientId: event.agentClientId,
    apiKeyId: event.apiKeyId,
    mcpSessionId: storable(event.mcpSessionId),
    upstreamId: event.upstreamId,
    tool: storable(event.tool),
    targetType: storable(event.targetType),
    targetId: storable(event.targetId),
    decision: event.decision,
    reason: storable(event.reason),
    snapshotVersion: event.snapshotVersion,
    approvalId: event.approvalId,
    latencyMs: event.latencyMs,
    arguments: storableJson(event.arguments ?? null),
    outcome: event.outcome,
    errorCode: storable(event.errorCode),
    traceId: storable(event.traceId),
    recordedAt: recordedAt.toISOString(),
    hashVersion: AUDIT_HASH_VERSION,
  };
}

/** A row of `audit_events` as raw SQL returns it (snake_case columns). */
export interface AuditEventRow {
  id: string;
  tenant_id: string;
  seq: bigint | string;
  occurred_at: Date;
  recorded_at?: Date;
  kind: string;
  method: string;
  actor_user_id: string | null;
  agent_client_id: string | null;
  api_key_id: string | null;
  mcp_session_id: string | null;
  upstream_id: string | null;
  tool: string | null;
  target_type: string | null;
  target_id: string | null;
  decision: string | null;
  reason: string | null;
  snapshot_version: number | null;
  approval_id: string | null;
  latency_ms: number | null;
  arguments: unknown;
  outcome: string;
  error_code: string | null;
  trace_id: string | null;
  /** Absent in rows selected without it; such rows are read as version 1. */
  hash_version?: number;
  prev_hash: string | null;
  hash: string;
}

/** The column list matching AuditEventRow, for SELECTs. */
export const AUDIT_EVENT_COLUMNS = `id, tenant_id, seq, occurred_at, recorded_at, kind, method, actor_user_id, agent_client_id,
  api_key_id, mcp_session_id, upstream_id, tool, target_type, target_id, decision, reason, snapshot_version, approval_id,
  latency_ms, arguments, outcome, error_code, trace_id, hash_version, prev_hash, hash`;

export function linkFromRow(row: AuditEventRow): StoredChainLink {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    seq: row.seq.toString(),
    occurredAt: row.occurred_at.toISOString(),
    kind: row.kind,
    method: row.method,
    actorUserId: row.actor_user_id,
    agentClientId: row.agent_client_id,
    apiKeyId: row.api_key_id,
    mcpSessionId: row.mcp_session_id,
    upstreamId: row.upstream_id,
    tool: row.tool,
    targetType: row.target_type,
    targetId: row.target_id,
    decision: row.decision,
    reason: row.reason,
    snapshotVersion: row.snapshot_version,
    approvalId: row.approval_id,
    latencyMs: row.latency_ms,
    arguments: row.arguments ?? null,
    outcome: row.outcome,
    errorCode: row.error_code,
    traceId: row.trace_id,
    recordedAt: row.recorded_at?.toISOString() ?? null,
    hashVersion: (row.hash_version ?? 1) as AuditHashVersion,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}
