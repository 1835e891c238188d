import type { RateLimitSpec } from '@portcullis/contracts/policy-ir';
import type { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { counterKey, type RateLimitSubject } from './keys';
import { leaseIdOf, QuotaLeases, type QuotaLeaseOptions, type TakeResult, type WindowCount } from './quota-leases';
import { redisSemaphore, type SemaphoreClient } from './semaphore';

/** What a tenant wants when Redis cannot be asked: let calls through (logged, audited) or refuse them. */
export type FailMode = 'open' | 'closed';

export interface AppliedLimit {
  readonly ruleId: string;
  readonly rateLimit: RateLimitSpec;
}

export type RateLimitOutcome =
  | {
      readonly allowed: true;
      /** True when Redis could not be asked and the tenant fails open. */
      readonly degraded: boolean;
      /** True when the call holds concurrency slots, which `release` ends. */
      readonly holdsSlots: boolean;
      /** Ends the call's concurrency slots. Idempotent; call it when the call finishes, however it ends. */
      release(): void;
    }
  | {
      readonly allowed: false;
      readonly reason: 'rate' | 'concurrency' | 'unavailable';
      readonly ruleId: string | null;
      readonly scope: readonly string[];
      /** Requests per window, or calls in flight. */
      readonly limit: number | null;
      readonly windowSeconds: number | null;
      readonly retryAfterSeconds: number;
    };

export interface RateLimitServiceOptions {
  readonly redis: Redis;
  readonly keyPrefix: string;
  /** A Redis answer slower than this counts as Redis being down for this call. */
  readonly redisTimeoutMs: number;
  /**
   * How long a concurrency slot lasts beyond the call's own timeout (see `check`): the approval wait fits in it, and a
   * dead replica's slots expire after it.
   */
  readonly concurrencyLeaseMs: number;
  readonly onRedisError?: (error: unknown) => void;
  /** Lease sizing (see `QuotaLeases`); defaults suit production. */
  readonly leases?: QuotaLeaseOptions;
}

class RedisTimeout extends Error {}

/**
 * Gives back ARGV[1] points a window's counter (KEYS[1]) took for a call that was refused meanwhile, if the counter is
 * still that window's: its time left is no more than when it counted them (ARGV[2] ms; a new window's is its whole
 * length). Never below zero.
 */
const REFUND = `
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 or ttl > tonumber(ARGV[2]) then return 0 end
local back = math.min(tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[1]) or '0'))
if back > 0 then redis.call('DECRBY', KEYS[1], back) end
return back
`;

type RefundingRedis = Redis & { portcullisRateLimitRefund(key: string, points: number, msLeftWhenCounted: number): Promise<number> };

interface CounterKeys {
  readonly key: string;
  readonly leaseId: string;
}

/** One promise and one timer per Redis call (no race/finally chain: this runs for every limited request). */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new RedisTimeout('redis timeout')), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

const NOOP_RELEASE = { allowed: true as const, degraded: false, holdsSlots: false, release: () => undefined };
const DEGRADED = { allowed: true as const, degraded: true, holdsSlots: false, release: () => undefined };
const UNAVAILABLE: RateLimitOutcome = {
  allowed: false,
  reason: 'unavailable',
  ruleId: null,
  scope: [],
  limit: null,
  windowSeconds: null,
  retryAfterSeconds: 1,
};

function rejectionOf(result: TakeResult, limit: AppliedLimit, points: number, windowSeconds: number): RateLimitOutcome | null {
  if (result.ok) return null;
  return {
    allowed: false,
    reason: 'rate',
    ruleId: limit.ruleId,
    scope: limit.rateLimit.scope,
    limit: points,
    windowSeconds,
    retryAfterSeconds: Math.max(1, Math.ceil(result.retryAfterMs / 1000)),
  };
}

/**
 * Whether a Redis command failed before it was sent: ioredis refuses at once, with no offline queue, while the
 * connection is down. (A command lost with its connection after it was sent may have run.)
 */
const neverSent = (error: unknown): boolean => error instanceof Error && error.message.includes("isn't writeable");

