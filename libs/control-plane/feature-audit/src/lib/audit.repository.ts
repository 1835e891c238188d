import { Injectable } from '@nestjs/common';
import type { AuditEventFilters } from '@portcullis/contracts/api';
import type { Prisma, TenantTransaction } from '@portcullis/data/db';
import type { TenantId } from '@portcullis/shared/util-ids';
import {
  countAuditEventsUpTo,
  encodeAuditCursor,
  queryAuditEvents,
  type AuditCursor,
  type AuditEventsPage,
} from './audit-events.query';
import type { AuditExportRecord } from './audit.mapper';

const exportSelect = {
  id: true,
  tenantId: true,
  format: true,
  filters: true,
  status: true,
  rowCount: true,
  sha256: true,
  manifest: true,
  firstSeq: true,
  lastSeq: true,
  firstHash: true,
  lastHash: true,
  error: true,
  requestedById: true,
  createdAt: true,
  startedAt: true,
  completedAt: true,
  expiresAt: true,
} satisfies Prisma.AuditExportSelect;

/** Queries only. Every method takes the tenant first and puts it in the where clause. */
@Injectable()
export class AuditRepository {
  events(
    tenantId: TenantId,
    tx: TenantTransaction,
    filters: AuditEventFilters,
    page: { after: AuditCursor | undefined; limit: number; afterSeq?: bigint },
  ): Promise<AuditEventsPage> {
    return queryAuditEvents(tx, tenantId, filters, page);
  }

  countEventsUpTo(tenantId: TenantId, tx: TenantTransaction, filters: AuditEventFilters, cap: number): Promise<number> {
    return countAuditEventsUpTo(tx, tenantId, filters, cap);
  }

  /** Newest first, keyset on (created_at, id) with microsecond time. */
  async exports(
    tenantId: TenantId,
    tx: TenantTransaction,
    page: { after: AuditCursor | undefined; limit: number },
  ): Promise<{ records: AuditExportRecord[]; nextCursor: string | null }> {
    const params: unknown[] = [tenantId];
    let where = '';
    if (page.after) {
      params.push(page.after.occurredAt, page.after.id);
      where = ` AND (created_at, id) < ($2::timestamptz, $3::uuid)`;
    }
    params.push(page.limit + 1);
    const keys = await tx.$queryRawUnsafe<{ id: string; cursor_at: string }[]>(
      `SELECT id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at
       FROM audit_exports WHERE tenant_id = $1::uuid${where}
       ORDER BY created_at DESC, id DESC LIMIT $${params.length}`,
      ...params,
    );
    const pageKeys = keys.slice(0, page.limit);
    const rows = await tx.auditExport.findMany({
      where: { tenantId, id: { in: pageKeys.map((k) => k.id) } },
      select: exportSelect,
    });
    const byId = new Map(rows.map((row) => [row.id, row]));
    const records = pageKeys.flatMap((k) => {
      const row = byId.get(k.id);
      return row ? [row] : [];
    });
    const last = pageKeys[pageKeys.length - 1];
    return {
      records,
      nextCursor: keys.length > page.limit && last ? encodeAuditCursor({ occurredAt: last.cursor_at, id: last.id }) : null,
    };
  }

  findExport(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<AuditExportRecord | null> {
    return tx.auditExport.findFirst({ where: { tenantId, id }, select: exportSelect });
  }

  /**
   * Cancels the export if it is in one of `from` (queued or running; failed too while its job waits for a retry);
   * returns whether it was.
   */
  async cancelExport(tenantId: TenantId, tx: TenantTransaction, id: string, from: readonly ('queued' | 'running' | 'failed')[]): Promise<boolean> {
    const { count } = await tx.auditExport.updateMany({
      where: { tenantId, id, status: { in: [...from] } },
      data: { status: 'cancelled', error: 'cancelled', completedAt: new Date() },
    });
    return count > 0;
  }

  /** Marks an export that never reached the queue as failed (it would otherwise stay `queued`). */
  async markNotQueued(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<void> {
    await tx.auditExport.updateMany({
      where: { tenantId, id, status: 'queued' },
      data: { status: 'failed', error: 'could not be queued (Redis unavailable)' },
    });
  }
}
