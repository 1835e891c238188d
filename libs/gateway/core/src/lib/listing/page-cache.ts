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

/**
 * Every listing page this replica keeps, for all sessions, in the order they were stored: the bound on what the
 * listing cache may hold however many sessions list at once (past `maxPages` the oldest page goes), and the one place
 * the session sweep drops expired pages from, whether or not their session is still live here.
 */
export class ListingPageStore {
  private readonly entries = new Map<string, StoredPage>();
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
    }
    if (entry.bytes > this.maxPageBytes) return;
    this.entries.set(key, entry);
    this.totalBytes += entry.bytes;
    while (this.entries.size > this.maxPages || this.totalBytes > this.maxBytes) {
      const oldest = this.entries.entries().next();
      if (oldest.done) break;
      this.drop(oldest.value[0], oldest.value[1]);
    }
  }

  /** @internal */
  drop(key: string, entry: StoredPage): void {
    if (this.entries.get(key) !== entry) return;
    this.entries.delete(key);
    this.totalBytes -= entry.bytes;
    entry.owner.forget(key);
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

  constructor(private readonly store: ListingPageStore) {}

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
