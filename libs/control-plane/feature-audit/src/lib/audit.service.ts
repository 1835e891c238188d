import { Inject, Injectable } from '@nestjs/common';
import { anchorsBetween, exportAuditEvents, ExportInterruptedError, requestAuditExport, TooManyExportsError, type AuditExportFilters } from '@portcullis/audit/core';
import type {
  AuditAnchorResponse,
  AuditAnchorsQuery,
  AuditEventFilters,
  AuditEventResponse,
  AuditEventsQuery,
  AuditExportResponse,
  AuditVerifyQuery,
  AuditVerifyResponse,
  PageQuery,
  ParsedCreateAuditExportRequest,
} from '@portcullis/contracts/api';
import type { TenantScope } from '@portcullis/control-plane/auth';
import { AuditEmitter, type StagedAuditEvent } from '@portcullis/control-plane/change-events';
import type { Page } from '@portcullis/control-plane/http';
import { withTenant, type PortcullisPrismaClient } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { newId } from '@portcullis/shared/util-ids';
import { createReadStream, type ReadStream } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { verifyTenantChainScoped } from './audit-chain.reader';
import { decodeAuditCursor } from './audit-events.query';
import { auditErrors } from './audit.errors';
import { isDownloadable, toAuditEventResponse, toAuditExportResponse } from './audit.mapper';
import { AUDIT_API_OPTIONS, type AuditApiOptions } from './audit.options';
import { AuditRepository } from './audit.repository';
import { AuditTasksQueue } from './audit-tasks.queue';
import { Slots } from './slots';

/** Postgres's largest bigint: "no upper bound" for a seq range. */
const MAX_SEQ = 9_223_372_036_854_775_807n;

export type ExportFormat = 'csv' | 'jsonl';

/** A file on its way to the caller: streamed from disk, never held in memory. */
export interface FileDownload {
  readonly stream: ReadStream;
  readonly fileName: string;
  readonly contentType: string;
  readonly length: number;
  readonly sha256: string;
  readonly rowCount: number;
}

const CONTENT_TYPES: Record<ExportFormat, string> = {
  csv: 'text/csv; charset=utf-8',
  jsonl: 'application/x-ndjson; charset=utf-8',
};

/** The filters without undefined keys: the export manifest records exactly what was asked. */
function definedFilters(filters: AuditEventFilters): AuditExportFilters {
  return Object.fromEntries(Object.entries(filters).filter(([, v]) => v !== undefined)) as AuditExportFilters;
}

/**
 * Audit reads for auditors, owners and admins: the event query, chain verification, and exports (a small synchronous
 * one, or a worker job producing a file with its SHA-256 and manifest). Nothing here changes audit data; every export
 * and every download of one is itself audited.
 */
/** Synchronous exports (GET .../events.csv|.jsonl) under way at once per tenant, per control-plane process. */
const MAX_SYNC_EXPORTS_PER_TENANT = 2;
/**
 * Chain verifications (GET .../audit/verify) under way at once per tenant, and in all, per control-plane process. Each
 * holds a database connection for up to about ten seconds while it hashes up to `maxEvents` rows: unbounded, one
 * tenant's auditor sending them in parallel took the pool (10 connections) and the CPU from every tenant's requests.
 */
export const MAX_VERIFIES_PER_TENANT = 1;
export const MAX_VERIFIES = 3;
/** A synchronous download not read to its end within this long is cut (its temporary file goes with it). */
const SYNC_DOWNLOAD_DEADLINE_MS = 10 * 60_000;

@Injectable()
export class AuditService {
  /** Synchronous exports under way per tenant in this process, from the count of rows to the end of the download. */
  private readonly syncExports = new Slots(MAX_SYNC_EXPORTS_PER_TENANT);
  private readonly verifies = new Slots(MAX_VERIFIES_PER_TENANT, MAX_VERIFIES);

