import { verifyAnchorSignature, type AuditAnchor, type AuditAnchorSigner } from '@portcullis/audit/chain';
import type { KeyObject } from 'node:crypto';
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
  // The head read again in the same statement: retention may have moved the checkpoint past the remembered seq since
  // the sweep read it (deleting that event), which is no loss.
  const rows = await db.$queryRawUnsafe<{ tenant_id: string; event_hash: string | null; anchor_hash: string | null; last_seq: bigint | null; pruned_through_seq: bigint | null }[]>(
    `SELECT t.tenant_id::text AS tenant_id, e.hash AS event_hash, a.hash AS anchor_hash, h.last_seq, h.pruned_through_seq
       FROM unnest($1::uuid[], $2::bigint[]) AS t(tenant_id, seq)
       LEFT JOIN audit_chain_heads h ON h.tenant_id = t.tenant_id
       LEFT JOIN audit_events e ON e.tenant_id = t.tenant_id AND e.seq = t.seq
       LEFT JOIN audit_anchors a ON a.tenant_id = t.tenant_id AND a.seq = t.seq`,
    known.map((k) => k.head.tenant_id),
    known.map((k) => k.memory.seq.toString()),
  );
  const found = new Map(rows.map((row) => [row.tenant_id, row]));
  for (const { head, memory } of known) {
    const row = found.get(head.tenant_id);
    const pruned = BigInt(row?.pruned_through_seq ?? head.pruned_through_seq);
    const last = BigInt(row?.last_seq ?? head.last_seq);
    const eventHolds = row?.event_hash === memory.hash || (row?.event_hash === null && memory.seq <= pruned);
    result.set(head.tenant_id, memory.seq <= last && eventHolds && row?.anchor_hash === memory.hash);
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

/** The fields of an anchor, as text, when `value` has them all. */
function asAnchor(value: unknown): AuditAnchor | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const a = value as Record<string, unknown>;
  const fields = ['tenantId', 'seq', 'hash', 'signedAt', 'keyId', 'signature'] as const;
  if (!fields.every((key) => typeof a[key] === 'string')) return undefined;
  return { tenantId: a['tenantId'] as string, seq: a['seq'] as string, hash: a['hash'] as string, signedAt: a['signedAt'] as string, keyId: a['keyId'] as string, signature: a['signature'] as string };
}

const LOG_LINE = /audit anchor tenant=(\S+) seq=(\d+) hash=(\S+) signedAt=(\S+) key=(\S+) signature=([A-Za-z0-9_-]+)/;

/**
 * Anchors kept outside the database, from a file's text: the worker's log lines (`audit anchor tenant=… seq=…`, also
 * inside a JSON log record), JSON lines of anchors, a page of the audit API (`{items: [...]}`), an export manifest
 * (`{anchor: …}`), or an array of any of these. What is none of them is ignored; the count says what was found.
 */
export function parseArchivedAnchors(text: string): AuditAnchor[] {
  const found: AuditAnchor[] = [];
  const take = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(take);
    const anchor = asAnchor(value);
    if (anchor) return void found.push(anchor);
    if (typeof value === 'object' && value !== null) {
      const record = value as Record<string, unknown>;
      if (Array.isArray(record['items'])) take(record['items']);
      if (record['anchor'] !== undefined) take(record['anchor']);
    }
  };
  const whole = text.trim();
  if (whole.startsWith('{') || whole.startsWith('[')) {
    try {
      take(JSON.parse(whole));
      if (found.length > 0) return found;
    } catch {
      // Not one JSON document: lines, below.
    }
  }
  for (const line of text.split('\n')) {
    const logged = LOG_LINE.exec(line);
    if (logged) {
      const [, tenantId, seq, hash, signedAt, keyId, signature] = logged as unknown as string[];
      found.push({ tenantId: tenantId as string, seq: seq as string, hash: hash as string, signedAt: signedAt as string, keyId: keyId as string, signature: signature as string });
      continue;
    }
    const trimmed = line.trim();
    if (!trimmed.startsWith('{')) continue;
    try {
      take(JSON.parse(trimmed));
    } catch {
      // Not JSON: skipped.
    }
  }
  return found;
}

export interface ArchivedAnchorsReport {
  /** Anchors of this tenant that are validly signed and match the live chain. */
  readonly matched: number;
  /** Of this tenant, but their event is gone by retention (at or before the checkpoint): nothing to compare. */
  readonly pruned: number;
  /** The first that does not hold: badly signed, or naming a hash the live event at its seq does not have. */
  readonly broken?: { readonly seq: string; readonly problem: 'anchor_invalid' | 'anchor_mismatch' };
}

/**
 * Checks anchors kept outside the database against the live chain: each of `tenantId`'s must be signed by one of
 * `keys` and name the hash its event has now. What a rewrite that also removed the anchors from the table cannot hide.
 */
export async function checkArchivedAnchors(
  db: SystemPrismaClient,
  tenantId: string,
  anchors: readonly AuditAnchor[],
  keys: ReadonlyMap<string, KeyObject>,
): Promise<ArchivedAnchorsReport> {
  const mine = anchors
    .filter((anchor) => anchor.tenantId === tenantId && /^\d{1,19}$/.test(anchor.seq))
    .sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : BigInt(a.seq) > BigInt(b.seq) ? 1 : 0));
  const heads = await db.$queryRawUnsafe<{ pruned_through_seq: bigint }[]>('SELECT pruned_through_seq FROM audit_chain_heads WHERE tenant_id = $1::uuid', tenantId);
  const pruned = BigInt(heads[0]?.pruned_through_seq ?? 0n);
  let matched = 0;
  let gone = 0;
  for (const anchor of mine) {
    if (verifyAnchorSignature(anchor, keys) !== 'valid') return { matched, pruned: gone, broken: { seq: anchor.seq, problem: 'anchor_invalid' } };
    const rows = await db.$queryRawUnsafe<{ hash: string }[]>('SELECT hash FROM audit_events WHERE tenant_id = $1::uuid AND seq = $2', tenantId, anchor.seq);
    const row = rows[0];
    if (row === undefined && BigInt(anchor.seq) <= pruned) {
      gone += 1;
      continue;
    }
    if (row?.hash !== anchor.hash) return { matched, pruned: gone, broken: { seq: anchor.seq, problem: 'anchor_mismatch' } };
    matched += 1;
  }
  return { matched, pruned: gone };
}
