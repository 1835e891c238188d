import canonicalize from 'canonicalize';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { computeAuditHash, verifyChain, type ChainedAuditFields, type StoredChainLink } from './audit-chain';

function fields(seq: number, overrides: Partial<ChainedAuditFields> = {}): ChainedAuditFields {
  return {
    id: `019a0000-0000-7000-8000-${String(seq).padStart(12, '0')}`,
    tenantId: '019a0000-0000-7000-8000-0000000000aa',
    seq: String(seq),
    occurredAt: '2026-11-22T08:00:00.000Z',
    kind: 'mcp',
    method: 'tools/call',
    actorUserId: null,
    agentClientId: null,
    apiKeyId: null,
    mcpSessionId: 's',
    upstreamId: null,
    tool: 'tickets__create_ticket',
    targetType: null,
    targetId: null,
    decision: 'allow',
    reason: null,
    snapshotVersion: 1,
    approvalId: null,
    latencyMs: 3,
    arguments: { title: 'printer on fire', priority: 'high' },
    outcome: 'ok',
    errorCode: null,
    traceId: null,
    ...overrides,
  };
}

function chain(n: number): StoredChainLink[] {
  const links: StoredChainLink[] = [];
  let prevHash: string | null = null;
  for (let seq = 1; seq <= n; seq++) {
    const f = fields(seq);
    const hash = computeAuditHash(f, prevHash);
    links.push({ ...f, prevHash, hash });
    prevHash = hash;
  }
  return links;
}

