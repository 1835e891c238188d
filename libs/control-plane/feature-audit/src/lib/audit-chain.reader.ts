import { verifyAnchorSignature, verifyChain, type AuditAnchor } from '@portcullis/audit/chain';
import {
  anchorsBetween,
  AUDIT_EVENT_COLUMNS,
  CHAIN_HEAD_SQL,
  checkpointProblem,
  highestAnchoredSeq,
  linkFromRow,
  type AuditEventRow,
  type ChainHeadRow,
} from '@portcullis/audit/core';
import type { AuditVerifyResponse } from '@portcullis/contracts/api';
import { withTenant, type PortcullisPrismaClient } from '@portcullis/data/db';
import type { TenantId } from '@portcullis/shared/util-ids';
import type { KeyObject } from 'node:crypto';
import { auditErrors } from './audit.errors';

export interface VerifyBounds {
  /** Continue after this sequence number (an earlier answer's `lastSeq`); absent: from the retention checkpoint. */
  readonly afterSeq?: bigint;
  /** At most this many events in this call. */
  readonly maxEvents?: number;
  /** Stop after the page that passes this many milliseconds (the answer says where to continue). */
  readonly budgetMs?: number;
  readonly pageSize?: number;
  /**
   * The audit worker's public keys: the signed anchors met on the way are checked against their events, and a walk
   * from the retention checkpoint checks the checkpoint (as `npm run audit:verify -- --public-key`).
   */
  readonly keys?: ReadonlyMap<string, KeyObject>;
}

/**
 * Verifies a tenant's chain through the application role (row-level security, one short `withTenant` transaction
 * per keyset page on `(tenant_id, seq)`: constant memory). Same rules as `npm run audit:verify -- --tenant`: starts at
 * the retention checkpoint, checks every link with libs/audit/chain, and ends at the chain head read when it began,
 * so events appended meanwhile are neither half-read nor mistaken for a broken tail. Bounded per call (`maxEvents`,
 * `budgetMs`): an unfinished walk answers `complete: false` with the last verified link, and the next call continues
 * from that link's stored hash (the calls together check what one long walk would).
 */
export async function verifyTenantChainScoped(
  db: PortcullisPrismaClient,
  tenantId: TenantId,
  bounds: VerifyBounds = {},
): Promise<AuditVerifyResponse> {
  // Retention may move the checkpoint (deleting the rows before it) while the walk runs: a walk that then finds the
  // rows it expected gone starts again from the new checkpoint instead of reporting a gap that is no tampering.
  for (let attempt = 1; ; attempt++) {
    const { response, fromSeq } = await verifyOnce(db, tenantId, bounds);
    if (response.ok || attempt === 3 || !(await checkpointMoved(db, tenantId, fromSeq))) return response;
  }
}

async function checkpointMoved(db: PortcullisPrismaClient, tenantId: TenantId, fromSeq: bigint): Promise<boolean> {
  const rows = await withTenant(db, tenantId, (tx) =>
    tx.$queryRawUnsafe<{ pruned_through_seq: bigint }[]>('SELECT pruned_through_seq FROM audit_chain_heads WHERE tenant_id = $1::uuid', tenantId),
  );
  return rows[0] !== undefined && BigInt(rows[0].pruned_through_seq) > fromSeq;
}

