import { describe, expect, it } from 'vitest';
import { parseArchivedAnchors } from './audit-anchors';

const anchor = (seq: string) => ({
  tenantId: '019a0000-0000-7000-8000-0000000000aa',
  seq,
  hash: 'a'.repeat(64),
  signedAt: '2026-12-05T10:00:00.000Z',
  keyId: '0123456789abcdef',
  signature: 'c2lnbmF0dXJl-_',
});

describe('parseArchivedAnchors', () => {
  it('reads log lines (plain or inside JSON records), JSON lines, API pages, manifests and arrays of them', () => {
    const a = anchor('3');
    const line = `audit anchor tenant=${a.tenantId} seq=3 hash=${a.hash} signedAt=${a.signedAt} key=${a.keyId} signature=${a.signature}`;
    expect(parseArchivedAnchors(`[worker] ${line}\n`)).toEqual([a]);
    expect(parseArchivedAnchors(`${JSON.stringify({ level: 30, msg: line })}\nnot json\n${JSON.stringify(anchor('4'))}\n`)).toEqual([a, anchor('4')]);
    expect(parseArchivedAnchors(JSON.stringify({ items: [anchor('5'), anchor('6')], nextCursor: null }))).toEqual([anchor('5'), anchor('6')]);
    expect(parseArchivedAnchors(JSON.stringify({ manifestVersion: 1, anchor: anchor('7') }))).toEqual([anchor('7')]);
    expect(parseArchivedAnchors(JSON.stringify([{ anchor: anchor('8') }, { items: [anchor('9')] }]))).toEqual([anchor('8'), anchor('9')]);
  });

  it('ignores what is not an anchor: missing fields, other types, manifests without one', () => {
    const { signature: _dropped, ...unsigned } = anchor('3');
    expect(parseArchivedAnchors(JSON.stringify([unsigned, { ...anchor('4'), seq: 4 }, { anchor: null }, 'text', 42]))).toEqual([]);
    expect(parseArchivedAnchors('')).toEqual([]);
  });
});
