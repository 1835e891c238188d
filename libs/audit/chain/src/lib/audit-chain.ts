import canonicalize from 'canonicalize';
import { createHash } from 'node:crypto';

/** The version of the hashed representation; bump it (and keep the old one verifiable) if fields change. */
export const AUDIT_HASH_VERSION = 1;

/** Exactly the stored fields the chain protects, in their stored form. */
export interface ChainedAuditFields {
  readonly id: string;
  readonly tenantId: string;
  readonly seq: string; // bigint as decimal text: JSON has no 64-bit integers
  readonly occurredAt: string; // ISO 8601, UTC, millisecond precision
  readonly kind: string;
  readonly method: string;
  readonly actorUserId: string | null;
  readonly agentClientId: string | null;
  readonly apiKeyId: string | null;
  readonly mcpSessionId: string | null;
  readonly upstreamId: string | null;
  readonly tool: string | null;
  readonly targetType: string | null;
  readonly targetId: string | null;
  readonly decision: string | null;
  readonly reason: string | null;
  readonly snapshotVersion: number | null;
  readonly approvalId: string | null;
  readonly latencyMs: number | null;
  readonly arguments: unknown;
  readonly outcome: string;
  readonly errorCode: string | null;
  readonly traceId: string | null;
}

/**
 * sha256 over the RFC 8785 canonical JSON of the event's fields and the previous hash. Canonical JSON
 * makes the hash independent of key order and number formatting, so anyone can recompute it offline.
 */
export function computeAuditHash(fields: ChainedAuditFields, prevHash: string | null): string {
  const canonical = canonicalize({ v: AUDIT_HASH_VERSION, prevHash, ...fields, arguments: fields.arguments ?? null });
  if (canonical === undefined) throw new TypeError('audit event is not serialisable');
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

export interface StoredChainLink extends ChainedAuditFields {
  readonly prevHash: string | null;
  readonly hash: string;
}

export type ChainVerdict =
  | { readonly ok: true; readonly checked: number; readonly lastHash: string | null }
  | {
      readonly ok: false;
      readonly checked: number;
      readonly brokenAt: { readonly id: string; readonly seq: string; readonly problem: 'hash_mismatch' | 'prev_hash_mismatch' | 'seq_gap' };
    };

/**
 * Walks links in `seq` order and reports the first broken one: an edited row (its hash no longer
 * matches its fields), a removed or reordered row (prevHash or seq does not follow).
 */
export function verifyChain(
  links: Iterable<StoredChainLink>,
  start: { prevHash: string | null; seq: bigint } = { prevHash: null, seq: 0n },
): ChainVerdict {
  let prevHash = start.prevHash;
  let expectedSeq = start.seq + 1n;
  let checked = 0;
  for (const link of links) {
    if (BigInt(link.seq) !== expectedSeq) return { ok: false, checked, brokenAt: { id: link.id, seq: link.seq, problem: 'seq_gap' } };
    if (link.prevHash !== prevHash) {
      return { ok: false, checked, brokenAt: { id: link.id, seq: link.seq, problem: 'prev_hash_mismatch' } };
    }
    const { prevHash: _prev, hash, ...fields } = link;
    if (computeAuditHash(fields, prevHash) !== hash) {
      return { ok: false, checked, brokenAt: { id: link.id, seq: link.seq, problem: 'hash_mismatch' } };
    }
    prevHash = hash;
    expectedSeq += 1n;
    checked += 1;
  }
  return { ok: true, checked, lastHash: prevHash };
}
