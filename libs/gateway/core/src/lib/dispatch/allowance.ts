/**
 * A token bucket read synchronously, for work a peer can ask of a replica as often as it likes and that MCP lets the
 * gateway drop: messages an upstream sends to be relayed, cancellations to be told to every replica. (The tenants'
 * rate limits use rate-limiter-flexible over Redis; its in-memory limiter answers with a promise and keeps a timer a
 * key, too much for a check made on every relayed message.)
 */
export class Allowance {
  private tokens: number;
  private at: number;
  private dropped = 0;
  private warnedAt = Number.NEGATIVE_INFINITY;

  /** `perSecond` refills a bucket holding at most `burst`, full at first. */
  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    now = performance.now(),
  ) {
    this.tokens = burst;
    this.at = now;
  }

  /** Takes one token: false (the work is dropped, and counted) when none is left. */
  take(now = performance.now()): boolean {
    this.refill(now);
    if (this.tokens < 1) {
      this.dropped += 1;
      return false;
    }
    this.tokens -= 1;
    return true;
  }

  /** Whether the bucket is full again (nothing taken of it is still counted against its owner). */
  isFull(now = performance.now()): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }

  /**
   * The work dropped since the last time this said so, at most once every `everyMs` (for a warning that does not flood
   * the log in turn); undefined when nothing was dropped or it is too soon.
   */
  droppedToReport(everyMs: number, now = performance.now()): number | undefined {
    if (this.dropped === 0 || now - this.warnedAt < everyMs) return undefined;
    const dropped = this.dropped;
    this.dropped = 0;
    this.warnedAt = now;
    return dropped;
  }

  private refill(now: number): void {
    if (now <= this.at) return;
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.perSecond) / 1_000);
    this.at = now;
  }
}

/**
 * One `Allowance` a key (a principal, say), made when the key first takes. Keys whose bucket is full again are forgotten
 * once `pruneAt` keys are held (a full bucket is what a new one would be), so the map holds about the keys active
 * lately; while more than that are active it grows, and prunes again at twice its size.
 */
export class Allowances<K> {
  private readonly buckets = new Map<K, Allowance>();
  private nextPrune: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly pruneAt = 10_000,
  ) {
    this.nextPrune = pruneAt;
  }

  /** The bucket of `key`, made full if it has none. */
  of(key: K, now = performance.now()): Allowance {
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= this.nextPrune) this.prune(now);
      bucket = new Allowance(this.perSecond, this.burst, now);
      this.buckets.set(key, bucket);
    }
    return bucket;
  }

  /** Keys held (for tests). */
  get size(): number {
    return this.buckets.size;
  }

  private prune(now: number): void {
    for (const [key, bucket] of this.buckets) if (bucket.isFull(now)) this.buckets.delete(key);
    this.nextPrune = Math.max(this.pruneAt, this.buckets.size * 2);
  }
}
