type Page = Record<string, unknown>;

interface StoredPage {
  readonly page: Page;
  readonly at: number;
  readonly owner: PageCache;
  /** Approximate size (see `approximateJsonSize`). */
  readonly bytes: number;
}

/**
 * About how many bytes of JSON a value is: string lengths plus a little per value. One walk, no serialisation; what
 * the page store bounds memory by (a listing held in memory is a few times its JSON size, never less).
 */
export function approximateJsonSize(value: unknown): number {
  if (typeof value === 'string') return value.length + 2;
  if (typeof value !== 'object' || value === null) return 8;
  let size = 2;
  if (Array.isArray(value)) {
    for (const item of value) size += approximateJsonSize(item) + 1;
    return size;
  }
  for (const key in value) size += key.length + 4 + approximateJsonSize((value as Record<string, unknown>)[key]);
  return size;
}

/** One tenant's pages in a `ListingPageStore`, in the order they were stored. */
interface Holding {
  readonly pages: Map<string, StoredPage>;
  bytes: number;
}

/**
 * Every listing page this replica keeps, for all sessions, in the order they were stored: the bound on what the
 * listing cache may hold however many sessions list at once, and the one place the session sweep drops expired pages
 * from, whether or not their session is still live here. Past `maxPages` (or `maxBytes`) the oldest page of the
 * tenant holding the most pages (or bytes) goes: one tenant's agents paging through long listings, or its upstream
 * answering large pages, push out that tenant's own pages, not every other tenant's (found by review: with one queue
 * for all, 40 pages of one tenant emptied the others' caches, and their listings went to their upstreams each time).
 */
export class ListingPageStore {
  private readonly entries = new Map<string, StoredPage>();
  /** The pages by tenant (`PageCache.tenant`). */
  private readonly holdings = new Map<string, Holding>();
  private totalBytes = 0;
  /** A page larger than this is not kept at all (a sixteenth of `maxBytes`): it would push out many others. */
  readonly maxPageBytes: number;

