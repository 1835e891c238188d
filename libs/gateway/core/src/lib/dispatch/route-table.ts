/**
 * Routes a session learns from its upstreams' listings (a resource URI or a template to the upstream that listed it),
 * bounded in count and in the characters of their keys together: upstreams choose the URIs, up to the size of a
 * message, and every session holds its own routes. Past either bound the oldest routes go (Maps keep insertion order);
 * a read of a URI whose route went walks the listings again.
 */
export class RouteTable<V> {
  private readonly routes = new Map<string, V>();
  private chars = 0;

  constructor(
    private readonly maxRoutes: number,
    private readonly maxChars: number,
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
    if (key.length > this.maxChars) return;
    while (this.routes.size > 0 && (this.routes.size >= this.maxRoutes || this.chars + key.length > this.maxChars)) {
      const oldest = this.routes.keys().next().value as string;
      this.delete(oldest);
    }
    this.routes.set(key, value);
    this.chars += key.length;
  }

  delete(key: string): void {
    if (this.routes.delete(key)) this.chars -= key.length;
  }

  /** Drops every route whose value `drop` picks. */
  deleteWhere(drop: (value: V) => boolean): void {
    for (const [key, value] of this.routes) if (drop(value)) this.delete(key);
  }

  values(): IterableIterator<V> {
    return this.routes.values();
  }
}
