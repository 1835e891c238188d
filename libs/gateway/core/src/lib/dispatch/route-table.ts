/**
 * The characters of route keys every session of a replica holds together, bounded: each session's own bound times
 * the sessions a replica serves (a principal may hold a thousand, a tenant any number of principals) is gigabytes of
 * text an upstream chose (found by review: 300 sessions of one principal held 293 MiB). Past the bound, the routes
 * that go are those of the table that learned least recently, oldest first, the learning table's own last: a session
 * whose route went walks the listings again, as after its own bound.
 */
export class RouteBudget {
  private chars = 0;
  /** Tables holding routes, the one that learned least recently first (Maps keep insertion order). */
  private readonly tables = new Map<RouteTable<unknown>, true>();

  constructor(readonly maxChars: number) {}

  /** Characters of every key held by the tables drawing on this budget. */
  get keyChars(): number {
    return this.chars;
  }

  /** Tables holding routes. */
  get holders(): number {
    return this.tables.size;
  }

  /** Makes room for `chars` more characters in `table`, which becomes the one that learned last. */
  reserve(table: RouteTable<unknown>, chars: number): void {
    this.tables.delete(table);
    this.tables.set(table, true);
    while (this.chars + chars > this.maxChars) {
      const coldest = this.tables.keys().next().value;
      if (coldest === undefined) break;
      if (!coldest.giveUpOldest()) this.tables.delete(coldest);
    }
    // Emptied on the way (it was the last table holding routes): it holds one again.
    this.tables.set(table, true);
    this.chars += chars;
  }

  /** `chars` characters left `table`; a table holding none no longer counts. */
  returned(table: RouteTable<unknown>, chars: number): void {
    this.chars -= chars;
    if (table.size === 0) this.tables.delete(table);
  }
}

/**
 * Routes a session learns from its upstreams' listings (a resource URI or a template to the upstream that listed it),
 * bounded in count and in the characters of their keys together: upstreams choose the URIs, up to the size of a
 * message, and every session holds its own routes. Past either bound the oldest routes go (Maps keep insertion order);
 * a read of a URI whose route went walks the listings again. A table may also draw on a replica's `RouteBudget`, which
 * may take its oldest routes to make room for another session's.
 */
export class RouteTable<V> {
  private readonly routes = new Map<string, V>();
  private chars = 0;

  /**
   * `budget`: the replica's, shared with other tables. `onTaken`: called when the budget took a route of this table for
   * another's (its session must walk its listings again before it says a URI is unknown).
   */
  constructor(
    private readonly maxRoutes: number,
    private readonly maxChars: number,
    private readonly budget?: RouteBudget,
    private readonly onTaken?: () => void,
  ) {}

  get size(): number {
    return this.routes.size;
  }

  /** Characters of every key held. */
  get keyChars(): number {
    return this.chars;
  }

  get(key: string): V | undefined {
    return this.routes.get(key);
  }

  /** Learns a route. A key already held keeps its place, and its value unless `replaces(held)` says the new one wins. */
  learn(key: string, value: V, replaces: (held: V) => boolean): void {
    const held = this.routes.get(key);
    if (held !== undefined) {
      if (replaces(held)) this.routes.set(key, value);
      return;
    }
    if (key.length > this.maxChars || (this.budget !== undefined && key.length > this.budget.maxChars)) return;
    while (this.routes.size > 0 && (this.routes.size >= this.maxRoutes || this.chars + key.length > this.maxChars)) this.dropOldest();
    // Before the route is in: a table the budget empties to make room is one no longer holding any.
    this.budget?.reserve(this, key.length);
    this.routes.set(key, value);
    this.chars += key.length;
  }

  delete(key: string): void {
    if (!this.routes.delete(key)) return;
    this.chars -= key.length;
    this.budget?.returned(this, key.length);
  }

  /** Drops the oldest route; false when there is none. */
  dropOldest(): boolean {
    const oldest = this.routes.keys().next();
    if (oldest.done === true) return false;
    this.delete(oldest.value);
    return true;
  }

  /** Drops the oldest route for the budget (see `onTaken`); false when there is none. */
  giveUpOldest(): boolean {
    if (!this.dropOldest()) return false;
    this.onTaken?.();
    return true;
  }

  /** Drops every route (the session left the replica): the budget gets their characters back, and forgets the table. */
  clear(): void {
    if (this.routes.size === 0) return;
    const chars = this.chars;
    this.routes.clear();
    this.chars = 0;
    // Also when the keys held no character (an empty URI): the table is no longer the budget's to count.
    this.budget?.returned(this, chars);
  }

  /** Drops every route whose value `drop` picks. */
  deleteWhere(drop: (value: V) => boolean): void {
    for (const [key, value] of this.routes) if (drop(value)) this.delete(key);
  }

  values(): IterableIterator<V> {
    return this.routes.values();
  }
}