  /**
   * `maxBytes`: bound on the pages' approximate JSON size together; past it (or past `maxPages`) the oldest go. An
   * upstream answering megabyte listings to thousands of sessions would otherwise hold gigabytes for every tenant.
   */
  constructor(
    readonly maxPages: number,
    readonly maxBytes: number = 256 * 1024 * 1024,
  ) {
    this.maxPageBytes = Math.floor(maxBytes / 16);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Approximate JSON size of the pages held. */
  get bytes(): number {
    return this.totalBytes;
  }

  /** Drops the pages stored `maxAgeMs` ago or earlier. */
  prune(maxAgeMs: number, now: number): void {
    // Stored in time order (a page stored again moves to the end): stop at the first one still fresh.
    for (const [key, entry] of this.entries) {
      if (now - entry.at < maxAgeMs) break;
      this.drop(key, entry);
    }
  }

  /** @internal PageCache's side of the store. */
  read(key: string): StoredPage | undefined {
    return this.entries.get(key);
  }

  /** @internal */
  write(key: string, entry: StoredPage): void {
    const previous = this.entries.get(key);
    if (previous !== undefined) {
      // Replaced by its owner's own write: the owner keeps the key unless the new page is not kept either.
      this.entries.delete(key);
      this.totalBytes -= previous.bytes;
      this.unhold(key, previous);
    }
    if (entry.bytes > this.maxPageBytes) return;
    this.entries.set(key, entry);
    this.totalBytes += entry.bytes;
    let holding = this.holdings.get(entry.owner.tenant);
    if (holding === undefined) this.holdings.set(entry.owner.tenant, (holding = { pages: new Map(), bytes: 0 }));
    holding.pages.set(key, entry);
    holding.bytes += entry.bytes;
    while (this.entries.size > this.maxPages || this.totalBytes > this.maxBytes) {
      const oldest = this.largestHolding(this.entries.size > this.maxPages)?.pages.entries().next();
      if (oldest === undefined || oldest.done) break;
      const [oldestKey, oldestPage] = oldest.value;
      // Holdings and `entries` change together (`unhold`); should they ever disagree, the page leaves the holding all
      // the same, so that every turn of this loop takes one page out of one or the other and it ends.
      if (this.entries.get(oldestKey) === oldestPage) this.drop(oldestKey, oldestPage);
      else this.unhold(oldestKey, oldestPage);
    }
  }

  /** @internal */
  drop(key: string, entry: StoredPage): void {
    if (this.entries.get(key) !== entry) return;
    this.entries.delete(key);
    this.totalBytes -= entry.bytes;
    this.unhold(key, entry);
    entry.owner.forget(key);
  }

  /**
   * Takes `entry` out of its tenant's holding (as out of `entries`, always together: a page left in a holding that
   * `entries` no longer has could never be dropped, and the eviction loop would spin for ever — found by re-review).
   */
  private unhold(key: string, entry: StoredPage): void {
    const holding = this.holdings.get(entry.owner.tenant);
    if (holding === undefined || holding.pages.get(key) !== entry) return;
    holding.pages.delete(key);
    holding.bytes -= entry.bytes;
    if (holding.pages.size === 0) this.holdings.delete(entry.owner.tenant);
  }

  /** The tenant holding the most pages (`byPages`) or bytes (one scan of the tenants: only when over a bound). */
  private largestHolding(byPages: boolean): Holding | undefined {
    let largest: Holding | undefined;
    for (const holding of this.holdings.values()) {
      if (largest === undefined || (byPages ? holding.pages.size > largest.pages.size : holding.bytes > largest.bytes)) largest = holding;
    }
    return largest;
  }
}

let nextCacheId = 0;

/**
 * One upstream session's cached listing pages (`method + cursor` → page), held in the replica's `ListingPageStore`.
 * `generation` moves on every list_changed: pages fetched before it are neither kept nor served.
 */
export class PageCache {
  generation = 0;
  private readonly prefix = `${(nextCacheId++).toString(36)}\u0000`;
  /** Store keys of this cache's pages (a few: one per listing method and cursor). */
  private readonly keys = new Set<string>();

  /** `tenant`: whose pages these are (the store's bounds are shared out by tenant). */
  constructor(
    private readonly store: ListingPageStore,
    readonly tenant = '',
  ) {}

  /** The page if stored less than `maxAgeMs` ago (an older one is dropped). */
  get(key: string, maxAgeMs: number, now: number): Page | undefined {
    const storeKey = this.prefix + key;
    const entry = this.store.read(storeKey);
    if (entry === undefined) return undefined;
    if (now - entry.at < maxAgeMs) return entry.page;
    this.store.drop(storeKey, entry);
    return undefined;
  }

  /** Keeps a page fetched while `generation` was `fetchedIn`; a list_changed since then makes it stale, so no. */
  set(key: string, page: Page, fetchedIn: number, now: number): void {
    if (fetchedIn !== this.generation) return;
    const storeKey = this.prefix + key;
    this.keys.add(storeKey);
    // The key counts too: it holds the upstream's cursor (up to MAX_UPSTREAM_CURSOR_LENGTH), which may be larger than
    // the page it names.
    this.store.write(storeKey, { page, at: now, owner: this, bytes: approximateJsonSize(page) + 2 * storeKey.length });
    // Too large to keep: written nowhere, so not this cache's either.
    if (this.store.read(storeKey) === undefined) this.keys.delete(storeKey);
  }

  /** The upstream's lists changed, or the session is gone here: its pages leave the store at once. */
  clear(): void {
    this.generation++;
    for (const storeKey of [...this.keys]) {
      const entry = this.store.read(storeKey);
      if (entry !== undefined) this.store.drop(storeKey, entry);
    }
    this.keys.clear();
  }

  /** @internal The store dropped one of this cache's pages. */
  forget(storeKey: string): void {
    this.keys.delete(storeKey);
  }

  get size(): number {
    return this.keys.size;
  }
}
