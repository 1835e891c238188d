import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import {
  Prisma,
  withTenant,
  type PortcullisPrismaClient,
  type SystemPrismaClient,
  type TenantTransaction,
} from '@portcullis/data/db';
import { tenantId as asTenantId, type TenantId } from '@portcullis/shared/util-ids';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { verifyChain, type AuditAnchorSigner } from '@portcullis/audit/chain';
import type { AuditEventStore } from './audit-event.store';
import { AUDIT_EVENT_COLUMNS, linkFromRow, type AuditEventRow } from './audit-row';
import {
  auditExportFilters,
  ExportCancelledError,
  exportAuditEvents,
  type AuditExportFilters,
  type AuditExportFormat,
  type AuditExportManifest,
} from './audit-export';

/**
 * The audit worker's own background work, on a queue separate from ingestion so a long export never delays events:
 * `audit.export.run` (one export, on request) and `audit.retention.run` (repeatable, every tenant).
 */
export const AUDIT_TASKS_QUEUE = 'portcullis-audit-tasks';
export const AUDIT_TASK_JOBS = {
  export: 'audit.export.run',
  retention: 'audit.retention.run',
} as const;

export const auditExportJob = z.object({ v: z.literal(1), exportId: z.uuid(), tenantId: z.uuid() });
export type AuditExportJob = z.infer<typeof auditExportJob>;

