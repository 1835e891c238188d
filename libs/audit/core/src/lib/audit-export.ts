import {
  AUDIT_HASH_VERSION,
  AUDIT_HASH_VERSIONS,
  computeAuditHash,
  type AuditHashVersion,
  verifyAnchorSignature,
  type AuditAnchor,
  type StoredChainLink,
} from '@portcullis/audit/chain';
import { withTenant, type PortcullisPrismaClient } from '@portcullis/data/db';
import type { TenantId } from '@portcullis/shared/util-ids';
import { createHash, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { z } from 'zod';
import { latestAnchor } from './audit-anchors';
import { CsvRowParser, encodeRow } from './audit-csv';
import { AUDIT_EVENT_COLUMNS, linkFromRow, type AuditEventRow } from './audit-row';

export const auditExportFilters = z
  .object({
    from: z.iso.datetime({ offset: true }).optional(),
    to: z.iso.datetime({ offset: true }).optional(),
    actorUserId: z.uuid().optional(),
    agentClientId: z.uuid().optional(),
    upstreamId: z.uuid().optional(),
    tool: z.string().max(300).optional(),
    method: z.string().max(200).optional(),
    decision: z.enum(['allow', 'deny', 'require_approval']).optional(),
    outcome: z.string().max(50).optional(),
  })
  .strict();
export type AuditExportFilters = z.infer<typeof auditExportFilters>;
export type AuditExportFormat = 'csv' | 'jsonl';

/**
 * 2: rows carry `recorded_at` and `hash_version` (each row hashed with its own version, the manifest's `hashVersion`
 * the newest a row may have). 1: neither, every row hashed with version 1. `verifyExportFile` reads both.
 */
export const EXPORT_MANIFEST_VERSION = 2;
type ExportManifestVersion = 1 | 2;

export interface AuditExportManifest {
  readonly manifestVersion: ExportManifestVersion;
  readonly hashVersion: number;
  readonly tenantId: string;
  readonly format: AuditExportFormat;
  readonly file: string;
  readonly sha256: string;
  readonly filters: AuditExportFilters;
  readonly generatedAt: string;
  readonly rowCount: number;
  readonly firstSeq: string | null;
  readonly lastSeq: string | null;
  readonly firstHash: string | null;
  readonly lastHash: string | null;
  /** The chain the export was cut from: its retention checkpoint and head when the export started. */
  readonly chainRange: {
    readonly fromSeq: string;
    readonly fromHash: string | null;
    readonly headSeq: string;
    readonly headHash: string | null;
  };
  /** True when no filter applied: rows are consecutive links and the whole range can be re-verified offline. */
  readonly contiguous: boolean;
  /**
   * The newest signed anchor within the chain range when the export was written (null: none yet; absent in manifests
   * from before anchors). With the worker's public key it proves the rows up to its seq offline (docs/audit.md).
   */
  readonly anchor?: AuditAnchor | null;
}

/** CSV header of manifest version 1: one column per chained field of hash version 1, and the links. */
const CSV_COLUMNS_V1 = [
  'id',
  'tenant_id',
  'seq',
  'occurred_at',
  'kind',
  'method',
  'actor_user_id',
  'agent_client_id',
  'api_key_id',
  'mcp_session_id',
  'upstream_id',
  'tool',
  'target_type',
  'target_id',
  'decision',
  'reason',
  'snapshot_version',
  'approval_id',
  'latency_ms',
  'arguments',
  'outcome',
  'error_code',
  'trace_id',
  'prev_hash',
  'hash',
] as const;

/** CSV header: one column per chained field, the stored time and the row's hash version, and the links. */
export const CSV_COLUMNS = [...CSV_COLUMNS_V1.slice(0, -2), 'recorded_at', 'hash_version', 'prev_hash', 'hash'] as const;
type CsvColumn = (typeof CSV_COLUMNS)[number];
const csvColumns = (version: ExportManifestVersion): readonly CsvColumn[] => (version === 1 ? CSV_COLUMNS_V1 : CSV_COLUMNS);

const str = (n: number | null) => (n === null ? null : String(n));

function csvCells(link: StoredChainLink, version: ExportManifestVersion = EXPORT_MANIFEST_VERSION): (string | null)[] {
  const stored = version === 1 ? [] : [link.recordedAt ?? null, String(link.hashVersion ?? 1)];
  return [
    link.id,
    link.tenantId,
    link.seq,
    link.occurredAt,
    link.kind,
    link.method,
    link.actorUserId,
    link.agentClientId,
    link.apiKeyId,
    link.mcpSessionId,
    link.upstreamId,
    link.tool,
    link.targetType,
    link.targetId,
    link.decision,
    link.reason,
    str(link.snapshotVersion),
    link.approvalId,
    str(link.latencyMs),
    link.arguments === null || link.arguments === undefined ? null : JSON.stringify(link.arguments),
    link.outcome,
    link.errorCode,
    link.traceId,
    ...stored,
    link.prevHash,
    link.hash,
  ];
}

function linkFromCells(cells: readonly (string | null)[], version: ExportManifestVersion): StoredChainLink {
  const columns = csvColumns(version);
  const get = (name: CsvColumn) => {
    const at = columns.indexOf(name);
    return at < 0 ? null : (cells[at] ?? null);
  };
  const num = (name: CsvColumn) => {
    const v = get(name);
    return v === null ? null : Number(v);
  };
  // A version-1 file's rows are all of hash version 1, with no stored time (absent, as the hash then leaves it out).
  const stored = version === 1 ? {} : { recordedAt: get('recorded_at'), hashVersion: num('hash_version') as AuditHashVersion };
  const args = get('arguments');
  return {
    id: get('id') ?? '',
    tenantId: get('tenant_id') ?? '',
    seq: get('seq') ?? '',
    occurredAt: get('occurred_at') ?? '',
    kind: get('kind') ?? '',
    method: get('method') ?? '',
    actorUserId: get('actor_user_id'),
    agentClientId: get('agent_client_id'),
    apiKeyId: get('api_key_id'),
    mcpSessionId: get('mcp_session_id'),
    upstreamId: get('upstream_id'),
    tool: get('tool'),
    targetType: get('target_type'),
    targetId: get('target_id'),
    decision: get('decision'),
    reason: get('reason'),
    snapshotVersion: num('snapshot_version'),
    approvalId: get('approval_id'),
    latencyMs: num('latency_ms'),
    arguments: args === null ? null : (JSON.parse(args) as unknown),
    outcome: get('outcome') ?? '',
    errorCode: get('error_code'),
    traceId: get('trace_id'),
    ...stored,
    prevHash: get('prev_hash'),
    hash: get('hash') ?? '',
  };
}

function whereClause(filters: AuditExportFilters, params: unknown[]): string {
  const parts: string[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    parts.push(sql.replace('?', `$${params.length}`));
  };
  if (filters.from) add('occurred_at >= ?::timestamptz', filters.from);
  if (filters.to) add('occurred_at < ?::timestamptz', filters.to);
  if (filters.actorUserId) add('actor_user_id = ?::uuid', filters.actorUserId);
  if (filters.agentClientId) add('agent_client_id = ?::uuid', filters.agentClientId);
  if (filters.upstreamId) add('upstream_id = ?::uuid', filters.upstreamId);
  if (filters.tool) add('tool = ?', filters.tool);
  if (filters.method) add('method = ?', filters.method);
  if (filters.decision) add('decision = ?::audit_decision', filters.decision);
  if (filters.outcome) add('outcome = ?', filters.outcome);
  return parts.map((p) => ` AND ${p}`).join('');
}

export interface ExportAuditEventsOptions {
  readonly format: AuditExportFormat;
  readonly filters: AuditExportFilters;
  /** The data file to write; the manifest goes to `<outPath>.manifest.json`, the digest to `<outPath>.sha256`. */
  readonly outPath: string;
  /**
   * The data file's name as it is to be published, named in the manifest and the digest line: a file written under a
   * staging name and renamed afterwards (an export job's run). Default: `outPath`'s own name.
   */
  readonly fileName?: string;
  /** Rows per page (keyset on seq; constant memory). */
  readonly pageSize?: number;
  /** Asked before each page: true stops the export (ExportCancelledError), its partial file removed. */
  readonly cancelled?: () => Promise<boolean>;
}

/** The export was cancelled while it ran (see `ExportAuditEventsOptions.cancelled`). */
export class ExportCancelledError extends Error {
  constructor() {
    super('the export was cancelled');
    this.name = 'ExportCancelledError';
  }
}

/**
 * An unfiltered export (one that vouches for a contiguous run of the chain) met a gap: retention deleted events between
 * two of its pages. Nothing is kept; the export can run again, from the new checkpoint.
 */
export class ExportInterruptedError extends Error {
  constructor() {
    super('retention removed audit events while the export read them');
    this.name = 'ExportInterruptedError';
  }
}

export interface ExportResult {
  readonly manifest: AuditExportManifest;
  readonly manifestPath: string;
  readonly sha256Path: string;
}

/**
 * Streams a tenant's audit events matching `filters`, in chain order, to a CSV or JSONL file with constant memory:
 * pages of `pageSize` rows by keyset on `seq`, each page read in its own short `withTenant` transaction (row-level
 * security applies), written with backpressure while a SHA-256 is computed over the bytes. The export is cut at
 * the chain head read when it starts, so events arriving meanwhile are not half-included. Writes to a temporary
 * name and renames when complete, then writes `<file>.sha256` and `<file>.manifest.json`.
 */
export async function exportAuditEvents(
  db: PortcullisPrismaClient,
  tenantId: TenantId,
  options: ExportAuditEventsOptions,
): Promise<ExportResult> {
  const filters = auditExportFilters.parse(options.filters);
  const pageSize = options.pageSize ?? 1_000;
  const head = await withTenant(db, tenantId, async (tx) => {
    const rows = await tx.$queryRawUnsafe<
      {
        last_seq: bigint;
        last_hash: string | null;
        pruned_through_seq: bigint;
        pruned_through_hash: string | null;
      }[]
    >(
      'SELECT last_seq, last_hash, pruned_through_seq, pruned_through_hash FROM audit_chain_heads WHERE tenant_id = $1::uuid',
      tenantId,
    );
    return rows[0] ?? { last_seq: 0n, last_hash: null, pruned_through_seq: 0n, pruned_through_hash: null };
  });

  const tmpPath = `${options.outPath}.partial`;
  // Owner and group only: the file holds the tenant's call arguments the filters select (the control plane, which
  // serves it, runs as the same user or in the same group).
  const out = createWriteStream(tmpPath, { encoding: 'utf8', mode: 0o640 });
  const digest = createHash('sha256');
  const write = async (text: string) => {
    digest.update(text, 'utf8');
    if (!out.write(text)) await once(out, 'drain');
  };

  let rowCount = 0;
  let first: StoredChainLink | undefined;
  let last: StoredChainLink | undefined;
  // An unfiltered export vouches for every event from the checkpoint to the head, one after another: what it read must
  // be that. Retention may move the checkpoint while it reads (its own transactions, page by page): before the first
  // page, the export starts from the new checkpoint; between pages, it gave a gap, and the export stops.
  const contiguous = Object.keys(filters).length === 0;
  let fromSeq = BigInt(head.pruned_through_seq);
  let fromHash = head.pruned_through_hash;
  const checkpointNow = () =>
    withTenant(db, tenantId, async (tx) => {
      const rows = await tx.$queryRawUnsafe<{ pruned_through_seq: bigint; pruned_through_hash: string | null }[]>(
        'SELECT pruned_through_seq, pruned_through_hash FROM audit_chain_heads WHERE tenant_id = $1::uuid',
        tenantId,
      );
      return rows[0];
    });
  /** The checkpoint retention has moved to meanwhile, if `first` follows it; else the export cannot go on. */
  const restartAt = async (next: StoredChainLink | undefined): Promise<void> => {
    const moved = await checkpointNow();
    const expectedNext = next === undefined ? BigInt(head.last_seq) : BigInt(next.seq) - 1n;
    const fits = moved !== undefined && BigInt(moved.pruned_through_seq) === expectedNext && (next === undefined || moved.pruned_through_hash === next.prevHash);
    if (!fits) throw new ExportInterruptedError();
    fromSeq = BigInt(moved.pruned_through_seq);
    fromHash = moved.pruned_through_hash;
  };
  try {
    if (options.format === 'csv') await write(encodeRow([...CSV_COLUMNS]));
    let afterSeq = BigInt(head.pruned_through_seq);
    const headSeq = BigInt(head.last_seq);
    while (afterSeq < headSeq) {
      if (options.cancelled !== undefined && (await options.cancelled())) throw new ExportCancelledError();
      const params: unknown[] = [tenantId, afterSeq, headSeq];
      const where = whereClause(filters, params);
      params.push(pageSize);
      const rows = await withTenant(db, tenantId, (tx) =>
        tx.$queryRawUnsafe<AuditEventRow[]>(
          `SELECT ${AUDIT_EVENT_COLUMNS} FROM audit_events
           WHERE tenant_id = $1::uuid AND seq > $2 AND seq <= $3${where}
           ORDER BY seq LIMIT $${params.length}`,
          ...params,
        ),
      );
      if (rows.length === 0) break;
      for (const row of rows) {
        const link = linkFromRow(row);
        if (contiguous && BigInt(link.seq) !== (last === undefined ? fromSeq : BigInt(last.seq)) + 1n) {
          if (last !== undefined) throw new ExportInterruptedError();
          await restartAt(link);
        }
        first ??= link;
        last = link;
        rowCount += 1;
        await write(options.format === 'csv' ? encodeRow(csvCells(link)) : `${JSON.stringify(link)}\n`);
      }
      afterSeq = BigInt((rows[rows.length - 1] as AuditEventRow).seq);
      if (rows.length < pageSize) break;
    }
    // Nothing read, though the head said there was: pruned meanwhile, all of it.
    if (contiguous && last === undefined && fromSeq < headSeq) await restartAt(undefined);
    // A filtered export vouches for every matching event of its range too, and its rows have gaps of their own, so a
    // gap retention made is not seen in them: the checkpoint is read again. Moved past the range's start, it may have
    // taken matching events before they were read. None read up to it: the range starts there instead (true of what
    // was read). Some read up to it: others of them may be gone, and the export cannot vouch for the range.
    if (!contiguous) {
      const moved = await checkpointNow();
      if (moved !== undefined && BigInt(moved.pruned_through_seq) > fromSeq) {
        if (first !== undefined && BigInt(first.seq) <= BigInt(moved.pruned_through_seq)) throw new ExportInterruptedError();
        fromSeq = BigInt(moved.pruned_through_seq);
        fromHash = moved.pruned_through_hash;
      }
    }
    out.end();
    await once(out, 'finish');
  } catch (error) {
    // A write or the file's open may still be under way: once destroyed it fails (nothing to report), and the file is
    // removed only after the stream has closed (an open finishing later would create it again).
    out.on('error', () => undefined);
    out.destroy();
    if (!out.closed) await once(out, 'close').catch(() => undefined);
    await rm(tmpPath, { force: true }).catch(() => undefined);
    throw error;
  }
  await rename(tmpPath, options.outPath);

  const sha256 = digest.digest('hex');
  const file = options.fileName ?? path.basename(options.outPath);
  // Read after the rows: the newest anchor at or before the head, also one the worker signed while the export read.
  const anchor = await withTenant(db, tenantId, (tx) =>
    latestAnchor(tx, tenantId, { afterSeq: fromSeq, atOrBeforeSeq: BigInt(head.last_seq) }),
  );
  const manifest: AuditExportManifest = {
    manifestVersion: EXPORT_MANIFEST_VERSION,
    hashVersion: AUDIT_HASH_VERSION,
    tenantId,
    format: options.format,
    file,
    sha256,
    filters,
    generatedAt: new Date().toISOString(),
    rowCount,
    firstSeq: first?.seq ?? null,
    lastSeq: last?.seq ?? null,
    firstHash: first?.hash ?? null,
    lastHash: last?.hash ?? null,
    chainRange: {
      fromSeq: fromSeq.toString(),
      fromHash,
      headSeq: head.last_seq.toString(),
      headHash: head.last_hash,
    },
    contiguous,
    anchor: anchor ?? null,
  };
  const sha256Path = `${options.outPath}.sha256`;
  const manifestPath = `${options.outPath}.manifest.json`;
  await writeFile(sha256Path, `${sha256}  ${file}\n`, { mode: 0o640 });
  await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o640 });
  return { manifest, manifestPath, sha256Path };
}

