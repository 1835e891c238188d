import { computeAuditHash } from '@portcullis/audit/chain';
import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { Prisma, withTenant, type PortcullisPrismaClient, type TenantTransaction } from '@portcullis/data/db';
import { tenantId } from '@portcullis/shared/util-ids';
import { chainedFields } from './audit-row';
import type { AuditEventStore, AuditInsertResult } from './audit-event.store';

/** Rows per INSERT statement: 25 parameters each, well under Postgres' 65,535-parameter limit. */
const ROWS_PER_STATEMENT = 1_000;

/**
 * Stores audit events in Postgres, linked into each tenant's hash chain, a batch at a time.
 *
 * Per tenant in the batch, one transaction under that tenant's row-level-security context: lock the tenant's
 * chain head once (`INSERT … ON CONFLICT DO UPDATE … RETURNING` creates or locks it in one round trip), drop the
 * event ids already stored (retries, replays, a worker killed after commit but before acknowledging), number and
 * hash the rest in order, insert them with multi-row INSERTs, move the head. Concurrent batches of one tenant
 * serialise on the head row; different tenants proceed in parallel.
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
    const results = await Promise.all(
      [...byTenant].map(([tenant, tenantEvents]) =>
        withTenant(this.db, tenantId(tenant), (tx) => this.insertTenantBatch(tx, tenant, tenantEvents), {
          timeout: 30_000,
          maxWait: 10_000,
        }),
      ),
    );
    for (const result of results) {
      inserted += result.inserted;
      duplicates += result.duplicates;
    }
    return { inserted, duplicates };
  }

  private async insertTenantBatch(
    tx: TenantTransaction,
    tenant: string,
    events: readonly AuditEventV1[],
  ): Promise<AuditInsertResult> {
    const heads = await tx.$queryRaw<{ last_seq: bigint; last_hash: string | null }[]>`
      INSERT INTO audit_chain_heads (tenant_id, last_seq, updated_at)
      VALUES (${tenant}::uuid, 0, now())
      ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id
      RETURNING last_seq, last_hash`;
    const head = heads[0];
    if (!head) throw new Error('audit chain head missing after upsert');

    // Unique ids within the batch, first occurrence wins.
    const unique = new Map<string, AuditEventV1>();
    for (const event of events) if (!unique.has(event.eventId)) unique.set(event.eventId, event);
    const ids = [...unique.keys()];
    const existing = await tx.$queryRaw<{ id: string }[]>`
      SELECT id::text AS id FROM audit_events
      WHERE tenant_id = ${tenant}::uuid AND id IN (${Prisma.join(ids.map((id) => Prisma.sql`${id}::uuid`))})`;
    for (const { id } of existing) unique.delete(id);
    const fresh = [...unique.values()];
    const duplicates = events.length - fresh.length;
    if (fresh.length === 0) return { inserted: 0, duplicates };

    let seq = BigInt(head.last_seq);
    let prevHash = head.last_hash;
    const rows: Prisma.Sql[] = [];
    for (const event of fresh) {
      seq += 1n;
      const fields = chainedFields(event, seq);
      const hash = computeAuditHash(fields, prevHash);
      rows.push(Prisma.sql`(
        ${fields.id}::uuid, ${tenant}::uuid, ${seq}, ${new Date(fields.occurredAt)}::timestamptz,
        ${fields.kind}::audit_event_kind, ${fields.method}, ${fields.actorUserId}::uuid, ${fields.agentClientId}::uuid,
        ${fields.apiKeyId}::uuid, ${fields.mcpSessionId}, ${fields.upstreamId}::uuid, ${fields.tool},
        ${fields.targetType}, ${fields.targetId}, ${fields.decision}::audit_decision, ${fields.reason},
        ${fields.snapshotVersion}::int, ${fields.approvalId}::uuid, ${fields.latencyMs}::int,
        ${fields.arguments === null ? null : JSON.stringify(fields.arguments)}::jsonb, ${fields.outcome},
        ${fields.errorCode}, ${fields.traceId}, ${prevHash}, ${hash})`);
      prevHash = hash;
    }
    for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
      await tx.$executeRaw`
        INSERT INTO audit_events (id, tenant_id, seq, occurred_at, kind, method, actor_user_id, agent_client_id,
          api_key_id, mcp_session_id, upstream_id, tool, target_type, target_id, decision, reason, snapshot_version,
          approval_id, latency_ms, arguments, outcome, error_code, trace_id, prev_hash, hash)
        VALUES ${Prisma.join(rows.slice(i, i + ROWS_PER_STATEMENT))}`;
    }
    await tx.$executeRaw`
      UPDATE audit_chain_heads SET last_seq = ${seq}, last_hash = ${prevHash}, updated_at = now()
      WHERE tenant_id = ${tenant}::uuid`;
    return { inserted: fresh.length, duplicates };
  }
}