/** The first wait before a failed slot release is tried again (then doubled), and how many times it is. */
const RELEASE_RETRY_MS = 500;
const RELEASE_ATTEMPTS = 8;
/** Failed slot releases retried at once at most (each a timer and two strings). */
const MAX_RETRYING_RELEASES = 10_000;

/**
 * A limit counted under the caller's own principal alone: scoped per user on a user's call, or per agent client on the
 * call of an agent client acting for no user. A per-agent-client limit on a user's call counts every user of that
 * client (or, with no client, every user: `-`) under one key, shared, as a per-user one does on agent clients' calls.
 */
const ownTo = (subject: RateLimitSubject, limit: AppliedLimit): boolean =>
  subject.userId !== null ? limit.rateLimit.scope.includes('user') : subject.agentClientId !== null && limit.rateLimit.scope.includes('agent_client');

/**
 * Enforces the rate limits a policy decision carries, shared by every gateway replica through Redis.
 * Request rates are fixed windows counted by rate-limiter-flexible (atomic INCRBY+PEXPIRE), taken in leases
 * (`QuotaLeases`): a replica counts a block of calls in Redis at once and admits them from memory, so most calls
 * cost no Redis round trip at all, and all replicas together never admit more than the limit. Concurrency bounds
 * (calls in flight) are a Redis semaphore per call. A call's Redis commands are sent in the same tick, which ioredis
 * (auto-pipelining on) turns into one round trip; two when both the caller's own limits and limits it shares with
 * others apply (its own are judged first, `checkAll`).
 */
export class RateLimitService {
  private readonly limiters = new Map<string, RateLimiterRedis>();
  private readonly semaphore: SemaphoreClient;
  private readonly leases: QuotaLeases;
  private readonly keys = new WeakMap<RateLimitSubject, WeakMap<AppliedLimit, CounterKeys>>();

  /**
   * Where a Redis failure no caller waits for goes (a slot given back, a count refunded): to `onRedisError` if given,
   * else nowhere. Never left unhandled: a rejection nobody handles ends the process, every tenant's calls with it.
   */
  private readonly reportError = (error: unknown): void => {
    this.options.onRedisError?.(error);
  };

  /** Slots whose release failed (Redis away), tried again until given back or their bound passes. */
  private readonly retryingReleases = new Set<NodeJS.Timeout>();

  constructor(private readonly options: RateLimitServiceOptions) {
    this.semaphore = redisSemaphore(options.redis, options.keyPrefix);
    const refunding = options.redis as RefundingRedis;
    if (typeof refunding.portcullisRateLimitRefund !== 'function') options.redis.defineCommand('portcullisRateLimitRefund', { numberOfKeys: 1, lua: REFUND });
    this.leases = new QuotaLeases((key, points, limit, windowSeconds) => this.count(key, points, limit, windowSeconds), options.leases);
  }

  /** Stops the lease sweeper (shutdown). */
  close(): void {
    this.leases.close();
    for (const timer of this.retryingReleases) clearTimeout(timer);
    this.retryingReleases.clear();
  }

  /**
   * Synchronous when every limit is a request rate answered from a lease (the common case). `callMs`: how long the call
   * may run once admitted (its upstream's call timeout); a concurrency slot lasts `concurrencyLeaseMs` plus that, so it
   * cannot expire under a call still running and let one more in than the limit allows.
   */
  check(subject: RateLimitSubject, limits: readonly AppliedLimit[], failMode: FailMode, callMs = 0): RateLimitOutcome | Promise<RateLimitOutcome> {
    if (limits.length === 0) return NOOP_RELEASE;
    const only = limits.length === 1 ? limits[0] : undefined;
    if (only && only.rateLimit.maxConcurrent === undefined) return this.checkRateOnly(subject, only, failMode);
    return this.checkAll(subject, limits, failMode, this.options.concurrencyLeaseMs + Math.max(0, callMs));
  }

