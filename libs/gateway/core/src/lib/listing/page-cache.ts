type Page = Record<string, unknown>;

interface StoredPage {
  readonly page: Page;
  readonly at: number;
  readonly owner: PageCache;
}

/**
 * Every listing page this replica keeps, for all sessions, in the order they were stored: the bound on what the
 * listing cache may hold however many sessions list at once (past `maxPages` the oldest page goes), and the one place
 * the session sweep drops expired pages from, whether or not their session is still live here.
 */
export class ListingPageStore {
  private readonly entries = new Map<string, StoredPage>();

  constructor(readonly maxPages: number) {}

  get size(): number {
    return this.entries.size;
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
    this.entries.delete(key);
    this.entries.set(key, entry);
    while (this.entries.size > this.maxPages) {
      const oldest = this.entries.entries().next();
      if (oldest.done) break;
      this.drop(oldest.value[0], oldest.value[1]);
    }
  }

  /** @internal */
  drop(key: string, entry: StoredPage): void {
    if (this.entries.get(key) !== entry) return;
    this.entries.delete(key);
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
    this.store.write(storeKey, { page, at: now, owner: this });
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
