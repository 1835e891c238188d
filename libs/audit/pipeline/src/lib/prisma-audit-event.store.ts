import { computeAuditHash, type ChainedAuditFields } from '@portcullis/audit/chain';
import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { Prisma, withTenant, type PortcullisPrismaClient, type TenantTransaction } from '@portcullis/data/db';
import { tenantId } from '@portcullis/shared/util-ids';
import type { AuditEventStore } from './audit-event.store';

/**
 * Stores audit events in Postgres, each linked into its tenant's hash chain. Per event: lock the tenant's
 * chain head, skip the event if its id is already stored (idempotent retries and replays), otherwise
 * insert it with the next sequence number and move the head — all in one transaction under the tenant's
 * row-level-security context.
 */
export class PrismaAuditEventStore implements AuditEventStore {
  constructor(private readonly db: PortcullisPrismaClient) {}

  async insert(events: readonly AuditEventV1[]): Promise<{ inserted: number }> {
    let inserted = 0;
    for (const event of events) {
      const tenant = tenantId(event.tenantId);
      const stored = await withTenant(this.db, tenant, (tx) => this.insertOne(tx, event));
      if (stored) inserted += 1;
    }
    return { inserted };
  }

  private async insertOne(tx: TenantTransaction, event: AuditEventV1): Promise<boolean> {
    await tx.$executeRaw`
      INSERT INTO audit_chain_heads (tenant_id, last_seq, updated_at)
      VALUES (${event.tenantId}::uuid, 0, now())
      ON CONFLICT (tenant_id) DO NOTHING`;
    const heads = await tx.$queryRaw<{ last_seq: bigint; last_hash: string | null }[]>`
      SELECT last_seq, last_hash FROM audit_chain_heads WHERE tenant_id = ${event.tenantId}::uuid FOR UPDATE`;
    const head = heads[0];
    if (!head) throw new Error('audit chain head missing after upsert');

    const existing = await tx.auditEvent.findFirst({
      where: { tenantId: event.tenantId, id: event.eventId },
      select: { id: true },
    });
    if (existing) return false;

    const seq = BigInt(head.last_seq) + 1n;
    const occurredAt = new Date(event.occurredAt);
    const fields: ChainedAuditFields = {
      id: event.eventId,
      tenantId: event.tenantId,
      seq: seq.toString(),
      occurredAt: occurredAt.toISOString(),
      kind: event.kind,
      method: event.method,
      actorUserId: event.actorUserId,
      agentClientId: event.agentClientId,
      apiKeyId: event.apiKeyId,
      mcpSessionId: event.mcpSessionId,
      upstreamId: event.upstreamId,
      tool: event.tool,
      targetType: event.targetType,
      targetId: event.targetId,
      decision: event.decision,
      reason: event.reason,
      snapshotVersion: event.snapshotVersion,
      approvalId: event.approvalId,
      latencyMs: event.latencyMs,
      arguments: event.arguments,
      outcome: event.outcome,
      errorCode: event.errorCode,
      traceId: event.traceId,
    };
    const hash = computeAuditHash(fields, head.last_hash);
    await tx.auditEvent.create({
      data: {
        ...fields,
        seq,
        occurredAt,
        kind: event.kind,
        decision: event.decision,
        arguments: event.arguments === null ? Prisma.JsonNull : (event.arguments as Prisma.InputJsonValue),
        prevHash: head.last_hash,
        hash,
      },
    });
    await tx.$executeRaw`
      UPDATE audit_chain_heads SET last_seq = ${seq}, last_hash = ${hash}, updated_at = now()
      WHERE tenant_id = ${event.tenantId}::uuid`;
    return true;
  }
}