  private async checkAll(subject: RateLimitSubject, limits: readonly AppliedLimit[], failMode: FailMode, slotMs: number): Promise<RateLimitOutcome> {
    // Identifies this call's concurrency slots (minted only when a limit has a concurrency bound).
    const token = limits.some((limit) => limit.rateLimit.maxConcurrent !== undefined) ? randomUUID() : '';
    const held: string[] = [];
    const releaseHeld = (): void => {
      for (const key of held.splice(0)) this.releaseSlot(key, token);
    };
    // The caller's own limits first (rates and calls in flight counted under its own user or agent client): a call one
    // of them refuses counts nothing against the limits others share too (the tenant's, a tool's, an agent client's
    // that every user's call falls under), so one principal retrying past its own limit does not spend theirs (found by
    // reviews: twelve refused calls of one user refused another's first call as over the tenant's limit).
    const own = limits.filter((limit) => ownTo(subject, limit));
    const phases = own.length > 0 && own.length < limits.length ? [own, limits.filter((limit) => !ownTo(subject, limit))] : [limits];
    let unavailable = false;
    for (const [index, phase] of phases.entries()) {
      const outcome = await this.phase(subject, phase, token, slotMs, held);
      unavailable ||= outcome.unavailable;
      if (outcome.rejection) {
        releaseHeld();
        return outcome.rejection;
      }
      if (!unavailable) continue;
      // Redis failed: a fail-closed tenant is refused whatever the rest says (not counted against them). A fail-open one
      // is judged on the rest only as far as this replica knows without Redis (a window its leases know is spent still
      // refuses), never waiting out a second timeout (found by a review, and a re-review of its first fix).
      if (failMode === 'closed') {
        releaseHeld();
        return UNAVAILABLE;
      }
      const rejection = this.judgeFromMemory(subject, phases.slice(index + 1).flat());
      if (rejection) {
        releaseHeld();
        return rejection;
      }
      break;
    }
    return { allowed: true, degraded: unavailable, holdsSlots: held.length > 0, release: releaseHeld };
  }

  /**
   * Counts the call against `limits` (rates) and takes their concurrency slots, all in one round trip: the slots taken
   * are added to `held`; what refuses (the one that frees up last among rates, else the first concurrency bound) and
   * whether Redis failed come back.
   */
  private async phase(
    subject: RateLimitSubject,
    limits: readonly AppliedLimit[],
    token: string,
    slotMs: number,
    held: string[],
  ): Promise<{ unavailable: boolean; rejection: RateLimitOutcome | null }> {
    const rateChecks: (RateLimitOutcome | null | Promise<RateLimitOutcome | null>)[] = [];
    const concurrencyChecks: { key: string; limit: AppliedLimit; acquire: Promise<boolean> }[] = [];
    for (const limit of limits) {
      const key = counterKey(subject, limit.ruleId, limit.rateLimit.scope);
      const { requests, windowSeconds, maxConcurrent } = limit.rateLimit;
      if (requests !== undefined && windowSeconds !== undefined) rateChecks.push(this.consume(key, limit, requests, windowSeconds));
      if (maxConcurrent !== undefined) concurrencyChecks.push({ key, limit, acquire: this.semaphore.acquire(key, token, maxConcurrent, slotMs) });
    }
    // Settled from the start: a failed acquire waited on only after the rates (which may take longer) was a rejection
    // nobody handled for that while, and that ends the process (found by a review).
    const acquired = Promise.allSettled(concurrencyChecks.map((check) => withTimeout(check.acquire, this.options.redisTimeoutMs)));
    let { unavailable, rejection } = this.judgeRates(await Promise.allSettled(rateChecks));
    (await acquired).forEach((result, index) => {
      const check = concurrencyChecks[index];
      if (!check) return;
      if (result.status === 'rejected') {
        unavailable = true;
        this.options.onRedisError?.(result.reason);
        // An acquire given up on may still run, or have run (a slow Redis; a connection lost after sending it; a script
        // sent again after NOSCRIPT): once its real outcome is known, a slot it took is given back, and one whose
        // outcome is lost is released anyway. Only one refused before it was sent (the connection down) is left: it
        // never reached Redis, and retrying those crowded out releases of slots really held (found by reviews).
        if (result.reason instanceof RedisTimeout) {
          check.acquire.then(
            (taken) => (taken ? this.releaseSlot(check.key, token) : undefined),
            (error: unknown) => (neverSent(error) ? undefined : this.releaseSlot(check.key, token)),
          );
        } else if (!neverSent(result.reason)) this.releaseSlot(check.key, token);
      } else if (result.value) {
        held.push(check.key);
      } else if (!rejection) {
        rejection = {
          allowed: false,
          reason: 'concurrency',
          ruleId: check.limit.ruleId,
          scope: check.limit.rateLimit.scope,
          limit: check.limit.rateLimit.maxConcurrent ?? null,
          windowSeconds: null,
          retryAfterSeconds: 1,
        };
      }
    });
    return { unavailable, rejection };
  }

