import type { AuditAnchor, AuditAnchorSigner } from '@portcullis/audit/chain';
import type { SystemPrismaClient, TenantTransaction } from '@portcullis/data/db';

/** An `audit_anchors` row as `$queryRaw` returns it. */
interface AnchorRow {
  readonly tenant_id: string;
  readonly seq: bigint;
  readonly hash: string;
  readonly signed_at: Date;
  readonly key_id: string;
  readonly signature: string;
}

const ANCHOR_COLUMNS = 'tenant_id::text AS tenant_id, seq, hash, signed_at, key_id, signature';

export function anchorFromRow(row: AnchorRow): AuditAnchor {
  return {
    tenantId: row.tenant_id,
    seq: BigInt(row.seq).toString(),
    hash: row.hash,
    signedAt: row.signed_at.toISOString(),
    keyId: row.key_id,
    signature: row.signature,
  };
}

/** The heads a signer signed, by tenant: what it must never contradict. Kept by the caller across sweeps. */
export type SignedHeads = Map<string, { readonly seq: bigint; readonly hash: string }>;

export interface AnchorChainsOptions {
  /** Heads read and signed per statement. */
  readonly batchSize?: number;
  /** Only these tenants' heads (an operator re-anchoring some tenants; specs sharing a database). Default: all. */
  readonly tenantIds?: readonly string[];
  readonly now?: () => Date;
  /**
   * What this signer signed before (updated here). A tenant whose chain no longer has that hash at that seq, or whose
   * anchor of it is gone, is not signed again: someone rewrote the chain and removed the anchor that would show it.
   */
  readonly signed?: SignedHeads;
}

export type AnchorRefusal =
  /** The head names a hash its event does not have (the row or the head rewritten). */
  | 'head_mismatch'
  /** The newest stored anchor names a hash its event no longer has. */
  | 'anchor_mismatch'
  /** A head this signer signed is gone from the chain or from the anchors (rewritten, removed, or the head set back). */
  | 'signed_head_lost';

export interface AnchorChainsResult {
  /** The anchors stored by this run (another replica may have stored the same head first: not counted). */
  readonly anchored: AuditAnchor[];
  /** Tenants left unsigned because their chain contradicts what was signed: for an operator to look at. */
  readonly refused: { readonly tenantId: string; readonly seq: string; readonly problem: AnchorRefusal }[];
}

interface HeadRow {
  readonly tenant_id: string;
  readonly last_seq: bigint;
  readonly last_hash: string;
  readonly pruned_through_seq: bigint;
  /** The event's hash at the head's seq. */
  readonly event_hash: string | null;
  /** The newest stored anchor, and its event's hash now. */
  readonly anchor_seq: bigint | null;
  readonly anchor_hash: string | null;
  readonly anchor_event_hash: string | null;
}

/**
 * Signs the head of every tenant's chain that moved since its last anchor, and stores the anchors. One pass over the
 * tenants in id order (keyset pages), so a busy tenant whose head keeps moving does not keep the pass going. Several
 * workers may run this at once: an anchor already stored for a seq is kept, the other dropped. Runs as
 * portcullis_system (it reads every tenant's head).
 *
 * Signing a rewritten chain would vouch for it, so a head is signed only when (1) its event has the head's hash,
 * (2) the newest stored anchor's event still has that anchor's hash, and (3) every head this signer signed before
 * (`signed`) is still in the chain with its anchor. (3) is what a database writer cannot undo: having rewritten the
 * chain after an anchor and removed that anchor, (1) and (2) hold again, but the worker remembers what it signed.
 */
export async function anchorAuditChains(
  db: SystemPrismaClient,
  signer: AuditAnchorSigner,
  options: AnchorChainsOptions = {},
): Promise<AnchorChainsResult> {
  const batchSize = options.batchSize ?? 500;
  const now = options.now ?? (() => new Date());
  const signed = options.signed;
  const anchored: AuditAnchor[] = [];
  const refused: { tenantId: string; seq: string; problem: AnchorRefusal }[] = [];
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const heads = await db.$queryRawUnsafe<HeadRow[]>(
      `SELECT h.tenant_id::text AS tenant_id, h.last_seq, h.last_hash, h.pruned_through_seq, e.hash AS event_hash,
              la.seq AS anchor_seq, la.hash AS anchor_hash, ea.hash AS anchor_event_hash
         FROM audit_chain_heads h
         LEFT JOIN audit_events e ON e.tenant_id = h.tenant_id AND e.seq = h.last_seq
         LEFT JOIN LATERAL (
           SELECT a.seq, a.hash FROM audit_anchors a WHERE a.tenant_id = h.tenant_id ORDER BY a.seq DESC LIMIT 1
         ) la ON true
         LEFT JOIN audit_events ea ON ea.tenant_id = h.tenant_id AND ea.seq = la.seq
        WHERE h.tenant_id > $1::uuid AND h.last_seq > 0 AND h.last_hash IS NOT NULL
          AND ($3::uuid[] IS NULL OR h.tenant_id = ANY($3::uuid[]))
          AND NOT EXISTS (SELECT 1 FROM audit_anchors a WHERE a.tenant_id = h.tenant_id AND a.seq = h.last_seq)
        ORDER BY h.tenant_id
        LIMIT $2`,
      after,
      batchSize,
      options.tenantIds ?? null,
    );
    if (heads.length === 0) break;
    after = (heads[heads.length - 1] as HeadRow).tenant_id;
    const remembered = signed ? await stillSigned(db, heads, signed) : new Map<string, boolean>();
    const signedAt = new Date(Math.floor(now().getTime())).toISOString();
    const fresh: AuditAnchor[] = [];
    for (const head of heads) {
      const seq = BigInt(head.last_seq);
      const pruned = BigInt(head.pruned_through_seq);
      const refuse = (problem: AnchorRefusal) => refused.push({ tenantId: head.tenant_id, seq: seq.toString(), problem });
      if (head.event_hash !== head.last_hash) {
        // Retention removing every event leaves a head with no event: nothing to sign, nothing wrong. Anything else is.
        if (!(head.event_hash === null && seq <= pruned)) refuse('head_mismatch');
        continue;
      }
      if (head.anchor_seq !== null && BigInt(head.anchor_seq) > pruned && head.anchor_event_hash !== head.anchor_hash) {
        refuse('anchor_mismatch');
        continue;
      }
      if (remembered.get(head.tenant_id) === false) {
        refuse('signed_head_lost');
        continue;
      }
      fresh.push(signer.sign({ tenantId: head.tenant_id, seq: seq.toString(), hash: head.last_hash, signedAt }));
    }
    if (fresh.length > 0) {
      const stored = await db.$queryRawUnsafe<AnchorRow[]>(
        `INSERT INTO audit_anchors (tenant_id, seq, hash, signed_at, key_id, signature)
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[], $5::text[], $6::text[])
         ON CONFLICT (tenant_id, seq) DO NOTHING
         RETURNING ${ANCHOR_COLUMNS}`,
        fresh.map((a) => a.tenantId),
        fresh.map((a) => a.seq),
        fresh.map((a) => a.hash),
        fresh.map((a) => a.signedAt),
        fresh.map((a) => a.keyId),
        fresh.map((a) => a.signature),
      );
      anchored.push(...stored.map(anchorFromRow));
      // Remembered whether stored here or by another replica first: the chain had this hash at this seq.
      for (const anchor of fresh) signed?.set(anchor.tenantId, { seq: BigInt(anchor.seq), hash: anchor.hash });
    }
    if (heads.length < batchSize) break;
  }
  return { anchored, refused };
}

