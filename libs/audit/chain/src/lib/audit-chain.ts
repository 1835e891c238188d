import canonicalize from 'canonicalize';
import { createHash } from 'node:crypto';

/**
 * The version of the hashed representation new events get; bump it (and keep the old ones verifiable) if fields change.
 * 1: the event's fields. 2: those and `recordedAt`, the store's time of insert. Each row keeps the version it was
 * hashed with, and `v` is inside the hash, so relabelling a row's version breaks its hash like any other edit.
 */
export const AUDIT_HASH_VERSION = 2;
export type AuditHashVersion = 1 | 2;
/** The versions this code verifies (a manifest or a row naming another is refused). */
export const AUDIT_HASH_VERSIONS: readonly AuditHashVersion[] = [1, 2];

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
  /** ISO 8601, UTC, millisecond precision: when the store inserted the row. Hashed from version 2 on. */
  readonly recordedAt?: string | null;
  /** The representation the row's hash was taken over; absent is 1 (rows and exports from before version 2). */
  readonly hashVersion?: AuditHashVersion;
}

/**
 * sha256 over the RFC 8785 canonical JSON of the event's fields and the previous hash. Canonical JSON
 * makes the hash independent of key order and number formatting, so anyone can recompute it offline.
 * Version 1 leaves `recordedAt` out; version 2 includes it. A version this code does not know is hashed as written
 * (`v` set to it, `recordedAt` included), which no stored hash matches: verification reports it as a mismatch.
 */
export function computeAuditHash(fields: ChainedAuditFields, prevHash: string | null): string {
  const { hashVersion, recordedAt, ...eventFields } = fields;
  const v: unknown = hashVersion ?? 1;
  const hashed =
    v === 1
      ? { v, prevHash, ...eventFields, arguments: fields.arguments ?? null }
      : { v, prevHash, ...eventFields, arguments: fields.arguments ?? null, recordedAt: recordedAt ?? null };
  const canonical = canonicalHashed(hashed, v === 1 ? HASHED_KEYS_V1 : HASHED_KEYS_V2) ?? canonicalize(hashed);
  if (canonical === undefined) throw new TypeError('audit event is not serialisable');
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

/** `String.prototype.isWellFormed` (Node ≥ 20; not in this TypeScript lib target): no lone surrogates. */
const isWellFormed = (value: string): boolean =>
  (value as string & { isWellFormed(): boolean }).isWellFormed();

/** The keys of a hashed event, in RFC 8785 order (UTF-16 code units, which is what `sort()` compares). */
const EVENT_KEYS = [
  'v',
  'prevHash',
  'id',
  'tenantId',
  'seq',
  'occurredAt',
  'kind',
  'method',
  'actorUserId',
  'agentClientId',
  'apiKeyId',
  'mcpSessionId',
  'upstreamId',
  'tool',
  'targetType',
  'targetId',
  'decision',
  'reason',
  'snapshotVersion',
  'approvalId',
  'latencyMs',
  'arguments',
  'outcome',
  'errorCode',
  'traceId',
];
interface HashedKeys {
  readonly keys: readonly string[];
  readonly json: readonly string[];
}
const hashedKeys = (keys: string[]): HashedKeys => {
  const sorted = keys.sort();
  return { keys: sorted, json: sorted.map((key) => `${JSON.stringify(key)}:`) };
};
const HASHED_KEYS_V1 = hashedKeys([...EVENT_KEYS]);
const HASHED_KEYS_V2 = hashedKeys([...EVENT_KEYS, 'recordedAt']);

/**
 * The same text as `canonicalize(hashed)` for the usual shape (exactly the known keys, strings, finite numbers and
 * null at the top level) without sorting keys per event; `arguments` still goes through `canonicalize`. Anything
 * else returns undefined and the caller uses `canonicalize` for all of it, so the output never differs.
 */
function canonicalHashed(hashed: Record<string, unknown>, { keys, json }: HashedKeys): string | undefined {
  if (Object.keys(hashed).length !== keys.length) return undefined;
  let out = '{';
  for (let i = 0; i < keys.length; i += 1) {
    const value = hashed[keys[i] as string];
    let text: string | undefined;
    if (value === null) text = 'null';
    else if (typeof value === 'string') text = isWellFormed(value) ? JSON.stringify(value) : undefined;
    else if (typeof value === 'number') text = Number.isFinite(value) ? JSON.stringify(value) : undefined;
    else if (typeof value === 'object' && keys[i] === 'arguments') text = canonicalize(value);
    if (text === undefined) return undefined;
    out += `${i === 0 ? '' : ','}${json[i]}${text}`;
  }
  return `${out}}`;
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
      readonly brokenAt: {
        readonly id: string;
        readonly seq: string;
        readonly problem: 'hash_mismatch' | 'prev_hash_mismatch' | 'seq_gap';
      };
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
    if (BigInt(link.seq) !== expectedSeq)
      return { ok: false, checked, brokenAt: { id: link.id, seq: link.seq, problem: 'seq_gap' } };
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
