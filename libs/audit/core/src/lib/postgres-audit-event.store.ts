import { AUDIT_HASH_VERSION, computeAuditHash } from '@portcullis/audit/chain';
import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { withTenant, type PortcullisPrismaClient, type TenantTransaction } from '@portcullis/data/db';
import { tenantId } from '@portcullis/shared/util-ids';
import { isLostDatabaseConnection } from '@portcullis/shared/util-errors';
import { chainedFields } from './audit-row';
import { AuditStoreError, type AuditEventStore, type AuditInsertResult } from './audit-event.store';

/** Prisma error codes that mean "the database, not the data": unreachable, timed out, pool or transaction gone. */
const TRANSIENT_PRISMA_CODES = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2024', 'P2028', 'P2034']);
/** SQLSTATE classes likewise: connection exception, transaction rollback, insufficient resources, operator
 * intervention, system error. */
const TRANSIENT_SQLSTATE_CLASSES = new Set(['08', '40', '53', '57', '58']);
const TRANSIENT_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND']);

/** Raised inside a tenant's transaction to roll it back when an optimistic insert met already-stored ids. */
class AlreadyStored extends Error {}

/** Whether a failed insert is the database's fault rather than an event's (so splitting the batch cannot help). */
export function isTransientStoreError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  // The connection lost or none to be had (pg's plain errors, no code): waited out like a refused connection.
  if (isLostDatabaseConnection(error)) return true;
  const e = error as {
    code?: unknown;
    meta?: { driverAdapterError?: { cause?: { originalCode?: unknown } } };
  };
  if (typeof e.code === 'string' && (TRANSIENT_PRISMA_CODES.has(e.code) || TRANSIENT_NODE_CODES.has(e.code)))
    return true;
  const sqlState = e.meta?.driverAdapterError?.cause?.originalCode;
  return typeof sqlState === 'string' && TRANSIENT_SQLSTATE_CLASSES.has(sqlState.slice(0, 2));
}

/**
 * Stores audit events in Postgres, linked into each tenant's hash chain, a batch at a time.
 *
 * Per tenant in the batch, one transaction under that tenant's row-level-security context: lock the tenant's
 * chain head once (`INSERT … ON CONFLICT DO UPDATE … RETURNING` creates or locks it in one round trip), drop the
 * event ids already stored (retries, replays, a worker killed after commit but before acknowledging), number and
 * hash the rest in order, insert them with one `INSERT … SELECT FROM unnest(column arrays)`, move the head.
 * Concurrent batches of one tenant serialise on the head row (the upsert waits for the other transaction and then
 * returns the head it committed); different tenants proceed in parallel. Then the API keys the events name get their
 * `last_used_at` (`touchApiKeys`), in the same transaction.
 *
 * All or nothing per tenant, not per call: if a tenant's transaction fails, the others still commit, and the error
 * (`AuditStoreError`) names the failed events and whether the failure is transient.
 */
export class PostgresAuditEventStore implements AuditEventStore {
  constructor(private readonly db: PortcullisPrismaClient) {}

  async insert(events: readonly AuditEventV1[]): Promise<AuditInsertResult> {
    const byTenant = new Map<string, AuditEventV1[]>();
    for (const event of events) {
      const list = byTenant.get(event.tenantId);
      if (list) list.push(event);
      else byTenant.set(event.tenantId, [event]);
    }
    let inserted = 0;
    let duplicates = 0;
    const tenants = [...byTenant];
    const results = await Promise.allSettled(
      tenants.map(([tenant, tenantEvents]) => this.insertTenant(tenant, tenantEvents)),
    );
    const failed: AuditEventV1[] = [];
    const errors: unknown[] = [];
    results.forEach((result, i) => {
      if (result.status === 'fulfilled') {
        inserted += result.value.inserted;
        duplicates += result.value.duplicates;
      } else {
        failed.push(...(tenants[i]?.[1] ?? []));
        errors.push(result.reason);
      }
    });
    if (errors.length > 0) {
      const first = errors[0];
      const reason = first instanceof Error ? first.message.trim().split('\n').at(-1) : String(first);
      throw new AuditStoreError(
        `${failed.length} of ${events.length} audit event(s) not stored: ${reason}`,
        failed,
        errors.every(isTransientStoreError),
        { cause: first },
      );
    }
    return { inserted, duplicates };
  }

  /**
   * Optimistically first: no lookup of already-stored ids, the insert skips conflicting ids and reports how many it
   * wrote. Fewer than expected means some were already stored (a redelivery, a replay): that transaction is rolled
   * back (its numbering would have gaps) and the batch is stored again, this time looking them up first.
   */
  private async insertTenant(tenant: string, events: readonly AuditEventV1[]): Promise<AuditInsertResult> {
    const options = { timeout: 30_000, maxWait: 10_000 };
    try {
      return await withTenant(
        this.db,
        tenantId(tenant),
        (tx) => this.insertTenantBatch(tx, tenant, events, false),
        options,
      );
    } catch (error) {
      if (!(error instanceof AlreadyStored)) throw error;
      return withTenant(
        this.db,
        tenantId(tenant),
        (tx) => this.insertTenantBatch(tx, tenant, events, true),
        options,
      );
    }
  }