const seqText = z.string().regex(/^\d{1,19}$/);
const hashText = z.string().regex(/^[0-9a-f]{64}$/);
/** What `verifyExportFile` relies on in a manifest (the rest is for people). */
const manifestShape = z.object({
  tenantId: z.string(),
  format: z.enum(['csv', 'jsonl']),
  sha256: z.string(),
  rowCount: z.number().int().min(0),
  firstHash: hashText.nullable(),
  lastHash: hashText.nullable(),
  chainRange: z.object({ fromSeq: seqText, fromHash: hashText.nullable(), headSeq: seqText, headHash: hashText.nullable() }),
  contiguous: z.boolean(),
  anchor: z
    .object({ tenantId: z.string(), seq: seqText, hash: z.string(), signedAt: z.string(), keyId: z.string(), signature: z.string() })
    .nullable()
    .optional(),
});

export type ExportVerdict =
  | {
      readonly ok: true;
      readonly rows: number;
      readonly sha256: string;
      readonly chain: string;
      /**
       * What the check does not prove, and how to prove it. It proves the file and the manifest consistent with each
       * other: everything in them can be recomputed by whoever rewrites both. Only the head hash compared with the live
       * chain, or with the manifest the API serves, shows the rows are the trail's.
       */
      readonly anchor: string;
      /** The signed anchor that proves the rows up to its seq, when verification keys were given and it did. */
      readonly anchored: AuditAnchor | null;
    }
  | { readonly ok: false; readonly problem: string };