  constructor(
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
    private readonly repository: AuditRepository,
    private readonly audit: AuditEmitter,
    private readonly tasks: AuditTasksQueue,
    @Inject(AUDIT_API_OPTIONS) private readonly options: AuditApiOptions,
  ) {}

  async events(scope: TenantScope, query: AuditEventsQuery): Promise<Page<AuditEventResponse>> {
    const { cursor, limit, afterSeq, ...filters } = query;
    const after = decodeAuditCursor(cursor);
    const page = await withTenant(this.db, scope.tenantId, (tx) =>
      this.repository.events(scope.tenantId, tx, filters, { after, limit, ...(afterSeq !== undefined ? { afterSeq: BigInt(afterSeq) } : {}) }),
    );
    return { items: page.rows.map(toAuditEventResponse), nextCursor: page.nextCursor };
  }

  /** The tenant's signed anchors in seq order, a page at a time (`nextCursor`: the next page's `afterSeq`). */
  async anchors(scope: TenantScope, query: AuditAnchorsQuery): Promise<Page<AuditAnchorResponse>> {
    const after = query.afterSeq === undefined ? 0n : BigInt(query.afterSeq);
    // One more than asked: whether a next page exists, without a second query.
    const rows = await withTenant(this.db, scope.tenantId, (tx) => anchorsBetween(tx, scope.tenantId, after, MAX_SEQ, query.limit + 1));
    const items = rows.slice(0, query.limit);
    return { items, nextCursor: rows.length > query.limit ? (items.at(-1)?.seq ?? null) : null };
  }

  async verify(scope: TenantScope, query: AuditVerifyQuery): Promise<AuditVerifyResponse> {
    const release = this.verifies.take(scope.tenantId);
    if (release === undefined) {
      throw this.verifies.heldBy(scope.tenantId) >= MAX_VERIFIES_PER_TENANT ? auditErrors.tooManyVerifies(MAX_VERIFIES_PER_TENANT) : auditErrors.verifierBusy();
    }
    try {
      return await verifyTenantChainScoped(this.db, scope.tenantId, {
        ...(query.afterSeq !== undefined ? { afterSeq: BigInt(query.afterSeq) } : {}),
        maxEvents: query.maxEvents,
        ...(this.options.verifyKeys ? { keys: this.options.verifyKeys } : {}),
      });
    } finally {
      release();
    }
  }

  /**
   * A synchronous export of at most `syncExportMaxRows` events, in chain order: written with the worker's streaming
   * writer to a private temporary file (constant memory, SHA-256 computed on the way), then streamed to the caller
   * and deleted when the response ends.
   */
  async exportNow(scope: TenantScope, format: ExportFormat, filters: AuditEventFilters): Promise<FileDownload> {
    // Each holds a query, a temporary file of up to `syncExportMaxRows` rows and a response for as long as the caller
    // reads: a few at a time per tenant, and each download within a deadline, or one tenant's slow readers could fill
    // the disk and the pool for every tenant.
    const done = this.syncExports.take(scope.tenantId);
    if (done === undefined) throw auditErrors.tooManySyncExports(MAX_SYNC_EXPORTS_PER_TENANT);
    let handedOver = false;
    try {
      const download = await this.writeSyncExport(scope, format, filters);
      const deadline = setTimeout(() => download.stream.destroy(), SYNC_DOWNLOAD_DEADLINE_MS);
      deadline.unref();
      download.stream.once('close', () => {
        clearTimeout(deadline);
        done();
      });
      handedOver = true;
      return download;
    } finally {
      if (!handedOver) done();
    }
  }

