import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor, MAX_UPSTREAM_CURSOR_LENGTH, MAX_UPSTREAM_PAGES, newCursorKey } from './cursor';

describe('merged-listing cursors', () => {
  it('round-trips the pending upstream pages, in order', () => {
    const pages = [
      { upstreamId: 'a', cursor: 'opaque-1', page: 2 },
      { upstreamId: 'b', cursor: '{"weird":"json"}', page: 7 },
    ];
    const cursor = encodeCursor('tools', pages);
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor('tools', cursor)).toEqual(pages);
  });

  it('refuses a cursor of another listing, garbage, and empty or oversized input', () => {
    const cursor = encodeCursor('tools', [{ upstreamId: 'a', cursor: 'x' }]);
    expect(decodeCursor('prompts', cursor)).toBeUndefined();
    expect(decodeCursor('tools', 'not base64 json')).toBeUndefined();
    expect(decodeCursor('tools', Buffer.from('{"v":1,"k":"tools","p":[[1,2]]}').toString('base64url'))).toBeUndefined();
    expect(decodeCursor('tools', encodeCursor('tools', []))).toBeUndefined();
    expect(decodeCursor('tools', 42)).toBeUndefined();
    expect(decodeCursor('tools', 'a'.repeat(20_000))).toBeUndefined();
  });

  it('refuses a cursor naming an empty upstream cursor: none is issued, and it would serve that first page again', () => {
    expect(decodeCursor('tools', encodeCursor('tools', [{ upstreamId: 'a', cursor: '' }]))).toBeUndefined();
    expect(decodeCursor('tools', encodeCursor('tools', [{ upstreamId: 'a', cursor: 'x' }, { upstreamId: 'b', cursor: '' }]))).toBeUndefined();
  });

  it('refuses a forged cursor naming one upstream more than once (one listing would fan out into many calls)', () => {
    const forged = encodeCursor('tools', Array.from({ length: 200 }, (_, i) => ({ upstreamId: 'a', cursor: `c${i}` })));
    expect(forged.length).toBeLessThan(16 * 1024);
    expect(decodeCursor('tools', forged)).toBeUndefined();
    expect(decodeCursor('tools', encodeCursor('tools', [{ upstreamId: 'a', cursor: '1' }, { upstreamId: 'b', cursor: '1' }]))).toHaveLength(2);
  });

  it('carries which page of its upstream each part asks for: a cursor without (an older gateway\'s) asks for the second, and no forged number is taken', () => {
    const older = Buffer.from(JSON.stringify({ v: 1, k: 'tools', p: [['a', 'x']] })).toString('base64url');
    expect(decodeCursor('tools', older)).toEqual([{ upstreamId: 'a', cursor: 'x', page: 2 }]);
    const forged = (n: unknown) => Buffer.from(JSON.stringify({ v: 1, k: 'tools', p: [['a', 'x']], n })).toString('base64url');
    expect(decodeCursor('tools', forged([MAX_UPSTREAM_PAGES]))).toEqual([{ upstreamId: 'a', cursor: 'x', page: MAX_UPSTREAM_PAGES }]);
    for (const page of [1, 0, -1, 2.5, '3', MAX_UPSTREAM_PAGES + 1, null]) expect(decodeCursor('tools', forged([page]))).toBeUndefined();
    for (const n of [[], [2, 3], 'x', null]) expect(decodeCursor('tools', forged(n))).toBeUndefined();
  });

  it('refuses a forged upstream part longer than any the gateway carries on (it would key the listing cache)', () => {
    const longest = 'x'.repeat(MAX_UPSTREAM_CURSOR_LENGTH);
    expect(decodeCursor('tools', encodeCursor('tools', [{ upstreamId: 'a', cursor: longest }]))).toEqual([{ upstreamId: 'a', cursor: longest, page: 2 }]);
    expect(decodeCursor('tools', encodeCursor('tools', [{ upstreamId: 'a', cursor: `${longest}x` }]))).toBeUndefined();
    expect(decodeCursor('tools', encodeCursor('tools', [{ upstreamId: 'a', cursor: '1' }, { upstreamId: 'b', cursor: 'y'.repeat(700_000) }]))).toBeUndefined();
  });

  it('sealed with a session key: round-trips, shows nothing of what it carries, and opens with no other key', () => {
    const key = newCursorKey();
    const pages = [{ upstreamId: '7f0c1e9a-upstream-uuid', cursor: 'after=file:///srv/hr/layoffs-2027.xlsx', page: 3 }];
    const sealed = encodeCursor('resources', pages, key);
    expect(sealed).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(Buffer.from(sealed, 'base64url').toString('latin1')).not.toMatch(/layoffs|upstream-uuid/);
    expect(decodeCursor('resources', sealed, key)).toEqual(pages);
    // Another session's key, no key, an unsealed cursor, a tampered one, and another listing: not ours.
    expect(decodeCursor('resources', sealed, newCursorKey())).toBeUndefined();
    expect(decodeCursor('resources', sealed)).toBeUndefined();
    expect(decodeCursor('resources', encodeCursor('resources', pages), key)).toBeUndefined();
    const tampered = Buffer.from(sealed, 'base64url');
    tampered[20] = (tampered[20] ?? 0) ^ 1;
    expect(decodeCursor('resources', tampered.toString('base64url'), key)).toBeUndefined();
    expect(decodeCursor('tools', sealed, key)).toBeUndefined();
    expect(decodeCursor('resources', 'AAAA', key)).toBeUndefined();
  });
});
