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

export interface AnchorChainsOptions {
  /** Heads read and signed per statement. */
  readonly batchSize?: number;
  /** Only these tenants' heads (an operator re-anchoring some tenants; specs sharing a database). Default: all. */
  readonly tenantIds?: readonly string[];
  readonly now?: () => Date;
}

export interface AnchorChainsResult {
  /** The anchors stored by this run (another replica may have stored the same head first: not counted). */
  readonly anchored: AuditAnchor[];
  /** Tenants whose head names an event that is not there with that hash: left unsigned, for an operator to look at. */
  readonly refused: { readonly tenantId: string; readonly seq: string }[];
}

/**
 * Signs the head of every tenant's chain that moved since its last anchor, and stores the anchors. One pass over the
 * tenants in id order (keyset pages), so a busy tenant whose head keeps moving does not keep the pass going. The
 * hash signed is the stored event's at the head's seq, and only when it equals the head's: a head that disagrees with
 * its event (a row or the head rewritten) is not signed. Several workers may run this at once: an anchor already stored
 * for a seq is kept, the other dropped. Runs as portcullis_system (it reads every tenant's head).
 */
export async function anchorAuditChains(
  db: SystemPrismaClient,
  signer: AuditAnchorSigner,
  options: AnchorChainsOptions = {},
): Promise<AnchorChainsResult> {
  const batchSize = options.batchSize ?? 500;
  const now = options.now ?? (() => new Date());
  const anchored: AuditAnchor[] = [];
  const refused: { tenantId: string; seq: string }[] = [];
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const heads = await db.$queryRawUnsafe<{ tenant_id: string; last_seq: bigint; last_hash: string; event_hash: string | null; pruned_through_seq: bigint }[]>(
      `SELECT h.tenant_id::text AS tenant_id, h.last_seq, h.last_hash, h.pruned_through_seq, e.hash AS event_hash
         FROM audit_chain_heads h
         LEFT JOIN audit_events e ON e.tenant_id = h.tenant_id AND e.seq = h.last_seq
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
    after = (heads[heads.length - 1] as { tenant_id: string }).tenant_id;
    const signedAt = new Date(Math.floor(now().getTime())).toISOString();
    const fresh: AuditAnchor[] = [];
    for (const head of heads) {
      const seq = BigInt(head.last_seq);
      if (head.event_hash === head.last_hash) {
        fresh.push(signer.sign({ tenantId: head.tenant_id, seq: seq.toString(), hash: head.last_hash, signedAt }));
      } else if (!(head.event_hash === null && seq <= BigInt(head.pruned_through_seq))) {
        // Retention removing every event leaves a head with no event: nothing to sign, nothing wrong. Anything else is.
        refused.push({ tenantId: head.tenant_id, seq: seq.toString() });
      }
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
    }
    if (heads.length < batchSize) break;
  }
  return { anchored, refused };
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
