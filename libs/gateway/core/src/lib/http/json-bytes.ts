import { isDeepFrozen } from '../listing/immutable';

/**
 * Large answers as UTF-8 bytes without one large string. `JSON.stringify` of a 270 KB listing builds the string in
 * parts; its first full read (the content length, then the write's own encoding) makes V8 flatten it into one new
 * string and Node copy that into one new buffer, and past ~128 KB both are fresh large allocations whose pages are
 * faulted in on every answer (~2 ms of a 500-tool `tools/list` on our machines; docs/benchmarks.md, pass 3).
 * Serialising the listing item by item into a buffer that is reused once its write has finished keeps every string
 * small and the pages mapped.
 */

/** Listings shorter than this are stringified whole (nothing large to avoid). */
export const LARGE_LISTING_ITEMS = 64;
/** Levels of objects and arrays written piece by piece; anything deeper is one `JSON.stringify`. */
const MAX_DEPTH = 3;
/** Array items serialised per `JSON.stringify` call (tool definitions: ~16 KB a chunk). */
const ITEMS_PER_CHUNK = 32;

/** Buffers kept for reuse once a write has finished with them: at most `maxBuffers` of at most `maxBytes` each (32 MiB in all by default). */
export class ByteBufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    private readonly maxBuffers = 8,
    /** A buffer larger than this is dropped after use rather than kept. */
    private readonly maxBytes = 4 * 1024 * 1024,
  ) {}

  take(minBytes: number): Buffer {
    const index = this.free.findIndex((buffer) => buffer.length >= minBytes);
    if (index !== -1) return this.free.splice(index, 1)[0] as Buffer;
    return Buffer.allocUnsafeSlow(Math.max(minBytes, 256 * 1024));
  }

  give(buffer: Buffer): void {
    if (buffer.length <= this.maxBytes && this.free.length < this.maxBuffers) this.free.push(buffer);
  }

  get size(): number {
    return this.free.length;
  }
}

/** UTF-8 bytes of JSON text appended piece by piece into a pooled buffer that grows by doubling. */
class ByteWriter {
  length = 0;

  constructor(
    private readonly pool: ByteBufferPool,
    public buffer: Buffer,
  ) {}

  text(value: string): void {
    // A UTF-16 code unit is at most 3 bytes of UTF-8 (a surrogate pair, 2 units, is 4).
    const room = value.length * 3;
    if (this.length + room > this.buffer.length) {
      const bigger = this.pool.take(Math.max(this.buffer.length * 2, this.length + room));
      this.buffer.copy(bigger, 0, 0, this.length);
      this.pool.give(this.buffer);
      this.buffer = bigger;
    }
    this.length += this.buffer.write(value, this.length);
  }
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return (proto === Object.prototype || proto === null) && typeof (value as { toJSON?: unknown }).toJSON !== 'function';
};

/**
 * The last run of frozen items written starting with a given item, and its JSON text (the items joined by commas),
 * kept while that first item lives. A listing page the gateway caches is answered many times with the same item
 * objects in the same order (see `ExposedItems`), so each run of up to 32 items is serialised once, not on every
 * answer. Only values that `deepFreeze` froze qualify (`isDeepFrozen`): that is the promise that the text cannot go
 * stale. One text per run, not per item as well: a session's cached listing of 500 realistic tools keeps ~250 KB of
 * text, not twice that.
 */
const frozenRuns = new WeakMap<object, { readonly items: readonly unknown[]; readonly text: string }>();

/** The text of `items[start, end)` if they are all frozen plain objects; undefined otherwise. */
function frozenRunJson(items: readonly unknown[], start: number, end: number): string | undefined {
  const first = items[start];
  // A remembered run holds only frozen plain objects: the same items in the same order need no other check.
  const known = typeof first === 'object' && first !== null ? frozenRuns.get(first) : undefined;
  if (known !== undefined && known.items.length === end - start && sameItems(known.items, items, start)) return known.text;
  if (!allFrozen(items, start, end)) return undefined;
  const run = items.slice(start, end);
  const text = JSON.stringify(run).slice(1, -1);
  frozenRuns.set(first as object, { items: run, text });
  return text;
}

function sameItems(run: readonly unknown[], items: readonly unknown[], start: number): boolean {
  for (let i = 0; i < run.length; i++) if (run[i] !== items[start + i]) return false;
  return true;
}

function allFrozen(items: readonly unknown[], start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const item = items[i];
    if (!isDeepFrozen(item) || !isPlainObject(item)) return false;
  }
  return true;
}

/** Writes `value` exactly as `JSON.stringify` would (the caller has ruled out undefined, functions and symbols). */
function writeValue(out: ByteWriter, value: unknown, depth: number): void {
  if (depth < MAX_DEPTH && Array.isArray(value)) {
    // A few items per JSON.stringify: each string stays small (well under the large-object size), with fewer calls
    // than one per item. Stringifying a slice treats undefined and functions as null, as the whole array would.
    out.text('[');
    for (let start = 0; start < value.length; start += ITEMS_PER_CHUNK) {
      if (start > 0) out.text(',');
      const end = Math.min(start + ITEMS_PER_CHUNK, value.length);
      const run = frozenRunJson(value, start, end);
      if (run !== undefined) {
        out.text(run);
        continue;
      }
      const chunk = JSON.stringify(value.slice(start, end));
      out.text(chunk.slice(1, -1));
    }
    out.text(']');
    return;
  }
  if (depth < MAX_DEPTH && isPlainObject(value)) {
    out.text('{');
    let first = true;
    for (const key of Object.keys(value)) {
      const child = value[key];
      if (child === undefined || typeof child === 'function' || typeof child === 'symbol') continue;
      out.text(first ? `${JSON.stringify(key)}:` : `,${JSON.stringify(key)}:`);
      first = false;
      writeValue(out, child, depth + 1);
    }
    out.text('}');
    return;
  }
  out.text(JSON.stringify(value));
}

const isLong = (items: unknown): boolean => Array.isArray(items) && items.length >= LARGE_LISTING_ITEMS;

/** Whether `response` is a listing result long enough to be worth `encodeJson` (runs for every answer: no allocation). */
export function isLargeListing(response: unknown): boolean {
  const result = (response as { result?: unknown } | null)?.result;
  if (typeof result !== 'object' || result === null) return false;
  const r = result as Record<string, unknown>;
  return isLong(r['tools']) || isLong(r['prompts']) || isLong(r['resources']) || isLong(r['resourceTemplates']);
}

/**
 * `Buffer.from(JSON.stringify(value))`, built in a buffer from `pool`: the bytes are `buffer[0, length)`. Give the
 * buffer back to the pool only once nothing reads it any more (after the write's callback).
 */
export function encodeJson(value: object, pool: ByteBufferPool): { readonly buffer: Buffer; readonly length: number } {
  const out = new ByteWriter(pool, pool.take(0));
  writeValue(out, value, 0);
  return { buffer: out.buffer, length: out.length };
}