export interface VerifyExportOptions {
  /**
   * The audit worker's Ed25519 public keys by key id (`auditVerificationKeys`). With them the manifest's signed anchor
   * is checked: its signature, and (unfiltered exports) the hash of the row at its seq. An export without a valid
   * anchor then fails: the caller asked for proof, not consistency.
   */
  readonly keys?: ReadonlyMap<string, KeyObject>;
}

/**
 * Offline check of an export against its manifest: the file's SHA-256, its row count, every row's own hash (its
 * fields and previous hash), the links between consecutive rows, the first/last hash, and for an unfiltered export
 * that the rows are exactly the chain range from the checkpoint to the head, ending at the head's hash. Streams the
 * file.
 *
 * Internal consistency only: whoever rewrites the rows can recompute every hash, the digest and the manifest. A
 * verdict of `ok` is anchored by comparing the manifest's `chainRange.headHash` with the live chain or with the
 * manifest the API serves (`anchor` says so).
 */
export async function verifyExportFile(
  filePath: string,
  manifestPath: string,
  options: VerifyExportOptions = {},
): Promise<ExportVerdict> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(manifestPath, 'utf8'));
  } catch (error) {
    return { ok: false, problem: `manifest unreadable: ${(error as Error).message}` };
  }
  const versions = parsed as Partial<AuditExportManifest> | null;
  const known =
    (versions?.manifestVersion === 1 && versions.hashVersion === 1) ||
    (versions?.manifestVersion === 2 && AUDIT_HASH_VERSIONS.includes(versions.hashVersion as AuditHashVersion));
  if (!known) {
    return {
      ok: false,
      problem: `unsupported manifest (version ${String(versions?.manifestVersion)}, hash ${String(versions?.hashVersion)})`,
    };
  }
  // Every field the check reads, of the type it reads it as: a manifest edited by hand is a finding, not a crash.
  const shape = manifestShape.safeParse(parsed);
  if (!shape.success) {
    const issue = shape.error.issues[0];
    return { ok: false, problem: `manifest malformed: ${issue ? `${issue.path.join('.') || '(top)'}: ${issue.message}` : 'invalid'}` };
  }
  const manifest = parsed as AuditExportManifest;
  const version = manifest.manifestVersion;

  const digest = createHash('sha256');
  // The file as the export would write the rows it holds: it must be byte for byte the file. The hashes cover the
  // rows' decoded fields only, so without this a file with a spreadsheet formula guard taken off a cell (decoded the
  // same), a cell beyond the header, or a JSON field named twice (the last one parsed) verified as the export.
  const canonical = createHash('sha256');
  let rows = 0;
  let header = manifest.format === 'csv';
  let prev: StoredChainLink | undefined;
  let first: StoredChainLink | undefined;
  let problem: string | undefined;
  // Its shape checked above (`manifestShape`): null or absent, or every field a string.
  const anchorSeq = manifest.anchor?.seq;
  /** The file's row at the anchor's seq, if it holds one. */
  let anchorRow: StoredChainLink | undefined;
  const csv = new CsvRowParser();
  let pendingLine = '';

  const check = (link: StoredChainLink): void => {
    if (problem) return;
    rows += 1;
    first ??= link;
    if (link.seq === anchorSeq) anchorRow = link;
    if (link.tenantId !== manifest.tenantId)
      problem = `row ${rows} (seq ${link.seq}) belongs to another tenant`;
    else if ((link.hashVersion ?? 1) > manifest.hashVersion || !AUDIT_HASH_VERSIONS.includes(link.hashVersion ?? 1)) {
      problem = `row ${rows} (seq ${link.seq}): hash version ${String(link.hashVersion)} is not one this export can hold`;
    } else if (computeAuditHash(stripLinks(link), link.prevHash) !== link.hash) {
      problem = `row ${rows} (seq ${link.seq}, id ${link.id}): hash_mismatch`;
    } else if (prev && BigInt(link.seq) <= BigInt(prev.seq))
      problem = `row ${rows} (seq ${link.seq}): out of order`;
    else if (prev && BigInt(link.seq) === BigInt(prev.seq) + 1n && link.prevHash !== prev.hash) {
      problem = `row ${rows} (seq ${link.seq}, id ${link.id}): prev_hash_mismatch`;
    } else if (manifest.contiguous) {
      const expectedSeq = prev ? BigInt(prev.seq) + 1n : BigInt(manifest.chainRange.fromSeq) + 1n;
      const expectedPrev = prev ? prev.hash : manifest.chainRange.fromHash;
      if (BigInt(link.seq) !== expectedSeq) problem = `row ${rows} (seq ${link.seq}): seq_gap`;
      else if (link.prevHash !== expectedPrev) problem = `row ${rows} (seq ${link.seq}): prev_hash_mismatch`;
    }
    prev = link;
  };

  const handleCsvRows = (parsed: (string | null)[][]) => {
    for (const cells of parsed) {
      if (header) {
        header = false;
        if (cells.join(',') !== csvColumns(version).join(',')) problem ??= 'unexpected CSV header';
        canonical.update(encodeRow([...csvColumns(version)]), 'utf8');
        continue;
      }
      try {
        const link = linkFromCells(cells, version);
        check(link);
        canonical.update(encodeRow(csvCells(link, version)), 'utf8');
      } catch {
        problem ??= `row ${rows + 1}: unparseable`;
      }
    }
  };
  const handleJsonLines = (text: string) => {
    const lines = (pendingLine + text).split('\n');
    pendingLine = lines.pop() ?? '';
    for (const line of lines) {
      if (line === '') continue;
      try {
        const link = JSON.parse(line) as StoredChainLink;
        check(link);
        canonical.update(`${JSON.stringify(inWrittenOrder(link, version))}\n`, 'utf8');
      } catch {
        problem ??= `row ${rows + 1}: unparseable`;
      }
    }
  };

  // One decoder across chunks: a character whose bytes straddle two chunks is decoded whole (each chunk decoded on
  // its own turned it into two U+FFFD, and a valid export failed its hashes).
  const decoder = new StringDecoder('utf8');
  try {
    for await (const chunk of createReadStream(filePath)) {
      const buf = chunk as Buffer;
      digest.update(buf);
      const text = decoder.write(buf);
      if (manifest.format === 'csv') handleCsvRows(csv.push(text));
      else handleJsonLines(text);
    }
  } catch (error) {
    return { ok: false, problem: `export unreadable: ${(error as Error).message}` };
  }
  const rest = decoder.end();
  if (manifest.format === 'csv') handleCsvRows(csv.push(rest).concat(csv.end()));
  else handleJsonLines(`${rest}\n`);

  const sha256 = digest.digest('hex');
  if (sha256 !== manifest.sha256)
    return { ok: false, problem: `sha256 ${sha256} does not match the manifest's ${manifest.sha256}` };
  if (problem) return { ok: false, problem };
  if (canonical.digest('hex') !== sha256) {
    return { ok: false, problem: 'the file is not as the export writes its rows: a cell or field added or named twice, a value written another way, or a formula guard taken off' };
  }
  if (rows !== manifest.rowCount)
    return { ok: false, problem: `${rows} row(s), manifest says ${manifest.rowCount}` };
  if ((first?.hash ?? null) !== manifest.firstHash || (prev?.hash ?? null) !== manifest.lastHash) {
    return { ok: false, problem: 'first/last hash differ from the manifest' };
  }
  if (manifest.contiguous && (prev?.seq ?? manifest.chainRange.fromSeq) !== manifest.chainRange.headSeq) {
    return {
      ok: false,
      problem: `rows end at seq ${prev?.seq ?? '-'}, the chain head was ${manifest.chainRange.headSeq}`,
    };
  }
  // The rows must end at the head the export recorded, hash as well as seq: otherwise rows rewritten from some point on,
  // every later hash recomputed and the manifest's own first/last hash and digest updated, would verify against a
  // manifest that still names the genuine head. (No rows: the checkpoint the export started from is the head.)
  const endHash = prev?.hash ?? manifest.chainRange.fromHash;
  if (manifest.contiguous && endHash !== manifest.chainRange.headHash) {
    return {
      ok: false,
      problem: `rows end at hash ${endHash ?? '-'}, the chain head's hash was ${manifest.chainRange.headHash ?? '-'}`,
    };
  }
  const chain = manifest.contiguous
    ? `seq ${manifest.chainRange.fromSeq}..${manifest.chainRange.headSeq} complete, head hash ${manifest.chainRange.headHash ?? '-'}`
    : `filtered subset of seq ${manifest.chainRange.fromSeq}..${manifest.chainRange.headSeq}, every row's hash verified`;
  if (options.keys) {
    const proven = checkAnchor(manifest, anchorRow, options.keys);
    if (!proven.ok) return proven;
    return { ok: true, rows, sha256, chain, anchor: proven.note, anchored: proven.anchored };
  }
  const unanchored = 'file and manifest agree with each other, which a copy rewritten together with its manifest can too';
  const signed = anchorSeq === undefined ? '' : ` (the manifest carries an anchor signed at seq ${anchorSeq}: give the worker's public key to check it)`;
  const anchor = manifest.contiguous
    ? `${unanchored}; to anchor it, the live chain's hash at seq ${manifest.chainRange.headSeq} (audit:verify --tenant, or the audit API) or the headHash of the manifest the API serves must be ${manifest.chainRange.headHash ?? '-'}${signed}`
    : `${unanchored}; to anchor it, compare the rows' hashes with the live chain (the audit API's events) or the manifest with the one the API serves`;
  return { ok: true, rows, sha256, chain, anchor, anchored: null };
}

