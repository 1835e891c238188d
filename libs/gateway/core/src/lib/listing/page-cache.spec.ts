import { describe, expect, it } from 'vitest';
import { approximateJsonSize, ListingPageStore, PageCache } from './page-cache';

const page = (tag: string) => ({ tools: [{ name: tag }] });

/**
 * Makes `store`'s eviction throw once it has dropped 10,000 pages: an eviction that makes no progress would otherwise
 * spin for ever, and no timeout stops a synchronous loop.
 */
function throwOnSpin(store: ListingPageStore): void {
  const drop = store.drop.bind(store);
  let drops = 0;
  store.drop = (key, entry) => {
    if ((drops += 1) > 10_000) throw new Error('the eviction made no progress');
    drop(key, entry);
  };
}

describe('PageCache in a ListingPageStore', () => {
  it('serves a page for maxAgeMs, and drops an older one when it is read', () => {
    const store = new ListingPageStore(10);
    const cache = new PageCache(store);
    cache.set('tools/list\u0000', page('a'), 0, 1_000);
    expect(cache.get('tools/list\u0000', 15, 1_014)).toEqual(page('a'));
    expect(cache.get('tools/list\u0000', 15, 1_015)).toBeUndefined();
    expect(store.size).toBe(0);
    expect(cache.size).toBe(0);
  });

  it('keeps no page fetched before a list_changed, and clear takes its pages out of the store at once', () => {
    const store = new ListingPageStore(10);
    const cache = new PageCache(store);
    const other = new PageCache(store);
    cache.set('tools/list\u0000', page('a'), 0, 1_000);
    other.set('tools/list\u0000', page('b'), 0, 1_000);
    const fetchedIn = cache.generation;
    cache.clear();
    expect(store.size).toBe(1);
    cache.set('tools/list\u0000', page('stale'), fetchedIn, 1_001);
    expect(cache.get('tools/list\u0000', 60_000, 1_002)).toBeUndefined();
    // Two caches never see each other's pages under the same method and cursor.
    expect(other.get('tools/list\u0000', 60_000, 1_002)).toEqual(page('b'));
  });

  it('holds at most maxPages for all caches together, dropping the oldest stored', () => {
    const store = new ListingPageStore(2);
    const [a, b, c] = [new PageCache(store), new PageCache(store), new PageCache(store)];
    a.set('k', page('a'), 0, 1);
    b.set('k', page('b'), 0, 2);
    a.set('k', page('a2'), 0, 3); // stored again: now the newest
    c.set('k', page('c'), 0, 4);
    expect(store.size).toBe(2);
    expect(b.get('k', 60_000, 5)).toBeUndefined();
    expect(b.size).toBe(0);
    expect(a.get('k', 60_000, 5)).toEqual(page('a2'));
    expect(c.get('k', 60_000, 5)).toEqual(page('c'));
  });

  it("past maxPages takes the oldest page of the tenant holding most, not another tenant's", () => {
    const store = new ListingPageStore(4);
    const victim = new PageCache(store, 'victim');
    victim.set('k', page('v'), 0, 1);
    // Another tenant pages through a long listing: 40 pages, in two sessions.
    const [busy, busier] = [new PageCache(store, 'hostile'), new PageCache(store, 'hostile')];
    for (let i = 0; i < 40; i += 1) (i % 2 === 0 ? busy : busier).set(`k${i}`, page(`h${i}`), 0, 2 + i);
    expect(store.size).toBe(4);
    expect(victim.get('k', 60_000, 50)).toEqual(page('v'));
    // The hostile tenant keeps its newest three.
    expect([busy.get('k38', 60_000, 50), busier.get('k39', 60_000, 50), busier.get('k37', 60_000, 50), busy.get('k36', 60_000, 50)]).toEqual([page('h38'), page('h39'), page('h37'), undefined]);
    // A third tenant's first page: the largest holder (hostile, 3 pages) gives up its oldest.
    const third = new PageCache(store, 'third');
    third.set('k', page('t'), 0, 51);
    expect([victim.get('k', 60_000, 52), third.get('k', 60_000, 52), busier.get('k37', 60_000, 52)]).toEqual([page('v'), page('t'), undefined]);
    // Each tenant's pages leave the store's tally with their cache.
    busy.clear();
    busier.clear();
    expect(store.size).toBe(2);
  });

  it("past maxBytes takes the oldest pages of the tenant holding the most bytes", () => {
    const sized = (tag: string, bytes: number) => ({ tools: [{ name: tag, description: 'd'.repeat(bytes) }] });
    const store = new ListingPageStore(100, 16_000);
    const victim = new PageCache(store, 'victim');
    victim.set('small', sized('v', 100), 0, 1);
    victim.set('small2', sized('v2', 100), 0, 2);
    const hostile = new PageCache(store, 'hostile');
    for (let i = 0; i < 20; i += 1) hostile.set(`big${i}`, sized(`h${i}`, 900), 0, 3 + i);
    expect(store.bytes).toBeLessThanOrEqual(16_000);
    // The victim holds more pages than none but fewer bytes: its two stay.
    expect([victim.get('small', 60_000, 30), victim.get('small2', 60_000, 30)]).toEqual([sized('v', 100), sized('v2', 100)]);
    expect(hostile.get('big0', 60_000, 30)).toBeUndefined();
    expect(hostile.get('big19', 60_000, 30)).toEqual(sized('h19', 900));
  });

  it('keeps a replaced page out of its tenant\'s tally: replaced by one too large to keep, evictions still end; replaced many times, counted once', () => {
    // maxPageBytes = 16_000 / 16 = 1_000.
    const sized = (tag: string, bytes: number) => ({ tools: [{ name: tag, description: 'd'.repeat(bytes) }] });
    const store = new ListingPageStore(2, 16_000);
    throwOnSpin(store);
    const hostile = new PageCache(store, 'hostile');
    // Two listings of one page at once (answers are not shared): the first small, the second too large to keep. The
    // first stayed in the tenant's tally, and an eviction that picked it spun for ever (found by re-review).
    hostile.set('tools/list\u0000', page('small'), 0, 1);
    hostile.set('tools/list\u0000', sized('huge', 5_000), 0, 2);
    expect(store.size).toBe(0);
    hostile.set('k2', page('a'), 0, 3);
    hostile.set('k3', page('b'), 0, 4);
    hostile.set('k4', page('c'), 0, 5);
    expect(store.size).toBe(2);
    expect(hostile.get('k4', 60_000, 6)).toEqual(page('c'));

    const roomy = new ListingPageStore(1_000, 16_000);
    const quiet = new PageCache(roomy, 'quiet');
    for (let i = 0; i < 40; i += 1) quiet.set('tools/list\u0000', sized('q', 500), 0, 1 + i);
    const heavy = new PageCache(roomy, 'heavy');
    for (let i = 0; i < 18; i += 1) heavy.set(`big${i}`, sized(`h${i}`, 900), 0, 100 + i);
    expect(roomy.bytes).toBeLessThanOrEqual(16_000);
    expect(quiet.get('tools/list\u0000', 60_000, 200)).toEqual(sized('q', 500));
    expect(heavy.get('big0', 60_000, 200)).toBeUndefined();
  });

  it('ends its eviction even should a holding name a page the store no longer has (a guard: no path leads there)', () => {
    const store = new ListingPageStore(1);
    throwOnSpin(store);
    const cache = new PageCache(store, 'a');
    cache.set('k1', page('one'), 0, 1);
    // Out of `entries` only, as no method of the store would leave it.
    (store as unknown as { entries: Map<string, unknown> }).entries.clear();
    cache.set('k2', page('two'), 0, 2);
    cache.set('k3', page('three'), 0, 3);
    expect(store.size).toBe(1);
    expect(cache.get('k3', 60_000, 4)).toEqual(page('three'));
  });

  it('prune drops what has aged out, across caches, without a read', () => {
    const store = new ListingPageStore(10);
    const [a, b] = [new PageCache(store), new PageCache(store)];
    a.set('k', page('a'), 0, 1_000);
    b.set('k', page('b'), 0, 1_010);
    store.prune(15, 1_014);
    expect(store.size).toBe(2);
    store.prune(15, 1_015);
    expect(store.size).toBe(1);
    expect(a.size).toBe(0);
    expect(b.get('k', 15, 1_020)).toEqual(page('b'));
  });

  it('bounds the pages\' size together as well: past maxBytes the oldest go, and a page over a sixteenth is not kept', () => {
    const sized = (tag: string, bytes: number) => ({ tools: [{ name: tag, description: 'd'.repeat(bytes) }] });
    const store = new ListingPageStore(100, 16_000);
    const caches = Array.from({ length: 6 }, () => new PageCache(store));
    caches.forEach((cache, index) => cache.set('k', sized(String(index), 900), 0, index));
    // Six pages of ~1 KB are well under 16 KB: all kept. A seventh of 1.2 KB is too large for one page (1 KB).
    expect(store.size).toBe(6);
    const big = new PageCache(store);
    big.set('k', sized('big', 1_200), 0, 10);
    expect(big.get('k', 60_000, 11)).toBeUndefined();
    expect(big.size).toBe(0);
    // Many caches of ~1 KB pages: the total stays under the bound, the oldest gone first.
    const more = Array.from({ length: 30 }, () => new PageCache(store));
    more.forEach((cache, index) => cache.set('k', sized(`m${index}`, 900), 0, 20 + index));
    expect(store.bytes).toBeLessThanOrEqual(16_000);
    expect(caches[0]?.get('k', 60_000, 60)).toBeUndefined();
    expect(more[29]?.get('k', 60_000, 60)).toEqual(sized('m29', 900));
    // Writing a page again replaces its size, not adds to it; clearing gives it all back.
    const before = store.bytes;
    more[29]?.set('k', sized('m29', 900), 0, 61);
    expect(store.bytes).toBe(before);
    for (const cache of [...caches, ...more]) cache.clear();
    expect(store.bytes).toBe(0);
    expect(store.size).toBe(0);
  });

  it('counts each page\'s key toward maxBytes: a long upstream cursor in the key is held as long as the page', () => {
    const store = new ListingPageStore(100, 160_000);
    const caches = Array.from({ length: 30 }, () => new PageCache(store));
    // Tiny pages under keys of 4 K characters each (8 KB as UTF-16): what is held is the keys.
    caches.forEach((cache, index) => cache.set(`tools/list\u0000${String(index % 10).repeat(4_000)}`, { tools: [] }, 0, index));
    expect(store.bytes).toBeLessThanOrEqual(160_000);
    expect(store.bytes).toBeGreaterThan(100_000);
    expect(store.size).toBeLessThan(30);
    expect(caches[29]?.get(`tools/list\u0000${'9'.repeat(4_000)}`, 60_000, 40)).toEqual({ tools: [] });
  });

  it('estimates JSON size within a small factor', () => {
    const value = { tools: [{ name: 'search', description: 'Search the tickets', inputSchema: { type: 'object', properties: { q: { type: 'string' } } } }] };
    const actual = JSON.stringify(value).length;
    expect(approximateJsonSize(value)).toBeGreaterThanOrEqual(actual * 0.8);
    expect(approximateJsonSize(value)).toBeLessThanOrEqual(actual * 2);
  });
});
