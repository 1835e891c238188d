/**
 * What the shared counter (Redis, through rate-limiter-flexible) answered when `points` were added to a key's
 * current window: the window's total after the addition and how long the window has left.
 */
export interface WindowCount {
  readonly consumed: number;
  readonly msBeforeNext: number;
}

/** Adds `points` to a key's fixed window in the shared store; rejects when the store cannot be asked. */
export type ConsumeFn = (key: string, points: number, limit: number, windowSeconds: number) => Promise<WindowCount>;

/** Admitted; or refused until `retryAfterMs` from now because the window is spent. */
export type TakeResult = { readonly ok: true } | { readonly ok: false; readonly retryAfterMs: number };

export interface QuotaLeaseOptions {
  /** Largest lease, in calls, whatever the limit (bounds how many calls one replica may hold unused). */
  readonly maxLease: number;
  /** Largest lease as a share of the limit (a replica never holds more than this share of a window). */
  readonly maxShare: number;
  /** A lease used up faster than this grows (doubles); one that lasts longer than eight times this shrinks. */
  readonly targetLeaseMs: number;
  /**
   * Most keys held at once (default 100,000). Keys carry names an agent chooses (a tool or resource per counter) and
   * live for their window (up to a day): past the bound the oldest idle ones go. Nothing is admitted wrongly by that:
   * their unused calls are lost to the window (counted in the store already), and a spent window is learned again from
   * the store on the next call.
   */
  readonly maxKeys?: number;
}

export const DEFAULT_LEASE_OPTIONS: QuotaLeaseOptions = { maxLease: 1_000, maxShare: 0.05, targetLeaseMs: 100, maxKeys: 100_000 };

/** One key's state on this replica. */
interface Lease {
  /** Calls this replica may still admit in the current window without asking the store. */
  tokens: number;
  /** When the current window ends (the store's TTL, on this process's clock). */
  windowEndsAt: number;
  /** The store said the window is full: once `tokens` are gone, refuse until `windowEndsAt`. */
  spent: boolean;
  /** Size of the next lease request. */
  size: number;
  /** What the store said was left in the window after the last lease (caps the next lease). */
  remaining: number;
  grantedAt: number;
  /**
   * A lease request for more than one call in flight: callers that find no tokens wait for it (its spare calls are
   * theirs) instead of sending their own; when it fails, they fail with it. Requests for one call are not shared.
   */
  pending: Promise<void> | undefined;
}

const OK: TakeResult = { ok: true };

/** A lease's identity: its counter key and its limit (a changed limit starts its own lease). Callers may pass it to `take` precomputed. */
export function leaseIdOf(key: string, limit: number, windowSeconds: number): string {
  return `${key}\u0000${limit}/${windowSeconds}`;
}

/**
 * Per-key quota leases over a shared fixed-window counter: instead of one store round trip per call, a replica
 * adds a block of calls to the window at once (`consume(key, n)`) and admits that many calls from memory.
 *
 * - Never more than the limit: every admitted call was counted in the store before it was admitted, so all
 *   replicas together admit at most `limit` calls per window.
 * - Cheap when far from the limit: leases start at one call and double while they are used up within
 *   `targetLeaseMs`, up to `min(maxLease, maxShare × limit)`; at a steady rate a replica asks the store about
 *   ten times a second per key instead of once per call.
 * - Exact near the limit: a lease is never more than a quarter of what the store said was left, so as a window
 *   fills leases shrink to one call and every call is decided by the store, as without leases (in parallel: a
 *   one-call request is never waited for by other callers).
 * - A call waits for at most two store round trips: it is admitted from the lease, or from the spare calls of a
 *   request already in flight, or — when those ran out before its turn — by its own request, whose first granted
 *   call is its own. When the store cannot be asked, everyone waiting on a request fails with it at once.
 * - The price: calls a replica leased but did not use before the window ended are lost to that window, so calls
 *   can be refused up to (replicas × current lease size) calls before the limit — bounded by the caps above.
 *
 * Keys are per limit (`limit` and `windowSeconds` are part of the lease's identity), so a changed limit starts
 * from its own counter at once, as the store's counters do.
 */