/**
 * The manifest's anchor checked with `keys`: signed by one of them, for this tenant, within the export's chain range,
 * and (an unfiltered export, which holds every row of the range) naming the hash of the file's row at its seq.
 */
function checkAnchor(
  manifest: AuditExportManifest,
  row: StoredChainLink | undefined,
  keys: ReadonlyMap<string, KeyObject>,
): { ok: true; note: string; anchored: AuditAnchor | null } | { ok: false; problem: string } {
  const anchor = manifest.anchor;
  if (!anchor) {
    return { ok: false, problem: 'the manifest carries no signed anchor: the export cannot be proven offline (compare its head with the live chain, or export again once the chain is anchored)' };
  }
  const signature = verifyAnchorSignature(anchor, keys);
  if (signature !== 'valid') {
    return { ok: false, problem: signature === 'unknown_key' ? `the anchor is signed with key ${anchor.keyId}, not one of the keys given` : 'the anchor\'s signature does not verify' };
  }
  if (anchor.tenantId !== manifest.tenantId) return { ok: false, problem: 'the anchor is for another tenant' };
  const seq = BigInt(anchor.seq);
  if (seq <= BigInt(manifest.chainRange.fromSeq) || seq > BigInt(manifest.chainRange.headSeq)) {
    return { ok: false, problem: `the anchor's seq ${anchor.seq} is outside the export's chain range` };
  }
  const signedBy = `anchor at seq ${anchor.seq} signed ${anchor.signedAt} with key ${anchor.keyId}`;
  if (manifest.contiguous) {
    if (row?.hash !== anchor.hash) return { ok: false, problem: `row at seq ${anchor.seq}: anchor_mismatch (its hash is not the one the anchor signed)` };
    const tail = seq === BigInt(manifest.chainRange.headSeq) ? '' : `; rows after it (to seq ${manifest.chainRange.headSeq}) are not signed yet: a later export or the live chain covers them`;
    return { ok: true, note: `rows through seq ${anchor.seq} proven by the ${signedBy}${tail}`, anchored: anchor };
  }
  if (row !== undefined && row.hash !== anchor.hash) return { ok: false, problem: `row at seq ${anchor.seq}: anchor_mismatch (its hash is not the one the anchor signed)` };
  // Its rows are not linked to one another, so no anchor can vouch for them; and `contiguous` is not signed, so a
  // rewritten full export relabelled as filtered must not pass for proven either.
  return {
    ok: false,
    problem: `not provable offline: a filtered export's rows are not linked to the ${signedBy}; compare their hashes with the live chain (the audit API's events), or verify an unfiltered export`,
  };
}

