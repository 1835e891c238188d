import { describe, expect, it } from 'vitest';
import { deepFreeze } from '../listing/immutable';
import { ByteBufferPool, encodeJson, isLargeListing, LARGE_LISTING_ITEMS } from './json-bytes';

const tool = (i: number) => ({
  name: `docs__tool_${i}`,
  description: i % 7 === 0 ? `Déjà vu — ${'é'.repeat(i % 5)} 🚀 "quoted" \\ back\nline` : `Looks up record ${i}.`,
  inputSchema: { type: 'object', properties: { id: { type: 'string' }, tags: { type: 'array', items: { type: 'string' } } }, required: ['id'] },
  annotations: i % 3 === 0 ? { readOnlyHint: true, missing: undefined } : undefined,
});

function bytesOf(value: object, pool = new ByteBufferPool()): Buffer {
  const { buffer, length } = encodeJson(value, pool);
  return Buffer.from(buffer.subarray(0, length));
}

describe('encodeJson', () => {
  it('gives exactly the bytes of JSON.stringify for listings and odd values alike', () => {
    const values: object[] = [
      { jsonrpc: '2.0', id: 7, result: { tools: Array.from({ length: 300 }, (_, i) => tool(i)), nextCursor: 'abc' } },
      { jsonrpc: '2.0', id: 'x', result: { prompts: [], _meta: { a: [1, { b: undefined }, null], when: new Date(0) } } },
      { a: [undefined, () => 1, Symbol('s'), NaN, -0, 1e21, 'z'], b: undefined, c: () => 1, d: Object.create(null) },
      { nested: { deeper: { deepest: { list: [{ x: 1 }, [2, [3]]] } } }, empty: {}, arr: [[]] },
      { withToJson: { toJSON: () => ({ replaced: true }) }, list: [new Date(0)] },
    ];
    for (const value of values) {
      const text = bytesOf(value).toString('utf8');
      const expected = JSON.stringify(value);
      // Booleans, not toBe on the strings: a failing diff of 100 KB strings takes the runner minutes.
      expect(text.length).toBe(expected.length);
      expect(text === expected).toBe(true);
    }
  });

  it('writes frozen items from their remembered text, equal to JSON.stringify, in runs mixed with unfrozen ones', () => {
    const frozen = Array.from({ length: 100 }, (_, i) => deepFreeze(tool(i)));
    const mixed = [...frozen.slice(0, 40), tool(1000), ...frozen.slice(40), 'text', null, 5];
    for (const list of [frozen, mixed]) {
      const value = { jsonrpc: '2.0', id: 1, result: { tools: list } };
      for (let pass = 0; pass < 2; pass++) {
        const text = bytesOf(value).toString('utf8');
        expect(text === JSON.stringify(value)).toBe(true);
      }
    }
  });

  it('reuses a run of frozen items only while the same items follow in the same order', () => {
    const frozen = Array.from({ length: 100 }, (_, i) => deepFreeze(tool(i)));
    const variants = [frozen, frozen.filter((_, i) => i !== 5), [...frozen].reverse(), frozen.slice(0, 40), frozen, [frozen[0], ...frozen]];
    for (const list of variants) {
      const value = { result: { tools: list } };
      expect(bytesOf(value).toString('utf8') === JSON.stringify(value)).toBe(true);
    }
  });

  it('serialises again what is not deep-frozen: an unfrozen or shallowly frozen item that changed is written as it is now', () => {
    const frozen = Array.from({ length: LARGE_LISTING_ITEMS }, (_, i) => deepFreeze(tool(i)));
    const loose = { name: 'loose', description: 'before' };
    const nested = { description: 'before' };
    const shallow = Object.freeze({ name: 'shallow', annotations: nested });
    const value = { result: { tools: [...frozen.slice(0, 31), loose, shallow, ...frozen.slice(31)] } };
    const first = bytesOf(value).toString('utf8');
    expect(first.includes('"before"')).toBe(true);
    loose.description = 'after';
    nested.description = 'after';
    const second = bytesOf(value).toString('utf8');
    expect(second === JSON.stringify(value)).toBe(true);
    expect(second.includes('"before"')).toBe(false);
    // A whole run of shallowly frozen items is not remembered either.
    const runOfShallow = Array.from({ length: LARGE_LISTING_ITEMS }, (_, i) => Object.freeze({ name: `s${i}`, schema: { v: 1 } }));
    const listing = { result: { tools: runOfShallow } };
    bytesOf(listing);
    (runOfShallow[0] as { schema: { v: number } }).schema.v = 2;
    expect(bytesOf(listing).toString('utf8') === JSON.stringify(listing)).toBe(true);
  });

  it('serialises each frozen item once however many answers hold it', () => {
    let reads = 0;
    const counted = deepFreeze({
      get name() {
        reads += 1;
        return 'docs__counted';
      },
    });
    const list = [...Array.from({ length: LARGE_LISTING_ITEMS }, (_, i) => deepFreeze(tool(i))), counted];
    reads = 0; // deepFreeze read it once on its way through
    const texts = [0, 1, 2].map(() => bytesOf({ result: { tools: list } }).toString('utf8'));
    expect(reads).toBe(1);
    expect(texts.every((text) => text.endsWith('{"name":"docs__counted"}]}}'))).toBe(true);
  });

  it('grows past the first buffer and reuses what is given back, keeping at most maxBuffers', () => {
    const pool = new ByteBufferPool(4);
    const huge = { result: { resources: Array.from({ length: 4_000 }, (_, i) => ({ uri: `file:///${i}`, name: 'ü'.repeat(60) })) } };
    const { buffer, length } = encodeJson(huge, pool);
    expect(length).toBeGreaterThan(256 * 1024);
    expect(buffer.subarray(0, length).toString('utf8') === JSON.stringify(huge)).toBe(true);
    // The smaller buffers it outgrew went back to the pool; the one holding the answer is given back after its write.
    const outgrown = pool.size;
    expect(outgrown).toBeGreaterThan(0);
    pool.give(buffer);
    expect(pool.take(length) === buffer).toBe(true);
    pool.give(buffer);
    for (let i = 0; i < 5; i += 1) pool.give(Buffer.alloc(10));
    expect(pool.size).toBe(4);
  });

  it('takes only listings of at least LARGE_LISTING_ITEMS items', () => {
    const items = (n: number) => Array.from({ length: n }, (_, i) => tool(i));
    expect(isLargeListing({ jsonrpc: '2.0', id: 1, result: { tools: items(LARGE_LISTING_ITEMS) } })).toBe(true);
    expect(isLargeListing({ jsonrpc: '2.0', id: 1, result: { resourceTemplates: items(LARGE_LISTING_ITEMS) } })).toBe(true);
    expect(isLargeListing({ jsonrpc: '2.0', id: 1, result: { tools: items(LARGE_LISTING_ITEMS - 1) } })).toBe(false);
    expect(isLargeListing({ jsonrpc: '2.0', id: 1, result: { content: items(500) } })).toBe(false);
    expect(isLargeListing({ jsonrpc: '2.0', id: 1, error: { code: 1, message: 'x' } })).toBe(false);
    expect(isLargeListing([{ jsonrpc: '2.0', id: 1, result: { tools: items(100) } }])).toBe(false);
  });
});
