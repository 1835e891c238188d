import { linkFromRow } from '@portcullis/audit/core';
import type { AuditEventResponse, AuditExportResponse } from '@portcullis/contracts/api';
import type { AuditEventQueryRow } from './audit-events.query';

export function toAuditEventResponse(row: AuditEventQueryRow): AuditEventResponse {
  // The chain link carries every stored field, the time the store recorded it and the hash version among them.
  return { ...linkFromRow(row), recordedAt: row.recorded_at.toISOString(), hashVersion: row.hash_version ?? 1 };
}

/** An audit export as the repository reads it: the file path stays server-side. */
export interface AuditExportRecord {
  readonly id: string;
  readonly tenantId: string;
  readonly format: 'csv' | 'jsonl';
  readonly filters: unknown;
  readonly status: AuditExportResponse['status'];
  readonly rowCount: number | null;
  readonly sha256: string | null;
  readonly manifest: unknown;
  readonly firstSeq: bigint | null;
  readonly lastSeq: bigint | null;
  readonly firstHash: string | null;
  readonly lastHash: string | null;
  readonly error: string | null;
  readonly requestedById: string | null;
  readonly createdAt: Date;
  readonly startedAt: Date | null;
  readonly completedAt: Date | null;
  /** After this the file is not served, whether or not the worker's expiry has removed it yet. */
  readonly expiresAt: Date | null;
}

/** Whether the export's file may be downloaded now: completed and not past its expiry. */
export function isDownloadable(record: AuditExportRecord, now: Date): boolean {
  return record.status === 'completed' && (record.expiresAt === null || record.expiresAt > now);
}

const objectOrNull = (value: unknown): Record<string, unknown> | null =>
  value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;

export function toAuditExportResponse(record: AuditExportRecord, now = new Date()): AuditExportResponse {
  return {
    id: record.id,
    format: record.format,
    filters: objectOrNull(record.filters) ?? {},
    status: record.status,
    rowCount: record.rowCount,
    sha256: record.sha256,
    firstSeq: record.firstSeq === null ? null : record.firstSeq.toString(),
    lastSeq: record.lastSeq === null ? null : record.lastSeq.toString(),
    firstHash: record.firstHash,
    lastHash: record.lastHash,
    manifest: objectOrNull(record.manifest),
    error: record.error,
    requestedById: record.requestedById,
    createdAt: record.createdAt.toISOString(),
    startedAt: record.startedAt?.toISOString() ?? null,
    completedAt: record.completedAt?.toISOString() ?? null,
    downloadPath: isDownloadable(record, now) ? `/api/v1/tenants/${record.tenantId}/audit/exports/${record.id}/download` : null,
  };
}