  private async insertTenantBatch(
    tx: TenantTransaction,
    tenant: string,
    events: readonly AuditEventV1[],
    lookUpStored: boolean,
  ): Promise<AuditInsertResult> {
    // The batch's recorded_at is the database's clock (the transaction's start, as the column's default was), to the
    // millisecond: the hash covers it as written.
    const heads = await tx.$queryRaw<{ last_seq: bigint; last_hash: string | null; recorded_at: Date }[]>`
      INSERT INTO audit_chain_heads (tenant_id, last_seq, updated_at)
      VALUES (${tenant}::uuid, 0, now())
      ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id
      RETURNING last_seq, last_hash, date_trunc('milliseconds', now()) AS recorded_at`;
    const head = heads[0];
    if (!head) throw new Error('audit chain head missing after upsert');

    // Unique ids within the batch, first occurrence wins.
    const unique = new Map<string, AuditEventV1>();
    for (const event of events) if (!unique.has(event.eventId)) unique.set(event.eventId, event);
    if (lookUpStored) {
      const ids = [...unique.keys()];
      const existing = await tx.$queryRaw<{ id: string }[]>`
        SELECT id::text AS id FROM audit_events WHERE tenant_id = ${tenant}::uuid AND id = ANY(${ids}::uuid[])`;
      for (const { id } of existing) unique.delete(id);
    }
    const fresh = [...unique.values()];
    const duplicates = events.length - fresh.length;
    if (fresh.length === 0) return { inserted: 0, duplicates };

    // Column arrays, one parameter each, expanded by unnest(): a batch of any size is one statement with a parameter
    // per column (cheap to bind, unlike thousands of scalar parameters).
    const cols = {
      id: [] as string[],
      seq: [] as string[],
      occurredAt: [] as string[],
      recordedAt: [] as string[],
      kind: [] as string[],
      method: [] as string[],
      actorUserId: [] as (string | null)[],
      agentClientId: [] as (string | null)[],
      apiKeyId: [] as (string | null)[],
      mcpSessionId: [] as (string | null)[],
      upstreamId: [] as (string | null)[],
      tool: [] as (string | null)[],
      targetType: [] as (string | null)[],
      targetId: [] as (string | null)[],
      decision: [] as (string | null)[],
      reason: [] as (string | null)[],
      snapshotVersion: [] as (number | null)[],
      approvalId: [] as (string | null)[],
      latencyMs: [] as (number | null)[],
      arguments: [] as (string | null)[],
      outcome: [] as string[],
      errorCode: [] as (string | null)[],
      traceId: [] as (string | null)[],
      prevHash: [] as (string | null)[],
      hash: [] as string[],
    };
    let seq = BigInt(head.last_seq);
    let prevHash = head.last_hash;
    // Per API key the gateway's events name: when it was last used, for `touchApiKeys`. Made at the first one.
    let keysUsed: Map<string, string> | undefined;
    for (const event of fresh) {
      seq += 1n;
      const f = chainedFields(event, seq, head.recorded_at);
      if (f.apiKeyId !== null && f.kind === 'mcp') {
        // ISO texts of years 0001-9999 in UTC (`chainedFields`): their order is the instants'.
        keysUsed ??= new Map();
        const latest = keysUsed.get(f.apiKeyId);
        if (latest === undefined || f.occurredAt > latest) keysUsed.set(f.apiKeyId, f.occurredAt);
      }
      const hash = computeAuditHash(f, prevHash);
      cols.id.push(f.id);
      cols.seq.push(f.seq);
      cols.occurredAt.push(f.occurredAt);
      cols.recordedAt.push(f.recordedAt as string);
      cols.kind.push(f.kind);
      cols.method.push(f.method);
      cols.actorUserId.push(f.actorUserId);
      cols.agentClientId.push(f.agentClientId);
      cols.apiKeyId.push(f.apiKeyId);
      cols.mcpSessionId.push(f.mcpSessionId);
      cols.upstreamId.push(f.upstreamId);
      cols.tool.push(f.tool);
      cols.targetType.push(f.targetType);
      cols.targetId.push(f.targetId);
      cols.decision.push(f.decision);
      cols.reason.push(f.reason);
      cols.snapshotVersion.push(f.snapshotVersion);
      cols.approvalId.push(f.approvalId);
      cols.latencyMs.push(f.latencyMs);
      cols.arguments.push(f.arguments === null ? null : JSON.stringify(f.arguments));
      cols.outcome.push(f.outcome);
      cols.errorCode.push(f.errorCode);
      cols.traceId.push(f.traceId);
      cols.prevHash.push(prevHash);
      cols.hash.push(hash);
      prevHash = hash;
    }
    // One statement: insert the rows (skipping ids stored meanwhile) and move the head, under the head's lock.
    const written = await tx.$queryRaw<{ inserted: number }[]>`
      WITH inserted AS (
      INSERT INTO audit_events (id, tenant_id, seq, occurred_at, recorded_at, kind, method, actor_user_id,
        agent_client_id, api_key_id, mcp_session_id, upstream_id, tool, target_type, target_id, decision, reason,
        snapshot_version, approval_id, latency_ms, arguments, outcome, error_code, trace_id, hash_version, prev_hash, hash)
      SELECT id, ${tenant}::uuid, seq, occurred_at, recorded_at, kind, method, actor_user_id, agent_client_id,
        api_key_id, mcp_session_id, upstream_id, tool, target_type, target_id, decision, reason, snapshot_version,
        approval_id, latency_ms, arguments, outcome, error_code, trace_id, ${AUDIT_HASH_VERSION}::smallint, prev_hash, hash
      FROM unnest(
        ${cols.id}::uuid[], ${cols.seq}::bigint[], ${cols.occurredAt}::timestamptz[], ${cols.recordedAt}::timestamptz[],
        ${cols.kind}::audit_event_kind[],
        ${cols.method}::text[], ${cols.actorUserId}::uuid[], ${cols.agentClientId}::uuid[], ${cols.apiKeyId}::uuid[],
        ${cols.mcpSessionId}::text[], ${cols.upstreamId}::uuid[], ${cols.tool}::text[], ${cols.targetType}::text[],
        ${cols.targetId}::text[], ${cols.decision}::audit_decision[], ${cols.reason}::text[],
        ${cols.snapshotVersion}::int[], ${cols.approvalId}::uuid[], ${cols.latencyMs}::int[], ${cols.arguments}::jsonb[],
        ${cols.outcome}::text[], ${cols.errorCode}::text[], ${cols.traceId}::text[], ${cols.prevHash}::text[],
        ${cols.hash}::text[]
      ) AS t(id, seq, occurred_at, recorded_at, kind, method, actor_user_id, agent_client_id, api_key_id, mcp_session_id,
        upstream_id, tool, target_type, target_id, decision, reason, snapshot_version, approval_id, latency_ms,
        arguments, outcome, error_code, trace_id, prev_hash, hash)
      ON CONFLICT (id) DO NOTHING
      RETURNING 1)
      UPDATE audit_chain_heads SET last_seq = ${seq}, last_hash = ${prevHash}, updated_at = now()
      WHERE tenant_id = ${tenant}::uuid
      RETURNING (SELECT count(*) FROM inserted)::int AS inserted`;
    if (written[0]?.inserted !== fresh.length) {
      // Some ids were already stored: the numbering above has gaps. Roll back; the caller redoes it with a lookup.
      if (!lookUpStored) throw new AlreadyStored();
      throw new Error('audit event id(s) already stored for another tenant');
    }
    if (keysUsed !== undefined) await this.touchApiKeys(tx, tenant, keysUsed);
    return { inserted: fresh.length, duplicates };
  }