describe('audit hash chain', () => {
  it('hashes exactly the RFC 8785 canonical JSON, whatever the values (fast path and fallback agree)', () => {
    const reference = (f: ChainedAuditFields, prev: string | null) =>
      createHash('sha256')
        .update(canonicalize({ v: 1, prevHash: prev, ...f, arguments: f.arguments ?? null }) as string, 'utf8')
        .digest('hex');
    const variants: Partial<ChainedAuditFields>[] = [
      {},
      { arguments: null, reason: null, snapshotVersion: null, latencyMs: 0 },
      { arguments: { z: 1, a: [true, null, 'x', { b: 2, a: 1e21 }], é: 'ü', '\u0000': -0.5 } },
      { arguments: 'just a string', reason: 'quote " backslash \\ newline \n tab \t emoji 🦀 \u2028' },
      { arguments: 42, snapshotVersion: 2 ** 31, latencyMs: 123456 },
      { arguments: true },
      { arguments: [], tool: '', method: 'ünïcödé/😀' },
      { decision: 'deny', actorUserId: '019a0000-0000-7000-8000-0000000000bb', traceId: 'abc' },
    ];
    for (const [i, overrides] of variants.entries()) {
      const f = fields(i + 1, overrides);
      for (const prev of [null, 'ab'.repeat(32)]) expect(computeAuditHash(f, prev)).toBe(reference(f, prev));
    }
    // An extra key (not a stored field) is hashed too, as canonicalize would.
    const extra = { ...fields(1), extra: 'x' } as ChainedAuditFields;
    expect(computeAuditHash(extra, null)).toBe(reference(extra, null));
    expect(computeAuditHash(extra, null)).not.toBe(computeAuditHash(fields(1), null));
    // A lone surrogate is refused, as canonicalize refuses it.
    expect(() => computeAuditHash(fields(1, { reason: '\ud800' }), null)).toThrow();
  });

  it('hashes version 2 over the canonical JSON with recordedAt, and version 1 (or none named) without it', () => {
    const reference = (body: Record<string, unknown>) =>
      createHash('sha256').update(canonicalize(body) as string, 'utf8').digest('hex');
    const recordedAt = '2026-11-22T08:00:01.234Z';
    const v1 = fields(1);
    for (const prev of [null, 'cd'.repeat(32)]) {
      expect(computeAuditHash({ ...v1, recordedAt, hashVersion: 2 }, prev)).toBe(reference({ v: 2, prevHash: prev, ...v1, recordedAt }));
      // Version 1 leaves the stored time out, whether the field is there or not.
      expect(computeAuditHash({ ...v1, recordedAt, hashVersion: 1 }, prev)).toBe(reference({ v: 1, prevHash: prev, ...v1 }));
      expect(computeAuditHash(v1, prev)).toBe(reference({ v: 1, prevHash: prev, ...v1 }));
    }
    // An unusual shape falls back to canonicalize for version 2 as for version 1.
    const odd = { ...fields(2, { arguments: { b: [1, { a: null }] } }), recordedAt, hashVersion: 2 as const };
    expect(computeAuditHash(odd, null)).toBe(reference({ v: 2, prevHash: null, ...fields(2, { arguments: { b: [1, { a: null }] } }), recordedAt }));
  });

  it('covers recordedAt from version 2 on, and the version itself', () => {
    const v2 = { ...fields(1), recordedAt: '2026-11-22T08:00:01.234Z', hashVersion: 2 as const };
    const hash = computeAuditHash(v2, null);
    const link: StoredChainLink = { ...v2, prevHash: null, hash };
    expect(verifyChain([link])).toMatchObject({ ok: true, checked: 1 });
    // The stored time moved by a millisecond, or by a year.
    for (const recordedAt of ['2026-11-22T08:00:01.235Z', '2025-11-22T08:00:01.234Z']) {
      expect(verifyChain([{ ...link, recordedAt }])).toMatchObject({ ok: false, brokenAt: { seq: '1', problem: 'hash_mismatch' } });
    }
    // Relabelled version 1 (which would not cover the time): the hash no longer matches either.
    expect(verifyChain([{ ...link, hashVersion: 1 }])).toMatchObject({ ok: false, brokenAt: { problem: 'hash_mismatch' } });
    expect(verifyChain([{ ...link, hashVersion: undefined }])).toMatchObject({ ok: false, brokenAt: { problem: 'hash_mismatch' } });
    // A version this code does not know verifies nothing.
    expect(verifyChain([{ ...link, hashVersion: 3 as unknown as 2 }])).toMatchObject({ ok: false, brokenAt: { problem: 'hash_mismatch' } });
    // A version-1 row verifies whatever its stored time says: the limit version 2 removes.
    const v1 = { ...fields(1), recordedAt: '2026-11-22T08:00:01.234Z', hashVersion: 1 as const };
    const old: StoredChainLink = { ...v1, prevHash: null, hash: computeAuditHash(v1, null) };
    expect(verifyChain([{ ...old, recordedAt: '2030-01-01T00:00:00.000Z' }])).toMatchObject({ ok: true });
  });

  it('hashes independently of key order', () => {
    const a = fields(1, { arguments: { a: 1, b: { c: 2, d: 3 } } });
    const b = fields(1, { arguments: { b: { d: 3, c: 2 }, a: 1 } });
    expect(computeAuditHash(a, null)).toBe(computeAuditHash(b, null));
    expect(computeAuditHash(a, null)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('depends on every field and on the previous hash', () => {
    const base = computeAuditHash(fields(1), null);
    expect(computeAuditHash(fields(1, { outcome: 'error' }), null)).not.toBe(base);
    expect(computeAuditHash(fields(1, { arguments: { title: 'x' } }), null)).not.toBe(base);
    expect(computeAuditHash(fields(1), 'f'.repeat(64))).not.toBe(base);
  });

  it('verifies an intact chain', () => {
    const verdict = verifyChain(chain(5));
    expect(verdict).toMatchObject({ ok: true, checked: 5 });
  });

  it('finds an edited row', () => {
    const [first, second, third, ...rest] = chain(5);
    if (!first || !second || !third) throw new Error('chain too short');
    const edited = { ...third, arguments: { title: 'nothing to see' } };
    expect(verifyChain([first, second, edited, ...rest])).toEqual({
      ok: false,
      checked: 2,
      brokenAt: { id: third.id, seq: '3', problem: 'hash_mismatch' },
    });
  });

  it('finds a removed row and a re-hashed forgery that does not link', () => {
    const links = chain(5);
    const removed = [...links.slice(0, 2), ...links.slice(3)];
    expect(verifyChain(removed)).toMatchObject({ ok: false, brokenAt: { seq: '4', problem: 'seq_gap' } });

    const forged = chain(5);
    const f = { ...fields(3), outcome: 'denied' };
    forged[2] = { ...f, prevHash: 'x'.repeat(64), hash: computeAuditHash(f, 'x'.repeat(64)) };
    expect(verifyChain(forged)).toMatchObject({ ok: false, brokenAt: { seq: '3', problem: 'prev_hash_mismatch' } });
  });
});
