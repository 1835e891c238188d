import { describe, expect, it } from 'vitest';
import { ListingPageStore, PageCache } from './page-cache';

const page = (tag: string) => ({ tools: [{ name: tag }] });

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
});
