import { verifyAnchorSignature, verifyChain, type AuditAnchor } from '@portcullis/audit/chain';
import type { SystemPrismaClient, TenantTransaction } from '@portcullis/data/db';
import type { KeyObject } from 'node:crypto';
import { anchorsBetween, highestAnchoredSeq } from './audit-anchors';
import { AUDIT_EVENT_COLUMNS, linkFromRow, type AuditEventRow } from './audit-row';

export type ChainProblem =
  | 'hash_mismatch'
  | 'prev_hash_mismatch'
  | 'seq_gap'
  /** Rows are missing after the last stored one: the head says the chain is longer (tail deleted). */
  | 'head_mismatch'
  /** A signed anchor names a hash the event at its seq no longer has: events at or before it were rewritten. */
  | 'anchor_mismatch'
  /** An anchor's signature does not verify, or names a key that is not among the verification keys. */
  | 'anchor_invalid'
  /**
   * The retention checkpoint is not one retention signed, though anchors lie before it (it was moved, and the events
   * before it deleted, by someone else), or events it says were deleted are still there.
   */
  | 'checkpoint_mismatch';

/** What the signed anchors said, when verification keys were given. */
export interface AnchorsChecked {
  /** Anchors checked against the chain (each valid and matching). */
  readonly checked: number;
  /** The newest of them: the chain is proven up to its seq. Null when the tenant has no anchor yet. */
  readonly last: AuditAnchor | null;
}

export type TenantChainReport =
  | {
      readonly ok: true;
      readonly tenantId: string;
      readonly checked: number;
      /** Where verification started: the retention checkpoint (0 / null if nothing was ever pruned). */
      readonly fromSeq: string;
      readonly fromHash: string | null;
      readonly lastSeq: string;
      readonly lastHash: string | null;
      /** Present when `keys` were given. */
      readonly anchors?: AnchorsChecked;
    }
  | {
      readonly ok: false;
      readonly tenantId: string;
      readonly checked: number;
      readonly brokenAt: { readonly id: string | null; readonly seq: string; readonly problem: ChainProblem };
    };

export interface VerifyTenantChainOptions {
  /** Rows per keyset page (constant memory whatever the chain length). */
  readonly batchSize?: number;
  /**
   * Ed25519 public keys by key id (`auditVerificationKeys`): the tenant's signed anchors are checked too, each against
   * the event at its seq. Without them anchors are not looked at (an unchecked signature proves nothing).
   */
  readonly keys?: ReadonlyMap<string, KeyObject>;
}

/**
 * Streams a tenant's chain from Postgres in `seq` order, a page at a time (keyset pagination on the
 * `(tenant_id, seq)` unique index), and reports OK or the first broken link. Starts at the retention checkpoint
 * and ends by comparing with the chain head, so deleted leading, middle or trailing rows are all detected.
 * Uses the system client: an operator's cross-tenant tool.
 */
export async function verifyTenantChain(
  db: SystemPrismaClient,
  tenantId: string,
  options: VerifyTenantChainOptions = {},
): Promise<TenantChainReport> {
  // Retention may move the checkpoint (deleting the rows before it) while the walk runs: a walk that then finds its
  // first rows gone starts again from the new checkpoint instead of reporting a gap that is no tampering.
  for (let attempt = 1; ; attempt++) {
    const report = await verifyOnce(db, tenantId, options.batchSize ?? 2_000, options.keys);
    if (report.ok || attempt === 3 || !(await checkpointMoved(db, tenantId, report.fromSeq))) return report.report;
  }
}

async function checkpointMoved(db: SystemPrismaClient, tenantId: string, fromSeq: bigint): Promise<boolean> {
  const rows = await db.$queryRawUnsafe<{ pruned_through_seq: bigint }[]>(
    'SELECT pruned_through_seq FROM audit_chain_heads WHERE tenant_id = $1::uuid',
    tenantId,
  );
  return rows[0] !== undefined && BigInt(rows[0].pruned_through_seq) > fromSeq;
}

/**
 * What is wrong with the retention checkpoint `from`, as the seq to name, or undefined. Retention deletes the events up
 * to its checkpoint in the transaction that moves it, and (with the worker's key) signs it: events still at or before
 * it, or anchors before it with no valid anchor of the checkpoint itself, mean someone else moved it.
 */
export async function checkpointProblem(
  db: SystemPrismaClient | TenantTransaction,
  tenantId: string,
  from: { readonly seq: bigint; readonly prevHash: string | null },
  keys: ReadonlyMap<string, KeyObject>,
): Promise<string | undefined> {
  if (from.seq === 0n) return undefined;
  const left = await db.$queryRawUnsafe<{ seq: bigint }[]>(
    'SELECT seq FROM audit_events WHERE tenant_id = $1::uuid AND seq <= $2 ORDER BY seq LIMIT 1',
    tenantId,
    from.seq,
  );
  if (left[0]) return BigInt(left[0].seq).toString();
  const before = await anchorsBetween(db, tenantId, from.seq - 1n, from.seq);
  const own = before[0];
  if (own && own.hash === from.prevHash && verifyAnchorSignature(own, keys) === 'valid') return undefined;
  // No anchor of the checkpoint: fine only while nothing before it was ever anchored (retention without a key, or
  // before anchors existed).
  const earlier = await db.$queryRawUnsafe<{ seq: bigint }[]>(
    'SELECT seq FROM audit_anchors WHERE tenant_id = $1::uuid AND seq <= $2 LIMIT 1',
    tenantId,
    from.seq,
  );
  return earlier[0] ? from.seq.toString() : undefined;
}

