import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { RateLimitService, type AppliedLimit, type RateLimitOutcome } from './rate-limiter';
import { redisSemaphore } from './semaphore';

const redis = new Redis(inject('redisUrl'), { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
const deadRedis = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: 0, retryStrategy: () => 1_000, lazyConnect: false });
deadRedis.on('error', () => undefined);
// The gateway waits for Redis at boot (readiness); a limiter asked while Redis is still connecting
// treats it as unavailable, by design.
beforeAll(async () => {
  await redis.ping();
});
afterAll(() => {
  redis.disconnect();
  deadRedis.disconnect();
});

const prefix = () => `test-rl-${randomBytes(4).toString('hex')}`;
const service = (client: Redis = redis, leaseMs = 30_000) =>
  new RateLimitService({ redis: client, keyPrefix: prefix(), redisTimeoutMs: 500, concurrencyLeaseMs: leaseMs });
const subject = (userId: string) => ({ tenantId: 't1', userId, agentClientId: 'a1', tool: 'tickets__create_ticket' });
const perUser = (requests: number, windowSeconds = 60): AppliedLimit => ({
  ruleId: 'r-user',
  rateLimit: { scope: ['user'], requests, windowSeconds },
});

describe('RateLimitService (real Redis)', () => {
  it('allows up to the limit per window, then rejects with the rule, scope and retry-after', async () => {
    const limits = service();
    const outcomes = [];
    for (let i = 0; i < 5; i++) outcomes.push(await limits.check(subject('u1'), [perUser(3)], 'closed'));
    expect(outcomes.map((o) => o.allowed)).toEqual([true, true, true, false, false]);
    expect(outcomes[3]).toMatchObject({ reason: 'rate', ruleId: 'r-user', scope: ['user'], limit: 3, windowSeconds: 60 });
    const rejected = outcomes[3];
    expect(rejected && !rejected.allowed && rejected.retryAfterSeconds).toBeGreaterThan(0);
  });

  it('counts each user separately, and a shared replica sees the same counters', async () => {
    const replicaA = service();
    const sharedPrefix = prefix();
    const a = new RateLimitService({ redis, keyPrefix: sharedPrefix, redisTimeoutMs: 500, concurrencyLeaseMs: 30_000 });
    const b = new RateLimitService({ redis, keyPrefix: sharedPrefix, redisTimeoutMs: 500, concurrencyLeaseMs: 30_000 });
    expect((await a.check(subject('u1'), [perUser(2)], 'closed')).allowed).toBe(true);
    expect((await b.check(subject('u1'), [perUser(2)], 'closed')).allowed).toBe(true);
    expect((await a.check(subject('u1'), [perUser(2)], 'closed')).allowed).toBe(false);
    expect((await b.check(subject('u2'), [perUser(2)], 'closed')).allowed).toBe(true);
    expect((await replicaA.check(subject('u1'), [perUser(2)], 'closed')).allowed).toBe(true);
  });

  it('opens a new window after the old one ends', async () => {
    const limits = service();
    expect((await limits.check(subject('u1'), [perUser(1, 1)], 'closed')).allowed).toBe(true);
    expect((await limits.check(subject('u1'), [perUser(1, 1)], 'closed')).allowed).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect((await limits.check(subject('u1'), [perUser(1, 1)], 'closed')).allowed).toBe(true);
  });

  it('bounds calls in flight and frees a slot on release', async () => {
    const limits = service();
    const twoAtOnce: AppliedLimit = { ruleId: 'r-cc', rateLimit: { scope: ['tenant'], maxConcurrent: 2 } };
    const first = await limits.check(subject('u1'), [twoAtOnce], 'closed');
    const second = await limits.check(subject('u2'), [twoAtOnce], 'closed');
    const third = await limits.check(subject('u3'), [twoAtOnce], 'closed');
    expect([first.allowed, second.allowed, third.allowed]).toEqual([true, true, false]);
    expect(third).toMatchObject({ reason: 'concurrency', limit: 2 });
    if (first.allowed) {
      first.release();
      first.release(); // idempotent
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await limits.check(subject('u3'), [twoAtOnce], 'closed')).allowed).toBe(true);
  });

  it('lets a slot go when its lease runs out (a replica died mid-call)', async () => {
    // Long enough to be certainly still held at the second check, even on a loaded machine.
    const limits = service(redis, 1_000);
    const one: AppliedLimit = { ruleId: 'r-one', rateLimit: { scope: ['tenant'], maxConcurrent: 1 } };
    expect((await limits.check(subject('u1'), [one], 'closed')).allowed).toBe(true);
    expect((await limits.check(subject('u1'), [one], 'closed')).allowed).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    expect((await limits.check(subject('u1'), [one], 'closed')).allowed).toBe(true);
  });

  it('keeps a slot for as long as its call may run: the lease plus the upstream\'s call timeout', async () => {
    const limits = service(redis, 300);
    const one: AppliedLimit = { ruleId: 'r-long', rateLimit: { scope: ['tenant'], maxConcurrent: 1 } };
    // A call to an upstream whose calls may run 1.5 s: its slot outlives the 300 ms lease.
    expect((await limits.check(subject('u1'), [one], 'closed', 1_500)).allowed).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 600));
    // Before, the slot had expired under the running call here and a second call was let in.
    expect((await limits.check(subject('u2'), [one], 'closed', 1_500)).allowed).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 1_400));
    expect((await limits.check(subject('u2'), [one], 'closed', 1_500)).allowed).toBe(true);
  });

  it('keeps a long call\'s slot when a shorter one is taken after it (the set never expires before its longest slot)', async () => {
    const limits = service(redis, 300);
    const two: AppliedLimit = { ruleId: 'r-mixed', rateLimit: { scope: ['tenant'], maxConcurrent: 2 } };
    const long = await limits.check(subject('u1'), [two], 'closed', 2_000);
    const short = await limits.check(subject('u2'), [two], 'closed', 0);
    expect([long.allowed, short.allowed]).toEqual([true, true]);
    if (short.allowed) short.release();
    await new Promise((resolve) => setTimeout(resolve, 700));
    // Before, the short call's 300 ms set the whole set's expiry: the long call's slot went with it, and two more got in.
    expect((await limits.check(subject('u3'), [two], 'closed', 0)).allowed).toBe(true);
    expect((await limits.check(subject('u4'), [two], 'closed', 0)).allowed).toBe(false);
  });

  it('gives back concurrency slots when another limit of the same call rejects', async () => {
    const limits = service();
    const cc: AppliedLimit = { ruleId: 'r-cc', rateLimit: { scope: ['tenant'], maxConcurrent: 1 } };
    const rate = perUser(1);
    const first = await limits.check(subject('u1'), [rate, cc], 'closed');
    expect(first.allowed).toBe(true);
    if (first.allowed) first.release();
    // u1 is over its rate now: the slot this attempt took must be handed back at once.
    expect(await limits.check(subject('u1'), [rate, cc], 'closed')).toMatchObject({ allowed: false, reason: 'rate' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await limits.check(subject('u2'), [cc], 'closed')).allowed).toBe(true);
  });

  it('takes back a slot whose acquire Redis ran only after the call gave up waiting', async () => {
    // A connection of its own, held busy by a blocking command: the acquire behind it runs 600 ms late.
    const slow = new Redis(inject('redisUrl'), { maxRetriesPerRequest: 1 });
    try {
      const keyPrefix = prefix();
      const limits = new RateLimitService({ redis: slow, keyPrefix, redisTimeoutMs: 150, concurrencyLeaseMs: 60_000 });
      const one: AppliedLimit = { ruleId: 'r-one', rateLimit: { scope: ['tenant'], maxConcurrent: 1 } };
      void slow.blpop(`${keyPrefix}:never`, 0.6);
      const degraded = await limits.check(subject('u1'), [one], 'open');
      expect(degraded).toMatchObject({ allowed: true, degraded: true });
      await new Promise((resolve) => setTimeout(resolve, 900));
      // The late acquire ran, and so did the release sent after it: the only slot is free.
      const again = new RateLimitService({ redis, keyPrefix, redisTimeoutMs: 500, concurrencyLeaseMs: 60_000 });
      expect((await again.check(subject('u2'), [one], 'closed')).allowed).toBe(true);
    } finally {
      slow.disconnect();
    }
  });

  it('gives back the count of a call it gave up waiting on, once a slow Redis runs it: the window is not spent by refusals', async () => {
    // Redis behind a proxy that holds its replies back while `delayMs` is set (in order).
    let delayMs = 400;
    const target = new URL(inject('redisUrl'));
    const proxy = createServer((inbound) => {
      const outbound = connect(Number(target.port || 6379), target.hostname);
      inbound.on('error', () => undefined);
      outbound.on('error', () => undefined);
      inbound.pipe(outbound);
      let last = 0;
      outbound.on('data', (chunk) => {
        const at = Math.max(Date.now() + delayMs, last);
        last = at;
        setTimeout(() => inbound.write(chunk), at - Date.now());
      });
      inbound.on('close', () => outbound.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const slow = new Redis(`redis://127.0.0.1:${(proxy.address() as AddressInfo).port}`, { enableAutoPipelining: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 });
    slow.on('error', () => undefined);
    try {
      await new Promise<void>((resolve) => slow.once('ready', () => resolve()));
      const limits = new RateLimitService({ redis: slow, keyPrefix: prefix(), redisTimeoutMs: 200, concurrencyLeaseMs: 30_000 });
      const fivePerMinute = perUser(5);
      for (let i = 0; i < 5; i++) expect(await limits.check(subject('u1'), [fivePerMinute], 'closed')).toMatchObject({ allowed: false, reason: 'unavailable' });
      delayMs = 0;
      await new Promise((resolve) => setTimeout(resolve, 800));
      // Not one call was admitted in this window: the first one Redis answers in time is.
      expect(await limits.check(subject('u1'), [fivePerMinute], 'closed')).toMatchObject({ allowed: true });
      limits.close();
    } finally {
      slow.disconnect();
      proxy.close();
    }
  });

  it('gives a late count back only to the window that counted it, never below zero', async () => {
    service(); // defines the refund command on the shared client
    const refund = (key: string, points: number, msLeft: number) =>
      (redis as unknown as { portcullisRateLimitRefund(k: string, p: number, ms: number): Promise<number> }).portcullisRateLimitRefund(key, points, msLeft);
    const key = `${prefix()}:window`;
    // The window that counted 5 points with 40 s left has 39.x s left now: they go back, but no more than it holds.
    await redis.set(key, '3', 'PX', 39_500);
    expect(await refund(key, 5, 40_000)).toBe(3);
    expect(await redis.get(key)).toBe('0');
    // A window begun since (its whole minute left): the points were the old window's, and stay out of this one.
    await redis.set(key, '7', 'PX', 60_000);
    expect(await refund(key, 5, 40_000)).toBe(0);
    expect(await redis.get(key)).toBe('7');
    // No window at all: nothing to give back to.
    await redis.del(key);
    expect(await refund(key, 5, 40_000)).toBe(0);
    expect(await redis.exists(key)).toBe(0);
  });

  it('tells a call several limits refuse to come back when the last of them admits again', async () => {
    const limits = service();
    const everyFiveSeconds: AppliedLimit = { ruleId: 'r-tenant', rateLimit: { scope: ['tenant'], requests: 1, windowSeconds: 5 } };
    const hourly: AppliedLimit = { ruleId: 'r-hourly', rateLimit: { scope: ['user'], requests: 1, windowSeconds: 3_600 } };
    expect((await limits.check(subject('u1'), [everyFiveSeconds, hourly], 'closed')).allowed).toBe(true);
    const refused = await limits.check(subject('u1'), [everyFiveSeconds, hourly], 'closed');
    expect(refused).toMatchObject({ allowed: false, reason: 'rate', ruleId: 'r-hourly' });
    expect(!refused.allowed && refused.retryAfterSeconds).toBeGreaterThan(3_500);
    limits.close();
  });

  it('with Redis unreachable and a concurrency bound, leaves no failure unhandled (one would end the process)', async () => {
    const unhandled: unknown[] = [];
    const collect = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', collect);
    try {
      const limits = service(deadRedis);
      const bounded: AppliedLimit = { ruleId: 'r-cc', rateLimit: { scope: ['tenant'], maxConcurrent: 2 } };
      const open = await limits.check(subject('u1'), [bounded], 'open');
      expect(open).toMatchObject({ allowed: true, degraded: true });
      if (open.allowed) open.release();
      expect(await limits.check(subject('u1'), [bounded, perUser(5)], 'closed')).toMatchObject({ allowed: false, reason: 'unavailable' });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(unhandled.map(String)).toEqual([]);
    } finally {
      process.off('unhandledRejection', collect);
    }
  });

  it('with Redis unreachable: fails closed or open as the tenant chose, quickly', async () => {
    const limits = service(deadRedis);
    const started = Date.now();
    const closed = await limits.check(subject('u1'), [perUser(5)], 'closed');
    const open = await limits.check(subject('u1'), [perUser(5)], 'open');
    expect(closed).toMatchObject({ allowed: false, reason: 'unavailable' });
    expect(open).toMatchObject({ allowed: true, degraded: true });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('two replicas sharing Redis never admit more than the limit together, and most calls skip Redis', async () => {
    const sharedPrefix = prefix();
    const replicas = [0, 1].map(
      () => new RateLimitService({ redis, keyPrefix: sharedPrefix, redisTimeoutMs: 2_000, concurrencyLeaseMs: 30_000 }),
    );
    const limit = perUser(1_500);
    let answeredFromMemory = 0;
    const outcomes: RateLimitOutcome[] = [];
    // 25 closed-loop callers per replica, 40 rounds each.
    for (let round = 0; round < 40; round++) {
      const attempts: Promise<RateLimitOutcome>[] = [];
      for (const replica of replicas) {
        for (let i = 0; i < 25; i++) {
          const outcome = replica.check(subject('u-shared'), [limit], 'closed');
          if (!(outcome instanceof Promise)) answeredFromMemory++;
          attempts.push(Promise.resolve(outcome));
        }
      }
      outcomes.push(...(await Promise.all(attempts)));
    }
    const allowed = outcomes.filter((outcome) => outcome.allowed).length;
    expect(outcomes).toHaveLength(2_000);
    expect(allowed).toBeLessThanOrEqual(1_500);
    expect(allowed).toBeGreaterThan(1_500 - 2 * 75);
    expect(outcomes.find((outcome) => !outcome.allowed)).toMatchObject({ reason: 'rate', limit: 1_500 });
    expect(answeredFromMemory).toBeGreaterThan(1_000);
    for (const replica of replicas) replica.close();
  });

  it("counts slot leases on Redis's clock: a replica whose clock runs ahead does not prune the others' slots", async () => {
    const keyPrefix = prefix();
    const first = redisSemaphore(redis, keyPrefix);
    const skewed = redisSemaphore(redis, keyPrefix);
    expect(await first.acquire('k', 'a', 2, 60_000)).toBe(true);
    // Ten minutes ahead: had it pruned by its own clock, the first slot (60 s lease) would be gone, and a third taken.
    const now = vi.spyOn(Date, 'now').mockReturnValue(Date.now() + 600_000);
    try {
      expect(await skewed.acquire('k', 'b', 2, 60_000)).toBe(true);
      expect(await skewed.acquire('k', 'c', 2, 60_000)).toBe(false);
    } finally {
      now.mockRestore();
    }
    expect(await redis.zcard(`${keyPrefix}:cc:k`)).toBe(2);
  });

  it('costs nothing when no limit applies', async () => {
    const outcome = await service(deadRedis).check(subject('u1'), [], 'closed');
    expect(outcome).toMatchObject({ allowed: true, degraded: false });
  });
});