/**
 * For each head whose tenant this signer signed before: whether that signed head still stands, its event (unless
 * retention removed it) and its anchor both with the hash signed, and the chain's head not moved back below it.
 */
async function stillSigned(db: SystemPrismaClient, heads: readonly HeadRow[], signed: SignedHeads): Promise<Map<string, boolean>> {
  const known = heads.flatMap((head) => {
    const memory = signed.get(head.tenant_id);
    return memory ? [{ head, memory }] : [];
  });
  const result = new Map<string, boolean>();
  if (known.length === 0) return result;
  const rows = await db.$queryRawUnsafe<{ tenant_id: string; event_hash: string | null; anchor_hash: string | null }[]>(
    `SELECT t.tenant_id::text AS tenant_id, e.hash AS event_hash, a.hash AS anchor_hash
       FROM unnest($1::uuid[], $2::bigint[]) AS t(tenant_id, seq)
       LEFT JOIN audit_events e ON e.tenant_id = t.tenant_id AND e.seq = t.seq
       LEFT JOIN audit_anchors a ON a.tenant_id = t.tenant_id AND a.seq = t.seq`,
    known.map((k) => k.head.tenant_id),
    known.map((k) => k.memory.seq.toString()),
  );
  const found = new Map(rows.map((row) => [row.tenant_id, row]));
  for (const { head, memory } of known) {
    const row = found.get(head.tenant_id);
    const eventHolds = row?.event_hash === memory.hash || (row?.event_hash === null && memory.seq <= BigInt(head.pruned_through_seq));
    result.set(head.tenant_id, memory.seq <= BigInt(head.last_seq) && eventHolds && row?.anchor_hash === memory.hash);
  }
  return result;
}

/** The tenant's newest anchor at or before `seq` (and after `afterSeq`), if any. Inside the tenant's transaction. */
export async function latestAnchor(
  tx: TenantTransaction | SystemPrismaClient,
  tenantId: string,
  range: { readonly afterSeq: bigint; readonly atOrBeforeSeq: bigint },
): Promise<AuditAnchor | undefined> {
  const rows = await tx.$queryRawUnsafe<AnchorRow[]>(
    `SELECT ${ANCHOR_COLUMNS} FROM audit_anchors WHERE tenant_id = $1::uuid AND seq > $2 AND seq <= $3 ORDER BY seq DESC LIMIT 1`,
    tenantId,
    range.afterSeq,
    range.atOrBeforeSeq,
  );
  return rows[0] ? anchorFromRow(rows[0]) : undefined;
}

/** The tenant's anchors with `afterSeq < seq <= toSeq`, in seq order, at most `limit` of them. */
export async function anchorsBetween(
  db: TenantTransaction | SystemPrismaClient,
  tenantId: string,
  afterSeq: bigint,
  toSeq: bigint,
  limit: number | null = null,
): Promise<AuditAnchor[]> {
  const rows = await db.$queryRawUnsafe<AnchorRow[]>(
    `SELECT ${ANCHOR_COLUMNS} FROM audit_anchors WHERE tenant_id = $1::uuid AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4`,
    tenantId,
    afterSeq,
    toSeq,
    limit,
  );
  return rows.map(anchorFromRow);
}

/** The highest seq any of the tenant's anchors names (0 if none). */
export async function highestAnchoredSeq(db: TenantTransaction | SystemPrismaClient, tenantId: string): Promise<bigint> {
  const rows = await db.$queryRawUnsafe<{ seq: bigint | null }[]>(
    'SELECT max(seq) AS seq FROM audit_anchors WHERE tenant_id = $1::uuid',
    tenantId,
  );
  return rows[0]?.seq === null || rows[0]?.seq === undefined ? 0n : BigInt(rows[0].seq);
}