/** A row of CHAIN_HEAD_SQL: the head (zeros and nulls when there is none) and the first event past it, if any. */
export interface ChainHeadRow {
  readonly last_seq: bigint;
  readonly last_hash: string | null;
  readonly pruned_through_seq: bigint;
  readonly pruned_through_hash: string | null;
  readonly beyond: bigint | null;
}

/**
 * A tenant's chain head ($1) and the first of its events past the head, in one statement and so one snapshot (events
 * and the head they advance commit together): there should be none. A head removed or set back (SQL access) would
 * otherwise make the chain look intact while events lie outside it.
 */
export const CHAIN_HEAD_SQL = `SELECT COALESCE(h.last_seq, 0) AS last_seq, h.last_hash, COALESCE(h.pruned_through_seq, 0) AS pruned_through_seq,
       h.pruned_through_hash,
       (SELECT e.seq FROM audit_events e WHERE e.tenant_id = $1::uuid AND e.seq > COALESCE(h.last_seq, 0) ORDER BY e.seq LIMIT 1) AS beyond
  FROM (SELECT 1) AS one LEFT JOIN audit_chain_heads h ON h.tenant_id = $1::uuid`;

async function verifyOnce(
  db: SystemPrismaClient,
  tenantId: string,
  batchSize: number,
  keys: ReadonlyMap<string, KeyObject> | undefined,
): Promise<{ ok: boolean; fromSeq: bigint; report: TenantChainReport }> {
  // Read before the head: an anchor is stored after the events it signs, and the head never moves back, so an anchor
  // seen now past the head read next means events removed and the head set back below it.
  const anchoredSeq = keys ? await highestAnchoredSeq(db, tenantId) : 0n;
  const heads = await db.$queryRawUnsafe<ChainHeadRow[]>(CHAIN_HEAD_SQL, tenantId);
  const { beyond, ...head } = heads[0] ?? { last_seq: 0n, last_hash: null, pruned_through_seq: 0n, pruned_through_hash: null, beyond: null };
  if (beyond !== null) {
    const report: TenantChainReport = { ok: false, tenantId, checked: 0, brokenAt: { id: null, seq: BigInt(beyond).toString(), problem: 'head_mismatch' } };
    return { ok: false, fromSeq: BigInt(head.pruned_through_seq), report };
  }
  const from = { seq: BigInt(head.pruned_through_seq), prevHash: head.pruned_through_hash };
  const headSeq = BigInt(head.last_seq);
  const broken = (report: TenantChainReport) => ({ ok: false, fromSeq: from.seq, report });
  if (anchoredSeq > headSeq) {
    return broken({ ok: false, tenantId, checked: 0, brokenAt: { id: null, seq: (headSeq + 1n).toString(), problem: 'head_mismatch' } });
  }
  let anchorsChecked = 0;
  let lastAnchor: AuditAnchor | null = null;
  if (keys) {
    const problem = await checkpointProblem(db, tenantId, from, keys);
    if (problem) return broken({ ok: false, tenantId, checked: 0, brokenAt: { id: null, seq: problem, problem: 'checkpoint_mismatch' } });
  }

  let state = from;
  let checked = 0;
  for (;;) {
    // Up to the head read above: events stored during the walk belong to a later verification, not to this one.
    const rows = await db.$queryRawUnsafe<AuditEventRow[]>(
      `SELECT ${AUDIT_EVENT_COLUMNS} FROM audit_events WHERE tenant_id = $1::uuid AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4`,
      tenantId,
      state.seq,
      headSeq,
      batchSize,
    );
    if (rows.length === 0) break;
    const verdict = verifyChain(rows.map(linkFromRow), state);
    if (!verdict.ok) return broken({ ok: false, tenantId, checked: checked + verdict.checked, brokenAt: verdict.brokenAt });
    if (keys) {
      // The anchors within this page: each must be validly signed and name the hash the event at its seq has.
      const first = BigInt((rows[0] as AuditEventRow).seq);
      const lastSeq = BigInt((rows[rows.length - 1] as AuditEventRow).seq);
      for (const anchor of await anchorsBetween(db, tenantId, first - 1n, lastSeq)) {
        const row = rows[Number(BigInt(anchor.seq) - first)] as AuditEventRow;
        const problem = verifyAnchorSignature(anchor, keys) !== 'valid' ? 'anchor_invalid' : row.hash !== anchor.hash ? 'anchor_mismatch' : undefined;
        if (problem) return broken({ ok: false, tenantId, checked: checked + verdict.checked, brokenAt: { id: row.id, seq: anchor.seq, problem } });
        anchorsChecked += 1;
        lastAnchor = anchor;
      }
    }
    checked += verdict.checked;
    const last = rows[rows.length - 1] as AuditEventRow;
    state = { seq: BigInt(last.seq), prevHash: verdict.lastHash };
    if (rows.length < batchSize) break;
  }
  if (state.seq !== headSeq || state.prevHash !== head.last_hash) {
    return broken({ ok: false, tenantId, checked, brokenAt: { id: null, seq: (state.seq + 1n).toString(), problem: 'head_mismatch' } });
  }
  return {
    ok: true,
    fromSeq: from.seq,
    report: {
      ok: true,
      tenantId,
      checked,
      fromSeq: from.seq.toString(),
      fromHash: from.prevHash,
      lastSeq: state.seq.toString(),
      lastHash: state.prevHash,
      ...(keys ? { anchors: { checked: anchorsChecked, last: lastAnchor } } : {}),
    },
  };
}