export class QuotaLeases {
  private readonly leases = new Map<string, Lease>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly consume: ConsumeFn,
    private readonly options: QuotaLeaseOptions = DEFAULT_LEASE_OPTIONS,
    private readonly now: () => number = Date.now,
  ) {
    // Keys whose window ended and that nobody is asking about are dropped, so memory follows the live keys.
    this.sweeper = setInterval(() => this.sweep(), 10_000);
    this.sweeper.unref();
  }

  /**
   * Admits one call against `limit` per `windowSeconds` for `key`. Answers synchronously from the lease when it
   * can; otherwise returns a promise that settles after one store round trip (two at most, see the class comment).
   * Rejects only when the store cannot be asked.
   */
  take(key: string, limit: number, windowSeconds: number, id = leaseIdOf(key, limit, windowSeconds)): TakeResult | Promise<TakeResult> {
    const lease = this.leases.get(id);
    if (lease !== undefined) {
      const answer = this.fromLease(lease);
      if (answer !== undefined) return answer;
    }
    return this.renew(id, key, limit, windowSeconds);
  }

  /**
   * `take` as far as this replica can answer without the store: admitted from the lease's tokens, refused while the
   * window is known spent; undefined when only the store could say (nothing is asked of it).
   */
  takeFromMemory(key: string, limit: number, windowSeconds: number, id = leaseIdOf(key, limit, windowSeconds)): TakeResult | undefined {
    const lease = this.leases.get(id);
    return lease === undefined ? undefined : this.fromLease(lease);
  }

  /** How many keys are held (tests and metrics). */
  get size(): number {
    return this.leases.size;
  }

  close(): void {
    clearInterval(this.sweeper);
    this.leases.clear();
  }

  /** Admits or refuses from what the lease holds; undefined when only the store can say. */
  private fromLease(lease: Lease): TakeResult | undefined {
    const now = this.now();
    if (now >= lease.windowEndsAt) return undefined;
    if (lease.tokens > 0) {
      lease.tokens -= 1;
      return OK;
    }
    return lease.spent ? { ok: false, retryAfterMs: lease.windowEndsAt - now } : undefined;
  }

  private async renew(id: string, key: string, limit: number, windowSeconds: number): Promise<TakeResult> {
    let lease = this.leases.get(id);
    if (lease === undefined) {
      if (this.leases.size >= (this.options.maxKeys ?? 100_000)) this.evictOldest();
      lease = { tokens: 0, windowEndsAt: 0, spent: false, size: 1, remaining: limit, grantedAt: 0, pending: undefined };
      this.leases.set(id, lease);
    } else {
      // To the back of the table's order, which eviction drops from the front: a key in use renews its lease often (a
      // lease that lasts less than targetLeaseMs grows), so the front holds the keys least recently renewed. Before, a
      // busy key made first went first, losing the calls already counted for it.
      this.leases.delete(id);
      this.leases.set(id, lease);
    }
    // A request for several calls is in flight: its spare calls may cover this one. Its failure is this call's too
    // (the store cannot be asked), so a crowd fails together instead of retrying one after another.
    let waited = false;
    if (lease.pending !== undefined) {
      await lease.pending;
      waited = true;
      const answer = this.fromLease(lease);
      if (answer !== undefined) return answer;
    }
    // A caller that already waited asks for its own call only (a second round trip at most, and no lease grows by a
    // crowd of callers each asking for a block). Otherwise the lease grows or shrinks as `nextSize` decides; only a
    // block request is shared with callers that arrive meanwhile, so there is at most one per key in flight.
    const now = this.now();
    const size = waited ? 1 : this.nextSize(lease, limit, now, now >= lease.windowEndsAt);
    if (!waited) lease.size = size;
    const request = this.request(lease, size, key, limit, windowSeconds);
    const shared = size > 1 ? request.then(() => undefined) : undefined;
    if (shared !== undefined) {
      lease.pending = shared;
      shared.catch(() => undefined); // the owner awaits `request` itself; waiters await `shared`
    }
    try {
      const reserved = await request;
      if (reserved) return OK;
    } finally {
      if (shared !== undefined && lease.pending === shared) lease.pending = undefined;
    }
    // Nothing granted: the window is spent (the store said so) — or it ended in between; either way not now.
    return { ok: false, retryAfterMs: Math.max(1, lease.windowEndsAt - this.now()) };
  }

  /**
   * Asks the store for the next lease and records what it granted. Resolves true when a call was granted: the first
   * one is the caller's, the rest go to the lease (other callers). Several requests for one key may be in flight at
   * once (one-call requests near the limit); each adds what it was granted.
   */
  private async request(lease: Lease, size: number, key: string, limit: number, windowSeconds: number): Promise<boolean> {
    const sentAt = this.now();
    const count = await this.consume(key, size, limit, windowSeconds);
    const at = this.now();
    const before = count.consumed - size;
    const granted = Math.max(0, Math.min(size, limit - before));
    // The store measured its window's rest when it ran, somewhere between sending and answering: counted from the
    // send, the lease ends no later than the store's window (counted from the answer, unused tokens outlived it by up
    // to a round trip, while other replicas could already spend the next window).
    const endsAt = sentAt + count.msBeforeNext;
    if (at >= lease.windowEndsAt || endsAt > lease.windowEndsAt + 1_000) {
      // A new window: whatever was left of the old one's lease is gone with it.
      lease.tokens = 0;
      lease.spent = false;
      lease.remaining = limit;
      lease.windowEndsAt = endsAt;
    }
    lease.tokens += Math.max(0, granted - 1);
    lease.spent ||= count.consumed >= limit;
    lease.remaining = Math.min(lease.remaining, Math.max(0, limit - count.consumed));
    lease.grantedAt = at;
    return granted > 0;
  }

  private nextSize(lease: Lease, limit: number, now: number, windowOver: boolean): number {
    const cap = Math.max(1, Math.min(this.options.maxLease, Math.floor(limit * this.options.maxShare)));
    let size = lease.size;
    if (lease.grantedAt > 0) {
      const lasted = now - lease.grantedAt;
      if (lasted < this.options.targetLeaseMs) size *= 2;
      else if (lasted > this.options.targetLeaseMs * 8) size = Math.ceil(size / 2);
    }
    // Near the end of what is left, lease less: a quarter of the remainder at most (one call at the very end).
    const remaining = windowOver ? limit : lease.remaining;
    return Math.max(1, Math.min(size, cap, Math.floor(remaining / 4)));
  }

  /**
   * Drops the keys least recently renewed that nobody is waiting on (a sixty-fourth of the bound, at least one), making
   * room in batches.
   */
  private evictOldest(): void {
    let left = Math.max(1, Math.floor((this.options.maxKeys ?? 100_000) / 64));
    for (const [key, lease] of this.leases) {
      if (left === 0) return;
      if (lease.pending !== undefined) continue;
      this.leases.delete(key);
      left -= 1;
    }
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, lease] of this.leases) {
      if (lease.pending === undefined && now >= lease.windowEndsAt) this.leases.delete(key);
    }
  }
}