/** A stable UUID (version 8, RFC 9562) derived from a name: the same export is audited once however often it runs. */
export function derivedUuid(name: string): string {
  const h = createHash('sha256').update(name).digest('hex');
  const variant = ((parseInt(h[16] ?? '0', 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export interface RequestAuditExportInput {
  readonly format: AuditExportFormat;
  readonly filters: AuditExportFilters;
  readonly requestedById: string | null;
}

/**
 * Records an export request (status `queued`) and enqueues its job; the API route (auditor role) will call this.
 * `enqueue` is the audit-tasks queue's `add`.
 */
/**
 * Export jobs a tenant may have queued or running at once. Each writes a full copy of the trail to the export volume
 * and the task queue runs one job at a time for every tenant (retention included): a loop of requests would fill the
 * disk and hold everyone else's exports and deletions back.
 */
export const MAX_EXPORTS_IN_PROGRESS = 3;

/**
 * An export queued or running for longer than this no longer counts against MAX_EXPORTS_IN_PROGRESS: its job was lost
 * (failed by the queue without running, its worker gone) and nothing will finish it, so it must not block the tenant.
 */
export const EXPORT_IN_PROGRESS_FOR_AT_MOST_MS = 60 * 60_000;

/** The tenant already has MAX_EXPORTS_IN_PROGRESS exports queued or running. */
export class TooManyExportsError extends Error {
  constructor() {
    super(`at most ${MAX_EXPORTS_IN_PROGRESS} exports may be queued or running at once`);
    this.name = 'TooManyExportsError';
  }
}

export async function requestAuditExport<Recorded = undefined>(
  db: PortcullisPrismaClient,
  tenantId: TenantId,
  input: RequestAuditExportInput,
  enqueue: (name: string, data: AuditExportJob, opts: { jobId: string }) => Promise<unknown>,
  /** Runs in the transaction that records the request, with its id (the control plane writes its audit event there). */
  record?: (tx: TenantTransaction, exportId: string) => Promise<Recorded>,
): Promise<{ exportId: string; recorded: Recorded | undefined }> {
  const filters = auditExportFilters.parse(input.filters);
  const row = await withTenant(db, tenantId, async (tx) => {
    // One request at a time per tenant counts and records, so concurrent requests cannot all pass the bound.
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`pcs:audit-exports:${tenantId}`}, 0))`;
    const since = new Date(Date.now() - EXPORT_IN_PROGRESS_FOR_AT_MOST_MS);
    const inProgress = await tx.auditExport.count({ where: { tenantId, status: { in: ['queued', 'running'] }, createdAt: { gt: since } } });
    if (inProgress >= MAX_EXPORTS_IN_PROGRESS) throw new TooManyExportsError();
    const created = await tx.auditExport.create({
      data: { tenantId, format: input.format, filters, status: 'queued', requestedById: input.requestedById },
      select: { id: true },
    });
    return { id: created.id, recorded: record === undefined ? undefined : await record(tx, created.id) };
  });
  await enqueue(AUDIT_TASK_JOBS.export, { v: 1, exportId: row.id, tenantId }, { jobId: `export-${row.id}` });
  return { exportId: row.id, recorded: row.recorded };
}

/**
 * The `audit.export` event of one run. Its id is derived (a retried insert is one event): from the export and the
 * outcome, and for a finished file from its digest too, so a run done again after a crash (the chain has moved, the
 * file differs) records the file it produced, not the earlier run's digest under the same id.
 */
function exportAuditEvent(
  tenantId: string,
  exportId: string,
  actor: string | null,
  outcome: 'ok' | 'error' | 'cancelled',
  details: Record<string, unknown>,
): AuditEventV1 {
  // A removal names the file removed: several runs of one job each remove their own (found by re-review).
  const digest = outcome !== 'error' && typeof details['sha256'] === 'string' ? `:${details['sha256']}` : '';
  return {
    v: 1,
    eventId: derivedUuid(`audit-export:${exportId}:${outcome}${digest}`),
    tenantId,
    occurredAt: new Date().toISOString(),
    kind: 'control_plane',
    method: 'audit.export',
    actorUserId: actor,
    agentClientId: null,
    apiKeyId: null,
    mcpSessionId: null,
    upstreamId: null,
    tool: null,
    targetType: 'audit_export',
    targetId: exportId,
    decision: null,
    reason: null,
    snapshotVersion: null,
    approvalId: null,
    latencyMs: null,
    outcome,
    errorCode: outcome === 'error' ? 'AUDIT_EXPORT_FAILED' : null,
    arguments: details as AuditEventV1['arguments'],
    traceId: null,
    traceparent: null,
  };
}

/** Export files stay downloadable this long by default (AUDIT_EXPORT_TTL_DAYS). */
export const DEFAULT_EXPORT_TTL_MS = 7 * 86_400_000;

/**
 * Removes the files of completed exports whose `expires_at` has passed and marks them `expired` (cross-tenant, as
 * portcullis_system; run with retention). The row stays, with its digest, manifest and chain range, so what was
 * exported remains on record; only the file goes. A file already gone is not an error. Bounded per run.
 */
export async function expireAuditExports(
  db: SystemPrismaClient,
  exportDir: string,
  options: { readonly now?: Date; readonly limit?: number } = {},
): Promise<{ expired: number }> {
  const due = await db.auditExport.findMany({
    where: { status: 'completed', expiresAt: { lte: options.now ?? new Date() } },
    select: { id: true, tenantId: true, format: true },
    orderBy: { expiresAt: 'asc' },
    take: options.limit ?? 1_000,
  });
  let expired = 0;
  for (const row of due) {
    // The files are found from the tenant and export ids (as the worker wrote them), never from the row's path.
    await removeExportFiles(path.join(exportDir, row.tenantId), row.id);
    const updated = await db.auditExport.updateMany({
      where: { id: row.id, status: 'completed' },
      data: { status: 'expired', filePath: null },
    });
    expired += updated.count;
  }
  return { expired };
}

/**
 * Completed exports a tenant keeps downloadable at once: a newer one completing expires the oldest beyond it, its files
 * removed at once. Only exports in progress were bounded: a loop of request, wait, request again kept a full copy of the
 * trail on the export volume every tenant shares for each, for the whole TTL (found by a review).
 */
export const MAX_KEPT_EXPORTS = 10;

/** Expires the tenant's completed exports beyond the MAX_KEPT_EXPORTS newest, removing their files. */
async function expireBeyondKept(db: PortcullisPrismaClient, tenant: TenantId, dir: string): Promise<void> {
  const beyond = await withTenant(db, tenant, (tx) =>
    tx.auditExport.findMany({
      where: { tenantId: tenant, status: 'completed' },
      orderBy: [{ completedAt: 'desc' }, { id: 'desc' }],
      skip: MAX_KEPT_EXPORTS,
      select: { id: true },
    }),
  );
  for (const { id } of beyond) {
    await removeExportFiles(dir, id);
    await withTenant(db, tenant, (tx) =>
      tx.auditExport.updateMany({ where: { tenantId: tenant, id, status: 'completed' }, data: { status: 'expired', filePath: null, expiresAt: new Date() } }),
    );
  }
}

/**
 * An export's files in its tenant's directory: its data file, the digest and manifest beside it, and what runs of its
 * job left under their staging names (a worker that died mid-run). Each begins with the export's id. None: not an error.
 */
async function removeExportFiles(dir: string, exportId: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(names.filter((name) => name.startsWith(`${exportId}.`)).map((name) => rm(path.join(dir, name), { force: true })));
}

/** What a failed export says to the tenant (API `error`, its audit event): never a server path or a database message. */
export const EXPORT_FAILED_MESSAGE = 'the export could not be written; request it again, or ask the operator to look at the audit worker log';

/**
 * Runs one export job: marks the AuditExport row running, streams the file (exportAuditEvents), records its
 * digest, manifest and chain range, and appends an `audit.export` event to the tenant's own chain (so every
 * export is itself audited, once: its event id derives from the export id). A completed export is not redone.
 */
export async function runAuditExport(
  db: PortcullisPrismaClient,
  store: AuditEventStore,
  job: AuditExportJob,
  exportDir: string,
  /** How long the file stays downloadable; `expireAuditExports` removes it after that. */
  ttlMs: number = DEFAULT_EXPORT_TTL_MS,
  /**
   * For specs, where a cancel may land: after the file is written (`written`), and after its `audit.export` event is
   * recorded, before the file is published and the row marked completed (`recorded`).
   */
  at: { readonly written?: () => Promise<void>; readonly recorded?: () => Promise<void> } = {},
): Promise<{ status: 'completed' | 'skipped' | 'cancelled' }> {
  const tenant = asTenantId(job.tenantId);
  const row = await withTenant(db, tenant, (tx) =>
    tx.auditExport.findFirst({ where: { tenantId: tenant, id: job.exportId } }),
  );
  if (!row) throw new Error(`audit export ${job.exportId} not found`);
  const dir = path.join(exportDir, tenant);
  const fileName = `${row.id}.${row.format}`;
  const outPath = path.join(dir, fileName);
  // Done, or done and expired (its manifest kept for whoever downloaded it): never exported again over its record.
  if (row.status === 'completed' || row.status === 'expired') return { status: 'skipped' };
  // Cancelled: never run. What an earlier attempt may have left (a worker that died mid-run) goes.
  if (row.status === 'cancelled') {
    await removeExportFiles(dir, row.id).catch(() => undefined);
    return { status: 'skipped' };
  }
  // Claimed by this run: the time it started is its mark. BullMQ may hand a job on as stalled while its first run
  // still goes (its lock not renewed: Redis away a while), and only the run that claimed the export last publishes a
  // file; each writes under names of its own until then. Before, both wrote one file, and the row's digest could be of
  // the other run's bytes (found by a review). Not over a cancel that came in meanwhile (from here on the cancel is
  // seen before each page).
  const claimedAt = new Date();
  const started = await withTenant(db, tenant, (tx) =>
    tx.auditExport.updateMany({
      where: { tenantId: tenant, id: row.id, status: { in: ['queued', 'running', 'failed'] } },
      data: { status: 'running', startedAt: claimedAt, error: null },
    }),
  );
  if (started.count === 0) return { status: 'skipped' };
  const statusNow = async () =>
    (await withTenant(db, tenant, (tx) => tx.auditExport.findFirst({ where: { tenantId: tenant, id: row.id }, select: { status: true } })))?.status;
  const cancelled = async (): Promise<boolean> => (await statusNow()) === 'cancelled';
  const filters = auditExportFilters.parse(row.filters);
  await mkdir(dir, { recursive: true, mode: 0o750 });
  const staging = path.join(dir, `${fileName}.run-${randomBytes(6).toString('hex')}`);
  const staged = [staging, `${staging}.sha256`, `${staging}.manifest.json`];
  const removeStaged = () => Promise.all([...staged, `${staging}.partial`].map((name) => rm(name, { force: true })));
  // The export's `audit.export` event is recorded before the row says completed: a completed export is always audited.
  let recorded: AuditExportManifest | undefined;
  try {
    const { manifest } = await exportAuditEvents(db, tenant, { format: row.format, filters, outPath: staging, fileName, cancelled });
    await at.written?.();
    if (await cancelled()) throw new ExportCancelledError();
    await store.insert([
      exportAuditEvent(tenant, row.id, row.requestedById, 'ok', {
        format: row.format,
        filters,
        rowCount: manifest.rowCount,
        sha256: manifest.sha256,
        firstSeq: manifest.firstSeq,
        lastSeq: manifest.lastSeq,
      }),
    ]);
    recorded = manifest;
    await at.recorded?.();
    // Published and completed together, the row locked: only while this run's claim stands (a cancel that came first
    // wins; a later run of the job takes over).
    const published = await withTenant(db, tenant, async (tx) => {
      const [current] = await tx.$queryRaw<{ status: string; started_at: Date | null }[]>`
        SELECT status::text AS status, started_at FROM audit_exports WHERE tenant_id = ${tenant}::uuid AND id = ${row.id}::uuid FOR UPDATE`;
      if (current?.status === 'cancelled') return 'cancelled' as const;
      if (current?.status !== 'running' || current.started_at?.getTime() !== claimedAt.getTime()) return 'superseded' as const;
      await rename(staged[1] ?? '', `${outPath}.sha256`);
      await rename(staged[2] ?? '', `${outPath}.manifest.json`);
      await rename(staging, outPath);
      await tx.auditExport.updateMany({
        where: { tenantId: tenant, id: row.id },
        data: {
          status: 'completed',
          completedAt: new Date(),
          expiresAt: new Date(Date.now() + ttlMs),
          rowCount: manifest.rowCount,
          sha256: manifest.sha256,
          filePath: outPath,
          manifest: manifest as unknown as Prisma.InputJsonValue,
          firstSeq: manifest.firstSeq === null ? null : BigInt(manifest.firstSeq),
          lastSeq: manifest.lastSeq === null ? null : BigInt(manifest.lastSeq),
          firstHash: manifest.firstHash,
          lastHash: manifest.lastHash,
        },
      });
      return 'completed' as const;
    });
    if (published === 'cancelled') throw new ExportCancelledError();
    if (published === 'superseded') {
      // Another run of the job claimed the export since (or completed it): its file is the one served, and this
      // run's goes, which the chain is told of as of a cancelled one.
      await removeStaged();
      await store
        .insert([exportAuditEvent(tenant, row.id, row.requestedById, 'cancelled', { sha256: manifest.sha256, removed: true, supersededByAnotherRun: true })])
        .catch(() => undefined);
      return { status: 'skipped' };
    }
    // Not a failure of this export when it fails: the periodic expiry still removes the others at their TTL.
    await expireBeyondKept(db, tenant, dir).catch(() => undefined);
    return { status: 'completed' };
  } catch (error) {
    // Nothing of a cancelled or failed run stays on disk, nor what an earlier run of the job left (a worker that died
    // mid-run: nothing else would remove it; found by re-review); what a run that took the export over writes is its own.
    const ownsFiles = await withTenant(db, tenant, (tx) => tx.auditExport.findFirst({ where: { tenantId: tenant, id: row.id }, select: { status: true, startedAt: true } })).then(
      (now) => now?.status === 'cancelled' || (now?.status === 'running' && now.startedAt?.getTime() === claimedAt.getTime()),
      () => false,
    );
    await (ownsFiles ? removeExportFiles(dir, row.id) : removeStaged()).catch(() => undefined);
    if (error instanceof ExportCancelledError) {
      // Its export was recorded a moment before the cancel won: the chain says what became of the file.
      if (recorded !== undefined) {
        await store
          .insert([exportAuditEvent(tenant, row.id, row.requestedById, 'cancelled', { sha256: recorded.sha256, removed: true })])
          .catch(() => undefined);
      }
      return { status: 'cancelled' };
    }
    // Its reason (a path, a database message) goes to the worker's log through the rethrown error, and the tenant
    // sees a fixed sentence.
    await store
      .insert([
        exportAuditEvent(tenant, row.id, row.requestedById, 'error', {
          format: row.format,
          filters,
          error: EXPORT_FAILED_MESSAGE,
        }),
      ])
      .catch(() => undefined);
    // Failed only while this run's claim stands: a row another run took over, or completed, is that run's.
    await withTenant(db, tenant, (tx) =>
      tx.auditExport.updateMany({
        where: { tenantId: tenant, id: row.id, status: 'running', startedAt: claimedAt },
        data: { status: 'failed', error: EXPORT_FAILED_MESSAGE },
      }),
    );
    throw error;
  }
}

/** Tenant setting read by retention: `settings.audit.retentionDays` (absent = keep forever). */
const retentionSetting = z.object({
  audit: z
    .object({ retentionDays: z.number().int().min(1).max(36_500) })
    .partial()
    .optional(),
});

export interface RetentionResult {
  readonly tenants: number;
  readonly deleted: number;
  readonly perTenant: {
    readonly tenantId: string;
    readonly deleted: number;
    readonly prunedThroughSeq: string;
  }[];
  /**
   * Tenants whose events due for deletion do not verify (edited, reordered or removed outside the application): none of
   * their rows past the first bad one is deleted, so the evidence stays for `audit:verify` to name. For the operator.
   */
  readonly refused: readonly { readonly tenantId: string; readonly seq: string; readonly problem: string }[];
}

export interface RetentionOptions {
  readonly now?: Date;
  /** Rows deleted per transaction. */
  readonly batchSize?: number;
  /** Stop after this many batches per tenant per run (the next run continues). */
  readonly maxBatchesPerTenant?: number;
  /**
   * The audit worker's signer: each new checkpoint is signed as an anchor (its seq and hash), so a checkpoint moved by
   * anyone else, with the rows before it deleted, shows in verification with the public key.
   */
  readonly signer?: AuditAnchorSigner;
}

/**
 * Deletes each tenant's audit events older than its retention, oldest first, in batches, as `portcullis_system`.
 *
 * Only a prefix of the chain is ever deleted: per batch, take the next `batchSize` events after the checkpoint in
 * `seq` order and keep the leading run whose `occurred_at` is before the cutoff (one newer event stops the prefix
 * until it ages too: events can arrive a little out of time order). In one transaction: lock the chain head, verify
 * the rows about to go from the checkpoint on (a row edited outside the application would otherwise take the evidence
 * with it, the new checkpoint vouching for whatever hash was stored), move the checkpoint (`pruned_through_seq/hash` =
 * the last deleted event) and delete the rows. Rows that do not verify are not deleted, nor any after them: the tenant
 * is reported in `refused`. The database refuses a delete the checkpoint does not cover (trigger), and verification
 * starts from the checkpoint.
 */
export async function runRetention(
  db: SystemPrismaClient,
  options: RetentionOptions = {},
): Promise<RetentionResult> {
  const now = options.now ?? new Date();
  const batchSize = options.batchSize ?? 5_000;
  const maxBatches = options.maxBatchesPerTenant ?? 100;
  const tenants = await db.tenant.findMany({ select: { id: true, settings: true } });
  const perTenant: { tenantId: string; deleted: number; prunedThroughSeq: string }[] = [];
  const refused: { tenantId: string; seq: string; problem: string }[] = [];
  for (const tenant of tenants) {
    const parsed = retentionSetting.safeParse(tenant.settings);
    const days = parsed.success ? parsed.data.audit?.retentionDays : undefined;
    if (days === undefined) continue;
    const cutoff = new Date(now.getTime() - days * 86_400_000);
    let deleted = 0;
    let through = '0';
    for (let batch = 0; batch < maxBatches; batch += 1) {
      const result = await db.$transaction(
        async (tx) => {
          const heads = await tx.$queryRawUnsafe<{ pruned_through_seq: bigint; pruned_through_hash: string | null }[]>(
            'SELECT pruned_through_seq, pruned_through_hash FROM audit_chain_heads WHERE tenant_id = $1::uuid FOR UPDATE',
            tenant.id,
          );
          const head = heads[0];
          if (!head) return { deleted: 0, through: '0' };
          const candidates = await tx.$queryRawUnsafe<{ seq: bigint; hash: string; old: boolean }[]>(
            `SELECT seq, hash, occurred_at < $3::timestamptz AS old FROM audit_events
           WHERE tenant_id = $1::uuid AND seq > $2 ORDER BY seq LIMIT $4`,
            tenant.id,
            head.pruned_through_seq,
            cutoff,
            batchSize,
          );
          const firstNew = candidates.findIndex((c) => !c.old);
          const prefix = firstNew === -1 ? candidates : candidates.slice(0, firstNew);
          const last = prefix[prefix.length - 1];
          if (!last) return { deleted: 0, through: head.pruned_through_seq.toString() };
          const rows = await tx.$queryRawUnsafe<AuditEventRow[]>(
            `SELECT ${AUDIT_EVENT_COLUMNS} FROM audit_events WHERE tenant_id = $1::uuid AND seq > $2 AND seq <= $3 ORDER BY seq`,
            tenant.id,
            head.pruned_through_seq,
            last.seq,
          );
          const verdict = verifyChain(rows.map(linkFromRow), { seq: head.pruned_through_seq, prevHash: head.pruned_through_hash });
          if (!verdict.ok) {
            return { deleted: 0, through: head.pruned_through_seq.toString(), brokenAt: { seq: verdict.brokenAt.seq, problem: verdict.brokenAt.problem } };
          }
          // The rows must also be the ones the signed anchors among them vouch for (the chain alone can be recomputed).
          const anchors = await tx.$queryRawUnsafe<{ seq: bigint; hash: string }[]>(
            'SELECT seq, hash FROM audit_anchors WHERE tenant_id = $1::uuid AND seq > $2 AND seq <= $3',
            tenant.id,
            head.pruned_through_seq,
            last.seq,
          );
          const hashes = new Map(rows.map((row) => [BigInt(row.seq), row.hash]));
          const contradicted = anchors.find((anchor) => hashes.get(BigInt(anchor.seq)) !== anchor.hash);
          if (contradicted) {
            return { deleted: 0, through: head.pruned_through_seq.toString(), brokenAt: { seq: BigInt(contradicted.seq).toString(), problem: 'anchor_mismatch' } };
          }
          if (options.signer) {
            const anchor = options.signer.sign({ tenantId: tenant.id, seq: last.seq.toString(), hash: last.hash, signedAt: new Date().toISOString() });
            await tx.$executeRawUnsafe(
              `INSERT INTO audit_anchors (tenant_id, seq, hash, signed_at, key_id, signature)
               VALUES ($1::uuid, $2, $3, $4::timestamptz, $5, $6) ON CONFLICT (tenant_id, seq) DO NOTHING`,
              tenant.id,
              last.seq,
              anchor.hash,
              anchor.signedAt,
              anchor.keyId,
              anchor.signature,
            );
          }
          await tx.$executeRawUnsafe(
            `UPDATE audit_chain_heads SET pruned_through_seq = $2, pruned_through_hash = $3, pruned_at = now()
           WHERE tenant_id = $1::uuid`,
            tenant.id,
            last.seq,
            last.hash,
          );
          const count = await tx.$executeRawUnsafe(
            'DELETE FROM audit_events WHERE tenant_id = $1::uuid AND seq > $2 AND seq <= $3',
            tenant.id,
            head.pruned_through_seq,
            last.seq,
          );
          return { deleted: count, through: last.seq.toString(), full: prefix.length === batchSize };
        },
        { timeout: 60_000 },
      );
      deleted += result.deleted;
      through = result.through;
      if ('brokenAt' in result && result.brokenAt) {
        refused.push({ tenantId: tenant.id, seq: String(result.brokenAt.seq), problem: result.brokenAt.problem });
        break;
      }
      if (!('full' in result) || !result.full) break;
    }
    perTenant.push({ tenantId: tenant.id, deleted, prunedThroughSeq: through });
  }
  return { tenants: perTenant.length, deleted: perTenant.reduce((sum, t) => sum + t.deleted, 0), perTenant, refused };
}