/** A row's fields in the order the export writes them (`linkFromRow`'s), and only those of the file's version. */
function inWrittenOrder(link: StoredChainLink, version: ExportManifestVersion): StoredChainLink {
  const stored = version === 1 ? {} : { recordedAt: link.recordedAt, hashVersion: link.hashVersion };
  return {
    id: link.id,
    tenantId: link.tenantId,
    seq: link.seq,
    occurredAt: link.occurredAt,
    kind: link.kind,
    method: link.method,
    actorUserId: link.actorUserId,
    agentClientId: link.agentClientId,
    apiKeyId: link.apiKeyId,
    mcpSessionId: link.mcpSessionId,
    upstreamId: link.upstreamId,
    tool: link.tool,
    targetType: link.targetType,
    targetId: link.targetId,
    decision: link.decision,
    reason: link.reason,
    snapshotVersion: link.snapshotVersion,
    approvalId: link.approvalId,
    latencyMs: link.latencyMs,
    arguments: link.arguments,
    outcome: link.outcome,
    errorCode: link.errorCode,
    traceId: link.traceId,
    ...stored,
    prevHash: link.prevHash,
    hash: link.hash,
  };
}

function stripLinks(link: StoredChainLink) {
  const { prevHash: _prev, hash: _hash, ...fields } = link;
  return fields;
}