  private async writeSyncExport(scope: TenantScope, format: ExportFormat, filters: AuditEventFilters): Promise<FileDownload> {
    const max = this.options.syncExportMaxRows;
    const matching = await withTenant(this.db, scope.tenantId, (tx) =>
      this.repository.countEventsUpTo(scope.tenantId, tx, filters, max),
    );
    if (matching > max) throw auditErrors.tooManyRowsForSync(max);
    const exportId = newId();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'portcullis-audit-sync-'));
    const file = path.join(dir, `${exportId}.${format}`);
    try {
      const { manifest } = await exportAuditEvents(this.db, scope.tenantId, {
        format,
        filters: definedFilters(filters),
        outPath: file,
      });
      const { size } = await stat(file);
      await this.audit.emit({
        tenantId: scope.tenantId,
        actor: scope.actor,
        action: 'audit.export',
        target: { type: 'audit_export', id: exportId },
        before: null,
        after: {
          synchronous: true,
          format,
          filters: manifest.filters,
          rowCount: manifest.rowCount,
          sha256: manifest.sha256,
          firstSeq: manifest.firstSeq,
          lastSeq: manifest.lastSeq,
        },
      }, { required: true });
      const stream = createReadStream(file);
      stream.once('close', () => void rm(dir, { recursive: true, force: true }));
      return {
        stream,
        fileName: `audit-${exportId}.${format}`,
        contentType: CONTENT_TYPES[format],
        length: size,
        sha256: manifest.sha256,
        rowCount: manifest.rowCount,
      };
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error instanceof ExportInterruptedError ? auditErrors.prunedMeanwhile() : error;
    }
  }

  /**
   * Records the export (`queued`) with its audit event in one transaction, then enqueues `audit.export.run` for the
   * audit worker. A request the queue did not take is marked so (503); its event stays: it was asked for.
   */
  async requestExport(scope: TenantScope, body: ParsedCreateAuditExportRequest): Promise<AuditExportResponse> {
    const filters = definedFilters(body.filters);
    let recordedId: string | undefined;
    let staged: StagedAuditEvent | undefined;
    try {
      const { exportId } = await requestAuditExport(
        this.db,
        scope.tenantId,
        { format: body.format, filters, requestedById: scope.actor.userId },
        async (name, data, opts) => {
          recordedId = data.exportId;
          await this.tasks.add(name, data, opts);
        },
        async (tx, id) => {
          staged = await this.audit.stage(tx, {
            tenantId: scope.tenantId,
            actor: scope.actor,
            action: 'audit.export.request',
            target: { type: 'audit_export', id },
            before: null,
            after: { format: body.format, filters },
          });
        },
      );
      recordedId = exportId;
    } catch (error) {
      if (error instanceof TooManyExportsError) throw auditErrors.tooManyExports();
      if (recordedId === undefined) throw error;
      const id = recordedId;
      await withTenant(this.db, scope.tenantId, (tx) => this.repository.markNotQueued(scope.tenantId, tx, id));
      if (staged) await this.audit.publish(staged);
      throw auditErrors.queueUnavailable();
    }
    if (staged) await this.audit.publish(staged);
    return this.getExport(scope, recordedId);
  }

  async listExports(scope: TenantScope, query: PageQuery): Promise<Page<AuditExportResponse>> {
    const after = decodeAuditCursor(query.cursor);
    const { records, nextCursor } = await withTenant(this.db, scope.tenantId, (tx) =>
      this.repository.exports(scope.tenantId, tx, { after, limit: query.limit }),
    );
    return { items: records.map((record) => toAuditExportResponse(record)), nextCursor };
  }

  async getExport(scope: TenantScope, id: string): Promise<AuditExportResponse> {
    const record = await withTenant(this.db, scope.tenantId, (tx) => this.repository.findExport(scope.tenantId, tx, id));
    if (!record) throw auditErrors.exportNotFound();
    return toAuditExportResponse(record);
  }

  /**
   * Stops an export that is queued or running (or failed with a retry still to come, or failing now on an attempt that
   * is not its last): marked `cancelled` at once; its job is dropped from the queue if no worker holds it, else the
   * worker stops before its next page and removes what it wrote (a retry sees it cancelled and does not run). Audited. Anything else (completed, failed for good, expired, cancelled) is a conflict.
   */
  async cancelExport(scope: TenantScope, id: string): Promise<AuditExportResponse> {
    const jobId = `export-${id}`;
    const retrying = await this.tasks.pending(jobId);
    const staged = await withTenant(this.db, scope.tenantId, async (tx) => {
      const found = await this.repository.findExport(scope.tenantId, tx, id);
      if (!found) throw auditErrors.exportNotFound();
      if (!(await this.repository.cancelExport(scope.tenantId, tx, id, retrying ? ['queued', 'running', 'failed'] : ['queued', 'running']))) {
        // As it is now (it may have completed a moment ago).
        const now = await this.repository.findExport(scope.tenantId, tx, id);
        throw auditErrors.exportNotCancellable(now?.status ?? found.status);
      }
      return this.audit.stage(tx, {
        tenantId: scope.tenantId,
        actor: scope.actor,
        action: 'audit.export.cancel',
        target: { type: 'audit_export', id },
        before: { status: found.status },
        after: { status: 'cancelled' },
      });
    });
    await this.tasks.remove(jobId);
    await this.audit.publish(staged);
    return this.getExport(scope, id);
  }

  /** The manifest as a file, to verify a download offline: `npm run audit:verify -- --export <file> --manifest <it>`. */
  async exportManifest(scope: TenantScope, id: string): Promise<{ fileName: string; manifest: unknown }> {
    const record = await withTenant(this.db, scope.tenantId, (tx) => this.repository.findExport(scope.tenantId, tx, id));
    if (!record) throw auditErrors.exportNotFound();
    // An expired export keeps its manifest (its file is gone): whoever downloaded it can still verify their copy.
    if ((record.status !== 'completed' && record.status !== 'expired') || record.manifest === null) throw auditErrors.exportNotReady(record.status);
    return { fileName: `${record.id}.${record.format}.manifest.json`, manifest: record.manifest };
  }

  /**
   * Streams a completed export's file from the export directory. The path is derived from the tenant and export id
   * (the same layout the worker writes), never taken from the database row. The download is audited.
   */
  async download(scope: TenantScope, id: string): Promise<FileDownload> {
    const record = await withTenant(this.db, scope.tenantId, (tx) => this.repository.findExport(scope.tenantId, tx, id));
    if (!record) throw auditErrors.exportNotFound();
    // Past its expiry the file is gone for the caller, even before the worker's expiry task has removed it.
    if (record.status === 'expired' || (record.status === 'completed' && !isDownloadable(record, new Date()))) throw auditErrors.exportFileGone();
    if (record.status !== 'completed' || record.sha256 === null) throw auditErrors.exportNotReady(record.status);
    const fileName = `${record.id}.${record.format}`;
    const file = path.resolve(this.options.exportDir, scope.tenantId, fileName);
    // Opened before anything is answered: a file removed afterwards (its expiry, or a newer export completing past the
    // ten a tenant keeps) is still read whole from the handle, never cut off mid-answer.
    const handle = await open(file, 'r').catch(() => null);
    const size = handle === null ? null : await handle.stat().then((s) => (s.isFile() ? s.size : null), () => null);
    if (handle === null || size === null) {
      await handle?.close().catch(() => undefined);
      throw auditErrors.exportFileGone();
    }
    try {
      await this.audit.emit({
        tenantId: scope.tenantId,
        actor: scope.actor,
        action: 'audit.export.download',
        target: { type: 'audit_export', id: record.id },
        before: null,
        after: { format: record.format, rowCount: record.rowCount, sha256: record.sha256 },
      }, { required: true });
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
    return {
      stream: handle.createReadStream(),
      fileName,
      contentType: CONTENT_TYPES[record.format],
      length: size,
      sha256: record.sha256,
      rowCount: record.rowCount ?? 0,
    };
  }
}