  /**
   * Gives a concurrency slot back; while Redis cannot be reached, tries again (after 0.5 s, doubling, for about two
   * minutes). A release lost to a moment without Redis held the slot for its whole lease (15 minutes and the call's
   * timeout): a scope of one call at a time was refused for that long with nothing in flight (found by a review). At
   * most MAX_RETRYING_RELEASES are retried at once; past that a slot waits for its lease, as before.
   */
  private releaseSlot(key: string, token: string, attempt = 0): void {
    this.semaphore.release(key, token).catch((error: unknown) => {
      this.reportError(error);
      if (attempt >= RELEASE_ATTEMPTS || this.retryingReleases.size >= MAX_RETRYING_RELEASES) return;
      const timer = setTimeout(() => {
        this.retryingReleases.delete(timer);
        this.releaseSlot(key, token, attempt + 1);
      }, RELEASE_RETRY_MS * 2 ** attempt);
      timer.unref();
      this.retryingReleases.add(timer);
    });
  }

  /**
   * The refusal of `limits`' rates as far as the leases answer from memory (none asked of Redis); null when none
   * refuses. Of several, the one that frees up last.
   */
  private judgeFromMemory(subject: RateLimitSubject, limits: readonly AppliedLimit[]): RateLimitOutcome | null {
    let rejection: RateLimitOutcome | null = null;
    for (const limit of limits) {
      const { requests, windowSeconds } = limit.rateLimit;
      if (requests === undefined || windowSeconds === undefined) continue;
      const taken = this.leases.takeFromMemory(counterKey(subject, limit.ruleId, limit.rateLimit.scope), requests, windowSeconds);
      const refused = taken === undefined ? null : rejectionOf(taken, limit, requests, windowSeconds);
      if (refused && !refused.allowed && (rejection === null || (!rejection.allowed && refused.retryAfterSeconds > rejection.retryAfterSeconds))) rejection = refused;
    }
    return rejection;
  }

  /** Folds settled rate checks into whether Redis failed and which refusal to answer with. */
  private judgeRates(results: readonly PromiseSettledResult<RateLimitOutcome | null>[]): { unavailable: boolean; rejection: RateLimitOutcome | null } {
    let unavailable = false;
    let rejection: RateLimitOutcome | null = null;
    for (const result of results) {
      if (result.status === 'rejected') {
        unavailable = true;
        this.options.onRedisError?.(result.reason);
      } else if (result.value && (rejection === null || (!rejection.allowed && !result.value.allowed && result.value.retryAfterSeconds > rejection.retryAfterSeconds))) {
        // Of several limits refusing, the one that frees up last: a retry any sooner is refused again (and counted).
        rejection = result.value;
      }
    }
    return { unavailable, rejection };
  }

