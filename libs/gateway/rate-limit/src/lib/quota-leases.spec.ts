import { afterEach, describe, expect, it, vi } from 'vitest';
import { QuotaLeases, type ConsumeFn, type TakeResult } from './quota-leases';

/**
 * A fixed-window counter with Redis's semantics (INCRBY, expiry set by the first add), on a controllable clock; one
 * counter per key and limit, as RateLimitService's limiters are (their Redis prefix names the limit).
 */
function sharedCounter(clock: { now: number }) {
  const windows = new Map<string, { count: number; endsAt: number }>();
  const calls: { key: string; points: number }[] = [];
  let failing = false;
  const consume: ConsumeFn = async (key, points, limit, windowSeconds) => {
    calls.push({ key, points });
    await new Promise((resolve) => setImmediate(resolve)); // a round trip's worth of waiting
    if (failing) throw new Error('store unreachable');
    const id = `${key}|${limit}/${windowSeconds}`;
    let window = windows.get(id);
    if (!window || clock.now >= window.endsAt) {
      window = { count: 0, endsAt: clock.now + windowSeconds * 1_000 };
      windows.set(id, window);
    }
    window.count += points;
    return { consumed: window.count, msBeforeNext: window.endsAt - clock.now };
  };
  return {
    consume,
    calls,
    countOf: (key: string) => [...windows].filter(([id]) => id.startsWith(`${key}|`)).reduce((sum, [, window]) => sum + window.count, 0),
    fail: (value: boolean) => {
      failing = value;
    },
  };
}

const admitted = (results: TakeResult[]) => results.filter((result) => result.ok).length;

async function takeMany(leases: QuotaLeases, key: string, n: number, limit: number, windowSeconds = 60): Promise<TakeResult[]> {
  const results: TakeResult[] = [];
  for (let i = 0; i < n; i++) results.push(await leases.take(key, limit, windowSeconds));
  return results;
}

