import { Redis } from 'ioredis';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { waitFor } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { counterKey, TENANT_LIMIT_RULE } from './keys';
import { createRateLimitRedis } from './rate-limit-hooks';
import { RateLimitService, type AppliedLimit } from './rate-limiter';

const redis = new Redis(inject('redisUrl'), { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
beforeAll(async () => {
  await redis.ping();
});
afterAll(() => {
  redis.disconnect();
});

const prefix = () => `test-rl-phases-${randomBytes(4).toString('hex')}`;
const service = (client: Redis = redis) => new RateLimitService({ redis: client, keyPrefix: prefix(), redisTimeoutMs: 500, concurrencyLeaseMs: 30_000 });
/** As the gateway's hooks build it: a user's call has no agent client (and an agent client's call no user). */
const userCall = (userId: string) => ({ tenantId: 't1', userId, agentClientId: null, tool: 'tickets__create_ticket' });
const tenantWide: AppliedLimit = { ruleId: TENANT_LIMIT_RULE, rateLimit: { scope: ['tenant'], requests: 10, windowSeconds: 60 } };

/** Redis behind a proxy that can drop every connection and refuse new ones (a network blip), or hold back its replies. */
async function blinkingRedis() {
  const target = new URL(inject('redisUrl'));
  const state = { refusing: false, holdReplies: false };
  const sockets = new Set<Socket>();
  const proxy = createServer((inbound) => {
    if (state.refusing) return void inbound.destroy();
    const outbound = connect(Number(target.port || 6379), target.hostname);
    sockets.add(inbound).add(outbound);
    inbound.on('error', () => undefined);
    outbound.on('error', () => undefined);
    inbound.pipe(outbound);
    outbound.on('data', (chunk) => {
      if (!state.holdReplies) inbound.write(chunk);
    });
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const client = createRateLimitRedis(`redis://127.0.0.1:${(proxy.address() as AddressInfo).port}`, 'rl-blink');
  const ready = () => new Promise<void>((resolve) => (client.status === 'ready' ? resolve() : client.once('ready', () => resolve())));
  const cut = async () => {
    state.refusing = true;
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(client.status).not.toBe('ready');
  };
  const restore = async () => {
    state.refusing = false;
    state.holdReplies = false;
    await ready();
  };
  const close = () => {
    client.disconnect();
    proxy.close();
  };
  await ready();
  return { client, state, cut, restore, close };
}

/**
 * Waits until each user's next call under `limit` is admitted (their slot given back after Redis came back), for at most
 * 5 s — a fraction of the minute-long leases these specs take; fails naming how many are still held (and `detail()`).
 */
async function slotsGivenBack(limits: RateLimitService, users: string[], limit: AppliedLimit, detail?: () => Promise<string>) {
  const stillHeld = new Set(users);
  await waitFor(
    async () => {
      for (const user of [...stillHeld]) {
        const next = await limits.check(userCall(user), [limit], 'closed');
        if (!next.allowed) continue;
        next.release();
        stillHeld.delete(user);
      }
      return stillHeld.size === 0;
    },
    { timeoutMs: 5_000, intervalMs: 200, description: 'the slots given back' },
  ).catch(async (error: unknown) => {
    const more = detail ? ` (${await detail()})` : '';
    throw new Error(`${stillHeld.size} of ${users.length} slots still held after Redis came back${more}: ${String(error)}`);
  });
}

/**
 * Which limits a call refused by another one still counts against, and how slots come back after Redis blinks (found by
 * reviews, 2026-12-07; ADR 0011's amendments).
 */
/** A proxy in front of a Redis on 127.0.0.1:`port` that holds each reply back `delayMs()` (0: none), in order. */
async function delayingProxy(port: number, delayMs: () => number): Promise<{ url: string; close: () => void }> {
  const proxy = createServer((inbound) => {
    const outbound = connect(port, '127.0.0.1');
    inbound.on('error', () => undefined);
    outbound.on('error', () => undefined);
    inbound.pipe(outbound);
    let last = 0;
    outbound.on('data', (chunk) => {
      const at = Math.max(Date.now() + delayMs(), last);
      last = at;
      if (at <= Date.now()) inbound.write(chunk);
      else setTimeout(() => inbound.write(chunk), at - Date.now());
    });
    inbound.on('close', () => outbound.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return { url: `redis://127.0.0.1:${(proxy.address() as AddressInfo).port}`, close: () => proxy.close() };
}

describe("RateLimitService: the caller's own limits judged first", () => {
  it("does not count a call a user's own rate refuses against the limit the tenant's principals share", async () => {
    const limits = service();
    const perUser: AppliedLimit = { ruleId: 'r-user', rateLimit: { scope: ['user'], requests: 2, windowSeconds: 60 } };
    // Alice retries past her own limit: 2 calls admitted, 10 refused (none of them ran).
    const alice = [];
    for (let i = 0; i < 12; i++) alice.push(await limits.check(userCall('alice'), [tenantWide, perUser], 'closed'));
    expect(alice.filter((outcome) => outcome.allowed)).toHaveLength(2);
    expect(alice[2]).toMatchObject({ allowed: false, reason: 'rate', ruleId: 'r-user' });
    // Only 2 calls ran in the tenant: Bob's are admitted, up to the tenant's 10.
    const bob = [];
    for (let i = 0; i < 9; i++) bob.push(await limits.check(userCall('bob'), [tenantWide], 'closed'));
    expect(bob.map((outcome) => outcome.allowed)).toEqual([true, true, true, true, true, true, true, true, false]);
    expect(bob[8]).toMatchObject({ ruleId: TENANT_LIMIT_RULE });
    limits.close();
  });

  it("does not count a call the user's own concurrency bound refuses against the tenant's shared rate", async () => {
    const limits = service();
    const oneAtATimePerUser: AppliedLimit = { ruleId: 'r-user-cc', rateLimit: { scope: ['user'], maxConcurrent: 1 } };
    const alice = userCall('alice');
    const running = await limits.check(alice, [tenantWide, oneAtATimePerUser], 'closed');
    expect(running).toMatchObject({ allowed: true, holdsSlots: true });
    // Alice retries while her one call runs: each refused by her own bound (nothing of them ran).
    for (let i = 0; i < 9; i++) expect(await limits.check(alice, [tenantWide, oneAtATimePerUser], 'closed')).toMatchObject({ allowed: false, reason: 'concurrency', ruleId: 'r-user-cc' });
    // One call ran in the tenant: Bob's first call is within the tenant's 10.
    const bob = await limits.check(userCall('bob'), [tenantWide, oneAtATimePerUser], 'closed');
    expect(bob.allowed ? 'admitted' : `refused: ${bob.reason} ${JSON.stringify(bob.ruleId)}`).toBe('admitted');
    if (running.allowed) running.release();
    if (bob.allowed) bob.release();
    limits.close();
  });

  it("does not count a call the user's own rate refuses against an agent-client limit every user's call shares", async () => {
    const limits = service();
    // Scoped per agent client: a user's call has none, so every user's calls share its one counter (`a=-`).
    const perAgentClient: AppliedLimit = { ruleId: 'r-agent', rateLimit: { scope: ['agent_client'], requests: 10, windowSeconds: 60 } };
    const perUser: AppliedLimit = { ruleId: 'r-user', rateLimit: { scope: ['user'], requests: 2, windowSeconds: 60 } };
    const roomy: AppliedLimit = { ...tenantWide, rateLimit: { ...tenantWide.rateLimit, requests: 1_000 } };
    const all = [roomy, perAgentClient, perUser];
    const alice = [];
    for (let i = 0; i < 12; i++) alice.push(await limits.check(userCall('alice'), all, 'closed'));
    expect(alice.filter((outcome) => outcome.allowed)).toHaveLength(2);
    expect(alice[2]).toMatchObject({ allowed: false, ruleId: 'r-user' });
    // Two calls ran: Bob's first is within the shared 10.
    const bob = await limits.check(userCall('bob'), all, 'closed');
    expect(bob.allowed ? 'admitted' : `refused: ${bob.reason} ${JSON.stringify(bob.ruleId)}`).toBe('admitted');
    limits.close();
  });

  it.each([
    ['closed', { allowed: false, reason: 'unavailable' }],
    ['open', { allowed: true, degraded: true }],
  ] as const)('decides fail-%s within one Redis timeout when the per-principal phase cannot reach Redis, not two', async (failMode, expected) => {
    // Redis behind a proxy that holds every reply back 1.5 s.
    const proxy = await delayingProxy(Number(new URL(inject('redisUrl')).port || 6379), () => 1_500);
    const slow = createRateLimitRedis(proxy.url, 'rl-slow');
    try {
      await new Promise<void>((resolve) => slow.once('ready', () => resolve()));
      const limits = new RateLimitService({ redis: slow, keyPrefix: prefix(), redisTimeoutMs: 400, concurrencyLeaseMs: 30_000 });
      const perUser: AppliedLimit = { ruleId: 'r-user', rateLimit: { scope: ['user'], requests: 5, windowSeconds: 60 } };
      const started = Date.now();
      const outcome = await limits.check(userCall('alice'), [tenantWide, perUser], failMode);
      const took = Date.now() - started;
      expect(outcome).toMatchObject(expected);
      // GATEWAY_RATE_LIMIT_TIMEOUT_MS bounds a check (400 ms here); it took two of them back to back.
      expect(took).toBeLessThan(700);
      limits.close();
    } finally {
      slow.disconnect();
      proxy.close();
    }
  });
});

describe('RateLimitService: fail-open with Redis away', () => {
  it('still refuses a call over a shared limit this replica knows is spent, without asking Redis (found by re-review)', async () => {
    const blink = await blinkingRedis();
    const limits = service(blink.client);
    const tenantOfTwo: AppliedLimit = { ruleId: TENANT_LIMIT_RULE, rateLimit: { scope: ['tenant'], requests: 2, windowSeconds: 60 } };
    const perUser: AppliedLimit = { ruleId: 'r-user', rateLimit: { scope: ['user'], requests: 5, windowSeconds: 60 } };
    try {
      expect(await limits.check(userCall('bob'), [tenantOfTwo, perUser], 'open')).toMatchObject({ allowed: true, degraded: false });
      expect(await limits.check(userCall('bob'), [tenantOfTwo, perUser], 'open')).toMatchObject({ allowed: true, degraded: false });
      // The tenant's window is spent, and this replica knows it.
      expect(await limits.check(userCall('bob'), [tenantOfTwo, perUser], 'open')).toMatchObject({ allowed: false, reason: 'rate', ruleId: TENANT_LIMIT_RULE });
      await blink.cut();
      // Alice's own counter needs Redis, which is away: fail-open lets that limit go, not the tenant's spent window.
      const started = Date.now();
      expect(await limits.check(userCall('alice'), [tenantOfTwo, perUser], 'open')).toMatchObject({ allowed: false, reason: 'rate', ruleId: TENANT_LIMIT_RULE });
      expect(Date.now() - started).toBeLessThan(400);
      // A limit this replica knows nothing of is let go: admitted as degraded.
      const fresh: AppliedLimit = { ruleId: TENANT_LIMIT_RULE, rateLimit: { scope: ['tenant'], requests: 50, windowSeconds: 60 } };
      expect(await limits.check(userCall('carol'), [fresh, perUser], 'open')).toMatchObject({ allowed: true, degraded: true });
    } finally {
      limits.close();
      blink.close();
    }
  });
});

describe('RateLimitService: slot releases retried', () => {
  it('gives back a slot released while Redis blinks once it is reachable again, not after the whole lease', async () => {
    const blink = await blinkingRedis();
    try {
      // A minute's lease is enough to tell (15 minutes and the call timeout in production).
      const limits = new RateLimitService({ redis: blink.client, keyPrefix: prefix(), redisTimeoutMs: 500, concurrencyLeaseMs: 60_000 });
      const oneAtATime: AppliedLimit = { ruleId: 'one-at-a-time', rateLimit: { scope: ['user'], maxConcurrent: 1 } };
      const call = await limits.check(userCall('alice'), [oneAtATime], 'closed');
      expect(call).toMatchObject({ allowed: true, holdsSlots: true });
      // The call ends during a one-second blip.
      await blink.cut();
      if (call.allowed) call.release();
      await new Promise((resolve) => setTimeout(resolve, 900));
      await blink.restore();
      // Nothing in flight: the next call is admitted within a few seconds.
      await slotsGivenBack(limits, ['alice'], oneAtATime);
      limits.close();
    } finally {
      blink.close();
    }
  });

  it("retries a held slot's failed release even after calls whose acquire never reached Redis failed during the outage", async () => {
    const blink = await blinkingRedis();
    try {
      const limits = new RateLimitService({ redis: blink.client, keyPrefix: prefix(), redisTimeoutMs: 500, concurrencyLeaseMs: 60_000 });
      // Another tenant's calls, bounded in flight: none of them takes a slot while Redis is away.
      const othersBound: AppliedLimit = { ruleId: 'r-cc', rateLimit: { scope: ['tenant'], maxConcurrent: 50 } };
      const oneAtATime: AppliedLimit = { ruleId: 'one-at-a-time', rateLimit: { scope: ['user'], maxConcurrent: 1 } };
      // Twenty users' calls, each running alone under its user's bound of one.
      const users = Array.from({ length: 20 }, (_, i) => `u${i}`);
      const calls = [];
      for (const user of users) calls.push(await limits.check(userCall(user), [oneAtATime], 'closed'));
      expect(calls.every((call) => call.allowed && call.holdsSlots)).toBe(true);
      await blink.cut();
      // Calls arriving during the outage (about 80 a second over two minutes in production): refused, no slot taken.
      const other = { tenantId: 't2', userId: 'x', agentClientId: null, tool: null };
      const refuse = async () => expect((await limits.check(other, [othersBound], 'closed')).allowed).toBe(false);
      for (let i = 0; i < 10_000; i++) await refuse();
      // The held calls end during the outage, while others keep arriving.
      for (const call of calls) {
        if (call.allowed) call.release();
        for (let i = 0; i < 20; i++) await refuse();
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
      await blink.restore();
      // Nothing in flight: each user's next call is admitted within a few seconds, not after the 60 s lease.
      await slotsGivenBack(limits, users, oneAtATime);
      limits.close();
    } finally {
      blink.close();
    }
  }, 30_000);
});

describe('RateLimitService: acquires that fail', () => {
  it('leaves no failed acquire unhandled while a rate check still waits (the gateway ends its process on one; found by re-review)', async () => {
    const seen: unknown[] = [];
    const record = (reason: unknown) => void seen.push(reason);
    process.on('unhandledRejection', record);
    // Redis behind a proxy that can hold back what the gateway sends (a stall on the way to Redis).
    const target = new URL(inject('redisUrl'));
    const state = { holdRequests: false, passOne: false };
    const proxy = createServer((inbound) => {
      const outbound = connect(Number(target.port || 6379), target.hostname);
      inbound.on('error', () => undefined);
      outbound.on('error', () => undefined);
      inbound.on('data', (chunk) => {
        if (state.holdRequests) return;
        if (state.passOne) state.holdRequests = true;
        outbound.write(chunk);
      });
      outbound.pipe(inbound);
      inbound.on('close', () => outbound.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const client = createRateLimitRedis(`redis://127.0.0.1:${(proxy.address() as AddressInfo).port}`, 'rl-unhandled');
    try {
      await new Promise<void>((resolve) => client.once('ready', () => resolve()));
      // Leases double while used up within a minute: the second request for the key is a block of two.
      const limits = new RateLimitService({
        redis: client,
        keyPrefix: prefix(),
        redisTimeoutMs: 300,
        concurrencyLeaseMs: 30_000,
        leases: { maxLease: 1_000, maxShare: 1, targetLeaseMs: 60_000 },
      });
      const subject = { tenantId: 't1', userId: 'alice', agentClientId: null, tool: null };
      const rate: AppliedLimit = { ruleId: 'r-rate', rateLimit: { scope: ['tenant'], requests: 1_000, windowSeconds: 60 } };
      const inFlight: AppliedLimit = { ruleId: 'r-cc', rateLimit: { scope: ['tenant'], maxConcurrent: 5 } };
      expect((await limits.check(subject, [rate], 'open')).allowed).toBe(true);
      // A asks Redis for a block of two; once it is on its way, nothing more reaches Redis.
      state.passOne = true;
      const a = limits.check(subject, [rate], 'open');
      await new Promise((resolve) => setImmediate(resolve));
      // B and C wait for A's block; C's acquire is sent (and held). A's block covers A and B: C asks again.
      const b = limits.check(subject, [rate], 'open');
      const c = limits.check(subject, [rate, inFlight], 'open');
      await Promise.all([a, b, c]);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(seen.map(String)).toEqual([]);
      limits.close();
    } finally {
      process.off('unhandledRejection', record);
      client.disconnect();
      proxy.close();
    }
  });

  it('gives back the slot Redis took for an acquire whose answer was lost with the connection (found by re-review)', async () => {
    const flaky = await blinkingRedis();
    const keyPrefix = prefix();
    try {
      // The timeout is long: the connection drops first, so the acquire fails with a connection error, not a timeout.
      const limits = new RateLimitService({ redis: flaky.client, keyPrefix, redisTimeoutMs: 3_000, concurrencyLeaseMs: 60_000 });
      const oneAtATime: AppliedLimit = { ruleId: 'one-at-a-time', rateLimit: { scope: ['user'], maxConcurrent: 1 } };
      const setKey = `${keyPrefix}:cc:${counterKey(userCall('alice'), oneAtATime.ruleId, oneAtATime.rateLimit.scope)}`;
      flaky.state.holdReplies = true;
      const pending = limits.check(userCall('alice'), [oneAtATime], 'closed');
      // Redis ran the acquire (the slot is in the set); its answer is on its way back when the connection drops.
      await waitFor(async () => (await redis.zcard(setKey)) === 1, { timeoutMs: 2_000, intervalMs: 20, description: 'the acquire run by Redis' });
      await flaky.cut();
      const outcome = await pending;
      expect(outcome).toMatchObject({ allowed: false, reason: 'unavailable' });
      await new Promise((resolve) => setTimeout(resolve, 300));
      await flaky.restore();
      // No call of Alice's runs: her next call is admitted within a few seconds, not after the 60 s lease.
      await slotsGivenBack(limits, ['alice'], oneAtATime, async () => `${await redis.zcard(setKey)} held by the lost acquire`);
      limits.close();
    } finally {
      flaky.close();
    }
  }, 20_000);
});

describe('RateLimitService: acquires given up on, against a Redis of its own (its script cache is flushed)', () => {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  let server: ChildProcess;
  let direct: Redis;
  beforeAll(async () => {
    server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    direct = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    direct.on('error', () => undefined);
    await waitFor(async () => (await direct.ping().catch(() => '')) === 'PONG', { timeoutMs: 5_000, intervalMs: 50, description: 'redis-server up' });
  });
  afterAll(() => {
    direct.disconnect();
    server.kill();
  });

  it('gives back the slot when Redis runs a given-up acquire after a release would have (script re-sent after NOSCRIPT; found by re-review)', async () => {
    // Replies held back 1 s while `slow` (a slow network path back); requests go straight through.
    const state = { slow: false };
    const proxy = await delayingProxy(port, () => (state.slow ? 1_000 : 0));
    const client = createRateLimitRedis(proxy.url, 'rl-late');
    try {
      await new Promise<void>((resolve) => client.once('ready', () => resolve()));
      const limits = new RateLimitService({ redis: client, keyPrefix: prefix(), redisTimeoutMs: 300, concurrencyLeaseMs: 60_000 });
      const oneAtATime: AppliedLimit = { ruleId: 'one-at-a-time', rateLimit: { scope: ['user'], maxConcurrent: 1 } };
      // The connection has run the acquire script before (ioredis sends EVALSHA from now on).
      const warm = await limits.check(userCall('warm'), [oneAtATime], 'closed');
      expect(warm.allowed).toBe(true);
      if (warm.allowed) warm.release();
      // Redis's script cache is emptied (SCRIPT FLUSH; a failover behind a proxy does the same).
      await direct.script('FLUSH');
      state.slow = true;
      const outcome = await limits.check(userCall('alice'), [oneAtATime], 'closed');
      expect(outcome).toMatchObject({ allowed: false, reason: 'unavailable' });
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      state.slow = false;
      // Alice has nothing in flight: her next call is admitted within a few seconds, not after the 60 s lease.
      await waitFor(
        async () => {
          const next = await limits.check(userCall('alice'), [oneAtATime], 'closed');
          if (next.allowed) next.release();
          return next.allowed;
        },
        { timeoutMs: 5_000, intervalMs: 200, description: 'the slot given back' },
      ).catch(async (error: unknown) => {
        const keys = await direct.keys('*:cc:*alice*');
        throw new Error(`Alice refused with nothing in flight; ${keys.length} slot set(s) ${keys.join()} holding ${keys.length ? await direct.zcard(keys[0] as string) : 0}: ${String(error)}`);
      });
      limits.close();
    } finally {
      client.disconnect();
      proxy.close();
    }
  }, 20_000);
});
