import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor, MAX_UPSTREAM_CURSOR_LENGTH } from './cursor';

describe('merged-listing cursors', () => {
  it('round-trips the pending upstream pages, in order', () => {
    const pages = [
      { upstreamId: 'a', cursor: 'opaque-1' },
      { upstreamId: 'b', cursor: '{"weird":"json"}' },
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

  it('refuses a forged upstream part longer than any the gateway carries on (it would key the listing cache)', () => {
    const longest = 'x'.repeat(MAX_UPSTREAM_CURSOR_LENGTH);
    expect(decodeCursor('tools', encodeCursor('tools', [{ upstreamId: 'a', cursor: longest }]))).toEqual([{ upstreamId: 'a', cursor: longest }]);
    expect(decodeCursor('tools', encodeCursor('tools', [{ upstreamId: 'a', cursor: `${longest}x` }]))).toBeUndefined();
    expect(decodeCursor('tools', encodeCursor('tools', [{ upstreamId: 'a', cursor: '1' }, { upstreamId: 'b', cursor: 'y'.repeat(700_000) }]))).toBeUndefined();
  });
});