describe('QuotaLeases', () => {
  const opened: QuotaLeases[] = [];
  const leasesOn = (consume: ConsumeFn, clock: { now: number }, maxLease = 1_000) => {
    const leases = new QuotaLeases(consume, { maxLease, maxShare: 0.05, targetLeaseMs: 100 }, () => clock.now);
    opened.push(leases);
    return leases;
  };
  afterEach(() => {
    for (const leases of opened.splice(0)) leases.close();
    vi.useRealTimers();
  });

  it('admits exactly the limit on one replica and refuses the rest with the time left in the window', async () => {
    const clock = { now: 1_000_000 };
    const store = sharedCounter(clock);
    const leases = leasesOn(store.consume, clock);
    const results = await takeMany(leases, 'k', 120, 100);
    expect(admitted(results)).toBe(100);
    expect(results.slice(100).every((result) => !result.ok)).toBe(true);
    expect(results[119]).toEqual({ ok: false, retryAfterMs: 60_000 });
    // Once the window is spent, refusals are answered from memory (synchronously, no store call).
    const before = store.calls.length;
    expect(leases.take('k', 100, 60)).toEqual({ ok: false, retryAfterMs: 60_000 });
    expect(store.calls.length).toBe(before);
  });

  it('never admits more than the limit across replicas taking concurrently, and wastes little of it', async () => {
    const clock = { now: 1_000_000 };
    const store = sharedCounter(clock);
    const replicas = [leasesOn(store.consume, clock), leasesOn(store.consume, clock), leasesOn(store.consume, clock)];
    const attempts = replicas.flatMap((leases) => Array.from({ length: 1_500 }, () => leases.take('tenant', 2_000, 60)));
    const results = await Promise.all(attempts);
    const ok = admitted(results);
    expect(ok).toBeLessThanOrEqual(2_000);
    // Refused early only by what other replicas leased and had not used: a few leases' worth at most.
    expect(ok).toBeGreaterThan(2_000 - 3 * 100);
    expect(store.countOf('tenant')).toBeGreaterThanOrEqual(ok);
  });

  it('far from the limit, asks the store once per growing block of calls instead of once per call', async () => {
    const clock = { now: 1_000_000 };
    const store = sharedCounter(clock);
    const leases = leasesOn(store.consume, clock);
    const results = await takeMany(leases, 'k', 10_000, 1_000_000);
    expect(admitted(results)).toBe(10_000);
    expect(store.calls.length).toBeLessThan(30);
    expect(Math.max(...store.calls.map((call) => call.points))).toBe(1_000);
    // Every admitted call was counted before it was admitted.
    expect(store.countOf('k')).toBeGreaterThanOrEqual(10_000);
  });

  it('near the limit, leases shrink to one call, so the last calls are decided by the store one by one', async () => {
    const clock = { now: 1_000_000 };
    const store = sharedCounter(clock);
    const leases = leasesOn(store.consume, clock);
    await takeMany(leases, 'k', 100, 100);
    const lastLeases = store.calls.slice(-4).map((call) => call.points);
    expect(lastLeases).toEqual([1, 1, 1, 1]);
    // Small limits are exact from the first call (no lease is bigger than 5% of the limit).
    const small = sharedCounter(clock);
    await takeMany(leasesOn(small.consume, clock), 'k', 10, 10);
    expect(small.calls.every((call) => call.points === 1)).toBe(true);
  });

  it('shares one store request between callers that arrive while it is in flight', async () => {
    const clock = { now: 1_000_000 };
    const store = sharedCounter(clock);
    const leases = leasesOn(store.consume, clock);
    await takeMany(leases, 'k', 40, 1_000_000); // grow the lease past one call
    const callsBefore = store.calls.length;
    const crowd = await Promise.all(Array.from({ length: 50 }, () => leases.take('k', 1_000_000, 60)));
    expect(admitted(crowd)).toBe(50);
    expect(store.calls.length - callsBefore).toBeLessThanOrEqual(3);
  });

  it('starts afresh when the window ends: unused tokens of the old window are not carried over', async () => {
    const clock = { now: 1_000_000 };
    const store = sharedCounter(clock);
    const leases = leasesOn(store.consume, clock);
    const first = await takeMany(leases, 'k', 20, 20, 1);
    expect(admitted(first)).toBe(20);
    expect((await leases.take('k', 20, 1)).ok).toBe(false);
    clock.now += 1_001;
    const second = await takeMany(leases, 'k', 25, 20, 1);
    expect(admitted(second)).toBe(20);
    expect(store.countOf('k')).toBeLessThanOrEqual(25);
  });

  it('rejects when the store cannot be asked (the caller applies the tenant fail mode), then recovers', async () => {
    const clock = { now: 1_000_000 };
    const store = sharedCounter(clock);
    const leases = leasesOn(store.consume, clock);
    store.fail(true);
    const crowd = Array.from({ length: 5 }, () => Promise.resolve(leases.take('k', 100, 60)));
    const settled = await Promise.allSettled(crowd);
    expect(settled.every((outcome) => outcome.status === 'rejected')).toBe(true);
    store.fail(false);
    expect(await leases.take('k', 100, 60)).toEqual({ ok: true });
  });

  it('forgets keys whose window ended', async () => {
    vi.useFakeTimers();
    const clock = { now: 1_000_000 };
    const store = sharedCounter(clock);
    const leases = leasesOn(store.consume, clock);
    const pending = leases.take('a', 10, 1);
    await vi.advanceTimersByTimeAsync(0);
    expect(await pending).toEqual({ ok: true });
    expect(leases.size).toBe(1);
    clock.now += 2_000;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(leases.size).toBe(0);
  });

  it('holds at most maxKeys keys (an agent naming a new tool per call), and stays exact for the keys it dropped', async () => {
    const clock = { now: 1_000_000 };
    const store = sharedCounter(clock);
    const leases = new QuotaLeases(store.consume, { maxLease: 1_000, maxShare: 0.05, targetLeaseMs: 100, maxKeys: 64 }, () => clock.now);
    opened.push(leases);
    // Spent in the store, then pushed out of the table by a thousand other keys.
    expect(admitted(await takeMany(leases, 'spent', 5, 3))).toBe(3);
    for (let i = 0; i < 1_000; i++) await leases.take(`random-${i}`, 100, 3_600);
    expect(leases.size).toBeLessThanOrEqual(64);
    // Dropped, its window is learned again from the store: still spent.
    expect(await leases.take('spent', 3, 60)).toMatchObject({ ok: false });
  });

  // Before, keys went in the order they were first made: a busy key made first lost the calls already counted for it.
  it('drops the keys least recently renewed, not a busy one made first', async () => {
    const clock = { now: 1_000_000 };
    const store = sharedCounter(clock);
    const leases = new QuotaLeases(store.consume, { maxLease: 1_000, maxShare: 1, targetLeaseMs: 100, maxKeys: 4 }, () => clock.now);
    opened.push(leases);
    await takeMany(leases, 'hot', 2, 1_000); // a lease of 1, then of 2: one call to spare
    for (const idle of ['a', 'b', 'c']) await leases.take(idle, 1_000, 60);
    await takeMany(leases, 'hot', 2, 1_000); // the spare call, then a lease of 4: three to spare
    await leases.take('d', 1_000, 60); // a fifth key: one goes
    const asked = store.calls.length;
    expect(await leases.take('hot', 1_000, 60)).toEqual({ ok: true });
    // Still held: answered from its lease, the store not asked; the least recently renewed key went instead.
    expect(store.calls.length).toBe(asked);
    expect(leases.size).toBeLessThanOrEqual(4);
  });

  it('a changed limit applies at once: raised, a spent window no longer refuses; lowered, old leftovers do not count', async () => {
    const clock = { now: 1_000_000 };
    const store = sharedCounter(clock);
    const leases = leasesOn(store.consume, clock);
    expect(admitted(await takeMany(leases, 'k', 12, 10, 3_600))).toBe(10);
    expect(await leases.take('k', 1_000, 3_600)).toEqual({ ok: true });
    // Lowered: a replica holding a big lease of the old limit admits only what the new limit allows.
    const lowered = leasesOn(store.consume, clock);
    await takeMany(lowered, 'big', 200, 20_000, 3_600); // leases grow to hundreds of calls
    expect(admitted(await takeMany(lowered, 'big', 50, 5, 3_600))).toBe(5);
  });

  it('a caller whose own request was granted a call is admitted, even if another caller emptied the lease meanwhile', async () => {
    // The other caller arrives a few microtask hops after the store's answer, wherever that lands.
    for (let hops = 0; hops <= 4; hops++) {
      let answer: ((count: { consumed: number; msBeforeNext: number }) => void) | undefined;
      const leases = leasesOn(() => new Promise((resolve) => (answer = resolve)), { now: 1_000_000 });
      const renewer = leases.take('k', 8, 3_600);
      await new Promise((resolve) => setImmediate(resolve));
      answer?.({ consumed: 1, msBeforeNext: 3_600_000 });
      let hop = Promise.resolve();
      for (let i = 0; i < hops; i++) hop = hop.then(() => undefined);
      const thief = hop.then(() => leases.take('k', 8, 3_600));
      expect(await renewer).toEqual({ ok: true });
      // The thief is not refused either (the window has room): it needs a request of its own.
      expect(await Promise.race([thief, new Promise((resolve) => setTimeout(() => resolve('waiting'), 20))])).not.toMatchObject({ ok: false });
    }
  });

  it('when the store cannot be asked, a crowd fails together after one round trip, not one after another', async () => {
    const clock = { now: 1_000_000 };
    let asked = 0;
    const failing: ConsumeFn = async () => {
      asked++;
      await new Promise((resolve) => setTimeout(resolve, 40));
      throw new Error('store unreachable');
    };
    const leases = leasesOn(failing, clock);
    const started = Date.now();
    const crowd = await Promise.allSettled(Array.from({ length: 20 }, () => Promise.resolve(leases.take('k', 100, 60))));
    expect(crowd.every((outcome) => outcome.status === 'rejected')).toBe(true);
    expect(Date.now() - started).toBeLessThan(400); // 20 × 40 ms one after another would be 800 ms
    expect(asked).toBeLessThanOrEqual(20);
  });

  it('near the limit, one-call requests of concurrent callers go to the store in parallel', async () => {
    const clock = { now: 1_000_000 };
    let inFlight = 0;
    let most = 0;
    const store = sharedCounter(clock);
    const tracked: ConsumeFn = async (...args) => {
      inFlight++;
      most = Math.max(most, inFlight);
      try {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return await store.consume(...args);
      } finally {
        inFlight--;
      }
    };
    const leases = leasesOn(tracked, clock);
    const results = await Promise.all(Array.from({ length: 10 }, () => Promise.resolve(leases.take('k', 10, 60))));
    expect(admitted(results)).toBe(10);
    expect(most).toBeGreaterThan(1);
  });

  it('ends a lease no later than the store’s window, however long the store took to answer', async () => {
    const clock = { now: 0 };
    let delay = 500;
    let consumed = 0;
    let asked = 0;
    // One window, [0, 1000) on the store's clock; the first answer takes 500 ms to arrive.
    const consume: ConsumeFn = async (_key, points) => {
      asked += 1;
      const ranAt = clock.now;
      clock.now += delay;
      consumed += points;
      return { consumed, msBeforeNext: Math.max(0, 1_000 - ranAt) };
    };
    const leases = new QuotaLeases(consume, { maxLease: 50, maxShare: 1, targetLeaseMs: 100 }, () => clock.now);
    try {
      expect((await leases.take('k', 1_000, 1)).ok).toBe(true);
      delay = 0;
      // A burst: the replica takes a lease of several calls at once.
      for (let i = 0; i < 20; i++) expect((await leases.take('k', 1_000, 1)).ok).toBe(true);
      const askedInBurst = asked;
      expect(askedInBurst).toBeLessThan(21);
      // At 1,200 the store's window is over: the lease's leftover tokens are not spent, the store is asked (counted
      // from the slow answer, they would have lasted until 1,500).
      clock.now = 1_200;
      await leases.take('k', 1_000, 1);
      expect(asked).toBe(askedInBurst + 1);
    } finally {
      leases.close();
    }
  });
});