  /**
   * Moves `api_keys.last_used_at` of the tenant's keys to when the batch's events last used them: never backwards, never
   * past now, and only by a minute or more, so a busy key's row is written about once a minute, not per batch. The
   * gateway writes nothing per request; this lags its audit flush and the batcher. Only `mcp` events count as use
   * (control-plane events record a person's change, never a key). A key deleted meanwhile, or another tenant's, is
   * simply not matched (tenant_id in the condition, and RLS).
   *
   * In the events' transaction, after their insert, under the chain head's lock: one statement, no extra transaction
   * (a separate best-effort one after commit would cost a round trip per batch more, for no safety gained). It must
   * not cost the events, and does not: `SKIP LOCKED` leaves a key whose row another transaction holds (the control
   * plane revoking it or deleting its agent client; no control-plane transaction takes a chain head) to a later
   * batch, so it never waits for a lock while holding the head and cannot take part in a deadlock (the rows it does
   * lock, it locks in id order). Its inputs are UUIDs and timestamps the contract validated, so what is left to fail
   * is the database itself (connection lost, timeout: transient), which would fail the events' commit as well: they
   * are rolled back and the worker retries them, never dead-letters them for it.
   */
  private async touchApiKeys(
    tx: TenantTransaction,
    tenant: string,
    keysUsed: ReadonlyMap<string, string>,
  ): Promise<void> {
    const ids = [...keysUsed.keys()];
    const ats = [...keysUsed.values()];
    await tx.$executeRaw`
      WITH due AS (
        SELECT k.id, used.at FROM api_keys k
        JOIN (SELECT id, least(at, now()) AS at FROM unnest(${ids}::uuid[], ${ats}::timestamptz[]) AS u(id, at)) AS used
          ON used.id = k.id
        WHERE k.tenant_id = ${tenant}::uuid AND (k.last_used_at IS NULL OR k.last_used_at <= used.at - interval '1 minute')
        ORDER BY k.id
        FOR NO KEY UPDATE OF k SKIP LOCKED)
      UPDATE api_keys k SET last_used_at = due.at FROM due WHERE k.id = due.id AND k.tenant_id = ${tenant}::uuid`;
  }
}
