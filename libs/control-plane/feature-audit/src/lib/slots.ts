/**
 * Places for work that holds a database connection (or a file and a response) for seconds: at most `perKey` at once
 * for one key (a tenant), and `total` at once in all, in this process. `take` hands out a release to call once, when
 * the work is over, or undefined when there is no place.
 */
export class Slots {
  private readonly held = new Map<string, number>();
  private inUse = 0;

  constructor(
    readonly perKey: number,
    readonly total: number = Number.POSITIVE_INFINITY,
  ) {}

  take(key: string): (() => void) | undefined {
    const mine = this.held.get(key) ?? 0;
    if (mine >= this.perKey || this.inUse >= this.total) return undefined;
    this.held.set(key, mine + 1);
    this.inUse += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse -= 1;
      const left = (this.held.get(key) ?? 1) - 1;
      if (left > 0) this.held.set(key, left);
      else this.held.delete(key);
    };
  }

  /** Places `key` holds. */
  heldBy(key: string): number {
    return this.held.get(key) ?? 0;
  }

  /** Places taken (specs). */
  get size(): number {
    return this.inUse;
  }
}