async function verifyOnce(
  db: PortcullisPrismaClient,
  tenantId: TenantId,
  bounds: VerifyBounds,
): Promise<{ readonly response: AuditVerifyResponse; readonly fromSeq: bigint }> {
  const pageSize = bounds.pageSize ?? 2_000;
  const maxEvents = bounds.maxEvents ?? 1_000_000;
  const deadline = Date.now() + (bounds.budgetMs ?? 10_000);
  const keys = bounds.keys;
  // Read before the head (as the CLI does): an anchor past the head read next means events removed and the head set back.
  const anchoredSeq = keys ? await withTenant(db, tenantId, (tx) => highestAnchoredSeq(tx, tenantId)) : 0n;
  // The head and the first event past it, which would mean a head removed or set back (CHAIN_HEAD_SQL).
  const { beyond, ...head } = await withTenant(db, tenantId, async (tx) => {
    const rows = await tx.$queryRawUnsafe<ChainHeadRow[]>(CHAIN_HEAD_SQL, tenantId);
    return rows[0] ?? { last_seq: 0n, last_hash: null, pruned_through_seq: 0n, pruned_through_hash: null, beyond: null };
  });
  const headSeq = BigInt(head.last_seq);
  if (beyond !== null) {
    return { fromSeq: BigInt(head.pruned_through_seq), response: { ok: false, checked: 0, brokenAt: { id: null, seq: BigInt(beyond).toString(), problem: 'head_mismatch' } } };
  }
  if (anchoredSeq > headSeq) {
    return { fromSeq: BigInt(head.pruned_through_seq), response: { ok: false, checked: 0, brokenAt: { id: null, seq: (headSeq + 1n).toString(), problem: 'head_mismatch' } } };
  }
  let from = { seq: BigInt(head.pruned_through_seq), prevHash: head.pruned_through_hash };
  // Whenever the walk starts at the checkpoint: with no afterSeq, and with one at or before it (`afterSeq=0`, what an
  // auditor's tool starts with, skipped this check and passed a trail whose checkpoint was forged: found by a review).
  if (keys && (bounds.afterSeq === undefined || bounds.afterSeq <= from.seq)) {
    const checkpoint = from;
    const problem = await withTenant(db, tenantId, (tx) => checkpointProblem(tx, tenantId, checkpoint, keys));
    if (problem !== undefined) return { fromSeq: from.seq, response: { ok: false, checked: 0, brokenAt: { id: null, seq: problem, problem: 'checkpoint_mismatch' } } };
  }
  let lastAnchor: AuditAnchor | null = null;
  const anchored = () => (keys ? { anchored: lastAnchor && { seq: lastAnchor.seq, hash: lastAnchor.hash, signedAt: lastAnchor.signedAt, keyId: lastAnchor.keyId } } : {});
  if (bounds.afterSeq !== undefined && bounds.afterSeq > from.seq) {
    if (bounds.afterSeq > headSeq) throw auditErrors.verifyBeyondHead(headSeq.toString());
    const after = bounds.afterSeq;
    const stored = await withTenant(db, tenantId, (tx) =>
      tx.$queryRawUnsafe<{ hash: string }[]>('SELECT hash FROM audit_events WHERE tenant_id = $1::uuid AND seq = $2', tenantId, after),
    );
    const link = stored[0];
    if (!link) return { fromSeq: after - 1n, response: { ok: false, checked: 0, brokenAt: { id: null, seq: after.toString(), problem: 'seq_gap' } } };
    from = { seq: after, prevHash: link.hash };
  }
  let state = from;
  let checked = 0;
  while (state.seq < headSeq) {
    if (checked >= maxEvents || Date.now() > deadline) {
      return {
        fromSeq: from.seq,
        response: { ok: true, complete: false, checked, fromSeq: from.seq.toString(), fromHash: from.prevHash, lastSeq: state.seq.toString(), lastHash: state.prevHash, headSeq: headSeq.toString(), ...anchored() },
      };
    }
    const after = state.seq;
    const { rows, anchors } = await withTenant(db, tenantId, async (tx) => {
      const page = await tx.$queryRawUnsafe<AuditEventRow[]>(
        `SELECT ${AUDIT_EVENT_COLUMNS} FROM audit_events
         WHERE tenant_id = $1::uuid AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4`,
        tenantId,
        after,
        headSeq,
        Math.min(pageSize, maxEvents - checked),
      );
      const last = page[page.length - 1];
      return { rows: page, anchors: keys && last ? await anchorsBetween(tx, tenantId, after, BigInt(last.seq)) : [] };
    });
    if (rows.length === 0) break;
    const verdict = verifyChain(rows.map(linkFromRow), state);
    if (!verdict.ok) return { fromSeq: from.seq, response: { ok: false, checked: checked + verdict.checked, brokenAt: verdict.brokenAt } };
    // The page's links hold: each anchor among them must be validly signed and name its event's hash.
    for (const anchor of anchors) {
      const row = rows[Number(BigInt(anchor.seq) - after - 1n)] as AuditEventRow;
      const problem = keys && verifyAnchorSignature(anchor, keys) !== 'valid' ? 'anchor_invalid' : row.hash !== anchor.hash ? 'anchor_mismatch' : undefined;
      if (problem) return { fromSeq: from.seq, response: { ok: false, checked: checked + verdict.checked, brokenAt: { id: row.id, seq: anchor.seq, problem } } };
      lastAnchor = anchor;
    }
    checked += verdict.checked;
    state = { seq: BigInt((rows[rows.length - 1] as AuditEventRow).seq), prevHash: verdict.lastHash };
  }
  if (state.seq !== headSeq || state.prevHash !== head.last_hash) {
    return { fromSeq: from.seq, response: { ok: false, checked, brokenAt: { id: null, seq: (state.seq + 1n).toString(), problem: 'head_mismatch' } } };
  }
  return {
    fromSeq: from.seq,
    response: {
      ok: true,
      complete: true,
      checked,
      fromSeq: from.seq.toString(),
      fromHash: from.prevHash,
      lastSeq: state.seq.toString(),
      lastHash: state.prevHash,
      headSeq: headSeq.toString(),
      ...anchored(),
    },
  };
}
