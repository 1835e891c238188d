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