  /**
   * The common case, one limit without a concurrency bound: the same answers as `check` without its bookkeeping
   * (no slot token, no settled-array passes).
   */
  private checkRateOnly(subject: RateLimitSubject, limit: AppliedLimit, failMode: FailMode): RateLimitOutcome | Promise<RateLimitOutcome> {
    const { requests, windowSeconds } = limit.rateLimit;
    if (requests === undefined || windowSeconds === undefined) return NOOP_RELEASE;
    const { key, leaseId } = this.keysOf(subject, limit, requests, windowSeconds);
    const decided = this.consume(key, limit, requests, windowSeconds, leaseId);
    if (!(decided instanceof Promise)) return decided ?? NOOP_RELEASE;
    return decided.then(
      (outcome) => outcome ?? NOOP_RELEASE,
      (error: unknown) => {
        this.options.onRedisError?.(error);
        return failMode === 'closed' ? UNAVAILABLE : DEGRADED;
      },
    );
  }

  /** null when within the limit, a rejection when over it; a rejected promise when Redis is unavailable. */
  private consume(key: string, limit: AppliedLimit, points: number, windowSeconds: number, leaseId?: string): RateLimitOutcome | null | Promise<RateLimitOutcome | null> {
    const taken = this.leases.take(key, points, windowSeconds, leaseId);
    if (taken instanceof Promise) return taken.then((result) => rejectionOf(result, limit, points, windowSeconds));
    return rejectionOf(taken, limit, points, windowSeconds);
  }

  /**
   * The counter key and lease id of a subject under a limit, remembered per (subject, limit) object pair: the rate-limit
   * hooks hand the same objects for the same session, target and policy decision, so a call builds and hashes no
   * key strings. Fresh objects (other callers) are keyed once and forgotten with them.
   */
  private keysOf(subject: RateLimitSubject, limit: AppliedLimit, requests: number, windowSeconds: number): CounterKeys {
    let byLimit = this.keys.get(subject);
    if (byLimit === undefined) this.keys.set(subject, (byLimit = new WeakMap()));
    let keys = byLimit.get(limit);
    if (keys === undefined) {
      const key = counterKey(subject, limit.ruleId, limit.rateLimit.scope);
      keys = { key, leaseId: leaseIdOf(key, requests, windowSeconds) };
      byLimit.set(limit, keys);
    }
    return keys;
  }

  /** Adds `points` to the key's window in Redis; a full window is an answer (the count), not an error. */
  private async count(key: string, points: number, limit: number, windowSeconds: number): Promise<WindowCount> {
    const limiter = this.limiterFor(limit, windowSeconds);
    const consuming = limiter.consume(key, points);
    try {
      const res = await withTimeout(consuming, this.options.redisTimeoutMs);
      return { consumed: res.consumedPoints, msBeforeNext: Math.max(1, res.msBeforeNext) };
    } catch (error) {
      if (error instanceof RateLimiterRes) return { consumed: error.consumedPoints, msBeforeNext: Math.max(1, error.msBeforeNext) };
      if (error instanceof RedisTimeout) {
        // Given up on, but a slow Redis may count it still: once it does, the points go back, or the window would hold
        // calls nobody was admitted for (a fail-closed tenant refused as "unavailable" would then be refused as over
        // its limit for the rest of the window). Into the window that counted them only: a refund landing after it
        // ended would start the next one below zero, and admit more than the limit there.
        const refund = (late: RateLimiterRes): Promise<unknown> =>
          (this.options.redis as RefundingRedis).portcullisRateLimitRefund(limiter.getKey(key), points, late.msBeforeNext);
        consuming.then(refund, (late: unknown) => (late instanceof RateLimiterRes ? refund(late) : undefined)).catch(this.reportError);
      }
      throw error;
    }
  }

  private limiterFor(points: number, windowSeconds: number): RateLimiterRedis {
    const id = `${points}/${windowSeconds}`;
    let limiter = this.limiters.get(id);
    if (!limiter) {
      limiter = new RateLimiterRedis({
        storeClient: this.options.redis,
        keyPrefix: `${this.options.keyPrefix}:rl:${id}`,
        points,
        duration: windowSeconds,
        // No in-memory blocking here: the leases already refuse from memory once Redis says a window is spent.
        rejectIfRedisNotReady: true,
      });
      this.limiters.set(id, limiter);
    }
    return limiter;
  }
}
