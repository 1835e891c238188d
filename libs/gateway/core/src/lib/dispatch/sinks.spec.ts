import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { writeBounded } from './sinks';

/** A response whose client never reads: everything written after the first chunk stays buffered. */
function stalled(): Writable {
  return new Writable({ highWaterMark: 16, write: () => undefined });
}

describe('writeBounded', () => {
  it('writes while the unsent bytes stay under the bound, then drops the connection instead of buffering more', () => {
    const res = stalled();
    const frame = `data: ${'x'.repeat(1_000)}\n\n`;
    let written = 0;
    while (writeBounded(res as never, frame, false, 10_000)) written += 1;
    expect(written).toBeGreaterThanOrEqual(10);
    expect(written).toBeLessThanOrEqual(11);
    expect(res.destroyed).toBe(true);
    expect(writeBounded(res as never, frame, false, 10_000)).toBe(false);
  });

  it('ends the response with the last chunk when asked to', () => {
    const chunks: string[] = [];
    const res = new Writable({ write: (chunk: Buffer, _encoding, done) => (chunks.push(chunk.toString()), done()) });
    expect(writeBounded(res as never, 'a', false)).toBe(true);
    expect(writeBounded(res as never, 'b', true)).toBe(true);
    expect(res.writableEnded).toBe(true);
    expect(writeBounded(res as never, 'c')).toBe(false);
    expect(chunks.join('')).toBe('ab');
  });

  it('sends one message larger than the bound whole when nothing is waiting (a reading agent, a large result)', () => {
    const chunks: string[] = [];
    const res = new Writable({ write: (chunk: Buffer, _encoding, done) => (chunks.push(chunk.toString()), done()) });
    expect(writeBounded(res as never, 'x'.repeat(50_000), true, 10_000)).toBe(true);
    expect(chunks.join('')).toHaveLength(50_000);
    expect(res.destroyed).toBe(false);
  });
});
