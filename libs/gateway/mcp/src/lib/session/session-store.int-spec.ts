import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { isWellFormedSessionId, newSessionId, sessionBelongsTo, withLogLevel, withSubscription, type SessionRecord } from './session';
import { RedisSessionStore } from './session-store';

const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.quit());

function record(overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    id: newSessionId(),
    tenantId: 'tenant-a',
    principalKind: 'agent_client',
    principalId: 'agent-1',
    protocolVersion: '2025-11-25',
    clientInfo: { name: 'spec', version: '1' },
    clientCapabilities: {},
    upstreams: {},
    createdAt: Date.now(),
    ...overrides,
  };
}

/**
 * The client, except that the first read of session `id`'s record is followed at once by its deletion: another replica
 * ending the session just after this one read it.
 */
function deletingAfterFirstRead(client: Redis, id: string): Redis {
  let deleted = false;
  return new Proxy(client, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property);
      if (typeof value !== 'function') return value;
      if (property !== 'get' && property !== 'getex') return value.bind(target);
      return async (...args: unknown[]) => {
        const raw: unknown = await value.apply(target, args);
        if (!deleted && args[0] === `pcs:session:${id}`) {
          deleted = true;
          await target.del(`pcs:session:${id}`);
        }
        return raw;
      };
    },
  });
}

describe('RedisSessionStore (real Redis)', () => {
  it('issues unguessable, well-formed ids', () => {
    const ids = new Set(Array.from({ length: 1000 }, newSessionId));
    expect(ids.size).toBe(1000);
    expect([...ids].every(isWellFormedSessionId)).toBe(true);
  });

  it('shares a session between two replicas and ends it for both', async () => {
    const options = { idleTtlMs: 60_000, cacheMs: 50, touchEveryMs: 10, maxCached: 100 };
    const replicaA = new RedisSessionStore(redis, options);
    const replicaB = new RedisSessionStore(redis, options);
    const session = record();
    await replicaA.create(session);
    expect(await replicaB.get(session.id)).toEqual(session);
    await replicaB.update({ ...session, upstreams: { up1: { sessionId: 'u-1', protocolVersion: '2025-06-18' } } });
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect((await replicaA.get(session.id))?.upstreams).toEqual({ up1: { sessionId: 'u-1', protocolVersion: '2025-06-18' } });
    // The record as it was removed: newer than replica A's copy.
    expect((await replicaA.delete(session.id))?.upstreams).toEqual({ up1: { sessionId: 'u-1', protocolVersion: '2025-06-18' } });
    expect(await replicaA.delete(session.id)).toBeUndefined();
    replicaB.forget(session.id);
    expect(await replicaB.get(session.id)).toBeUndefined();
  });

  it('counts the sessions a principal holds across replicas: deleted ones leave at once (from any replica), expired ones once their TTL passed', async () => {
    const options = { idleTtlMs: 2_000, cacheMs: 10_000, touchEveryMs: 100, maxCached: 100 };
    const replicaA = new RedisSessionStore(redis, options);
    const replicaB = new RedisSessionStore(redis, options);
    const replicaC0 = new RedisSessionStore(redis, options);
    const owner = { tenantId: 'tenant-count', principalKind: 'agent_client' as const, principalId: `agent-${newSessionId().slice(0, 8)}` };
    const sessions = [record(owner), record(owner), record(owner), record(owner)];
    await replicaA.create(sessions[0] as SessionRecord);
    await replicaB.create(sessions[1] as SessionRecord);
    await replicaB.create(sessions[2] as SessionRecord);
    await replicaA.create(sessions[3] as SessionRecord);
    // Another principal's session, and the same principal id in another tenant, are not counted.
    await replicaA.create(record({ ...owner, principalKind: 'user' }));
    await replicaA.create(record({ ...owner, tenantId: 'tenant-other' }));
    expect(await replicaA.heldBy(owner)).toBe(4);
    // Every principal holding sessions is found (what a starting replica looks at), a principal id with a colon whole.
    await replicaA.create(record({ ...owner, principalId: `${owner.principalId}:with-colon` }));
    const owners = await replicaC0.owners();
    for (const one of [owner, { ...owner, principalKind: 'user' }, { ...owner, tenantId: 'tenant-other' }, { ...owner, principalId: `${owner.principalId}:with-colon` }]) {
      expect(owners).toContainEqual(one);
    }
    // The same id again is refused, and not counted twice.
    await expect(replicaB.create(sessions[0] as SessionRecord)).rejects.toThrow('exists already');
    expect(await replicaA.heldBy(owner)).toBe(4);
    expect(await replicaB.delete(sessions[1]?.id ?? '')).toMatchObject({ id: sessions[1]?.id });
    // A replica that never held the record deletes it from the count too.
    const replicaC = new RedisSessionStore(redis, options);
    expect(await replicaC.delete(sessions[3]?.id ?? '')).toMatchObject({ id: sessions[3]?.id });
    expect(await replicaA.heldBy(owner)).toBe(2);
    // One kept in use (looked up past the touch interval) outlives the idle TTL, even after its entry was lost from the
    // count (the touch adds it back); the other expires.
    await redis.zrem(`pcs:sessions-of:${owner.tenantId}:${owner.principalKind}:${owner.principalId}`, sessions[0]?.id ?? '');
    const started = Date.now();
    while (Date.now() - started < 2_800) {
      await new Promise((resolve) => setTimeout(resolve, 150));
      await replicaA.get(sessions[0]?.id ?? '');
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await replicaB.heldBy(owner)).toBe(1);
    expect(await redis.exists(`pcs:session:${sessions[2]?.id}`)).toBe(0);
  });

  it('gives back the place of a deleted record Redis cannot decode (an upstream\'s capabilities nested past its 1,000 levels)', async () => {
    const store = new RedisSessionStore(redis, { idleTtlMs: 60_000, cacheMs: 50, touchEveryMs: 10, maxCached: 100 });
    const owner = { tenantId: 'tenant-deep', principalKind: 'agent_client' as const, principalId: `agent-${newSessionId().slice(0, 8)}` };
    let capabilities: Record<string, unknown> = {};
    for (let level = 0; level < 1_100; level++) capabilities = { x: capabilities };
    const deep = record({ ...owner, upstreams: { u1: { sessionId: 'upstream-session', protocolVersion: '2025-11-25', capabilities } } });
    await store.create(deep);
    expect(await store.heldBy(owner)).toBe(1);
    expect(await store.delete(deep.id)).toMatchObject({ id: deep.id });
    expect(await store.heldBy(owner)).toBe(0);
  });

  it('takes at most the principal\'s places for sessions being created, atomically across replicas, and gives one back', async () => {
    const options = { idleTtlMs: 60_000, cacheMs: 10_000, touchEveryMs: 10_000, maxCached: 100 };
    const replicas = [new RedisSessionStore(redis, options), new RedisSessionStore(redis, options)];
    const owner = { tenantId: 'tenant-reserve', principalKind: 'agent_client' as const, principalId: `agent-${newSessionId().slice(0, 8)}` };
    const held = record(owner);
    await replicas[0]?.create(held);
    const ids = Array.from({ length: 8 }, () => newSessionId());
    const taken = await Promise.all(ids.map((id, index) => replicas[index % 2]?.reserve(owner, id, 3, 5_000)));
    expect(taken.filter(Boolean)).toHaveLength(2);
    // A place given back (its initialize failed) is free again; creating a reserved session keeps its place.
    const first = ids[taken.indexOf(true)] ?? '';
    await replicas[1]?.release(owner, first);
    expect(await replicas[0]?.reserve(owner, newSessionId(), 3, 5_000)).toBe(true);
    expect(await replicas[0]?.heldBy(owner)).toBe(3);
    // A place held for a session that was never created lapses after its hold.
    expect(await replicas[0]?.reserve(owner, newSessionId(), 4, 100)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(await replicas[0]?.heldBy(owner)).toBe(3);
  });

  it('counts by Redis\'s clock, not a replica\'s: a replica whose clock runs an hour ahead or behind counts the same', async () => {
    const options = { idleTtlMs: 60_000, cacheMs: 10_000, touchEveryMs: 10_000, maxCached: 100 };
    const replica = new RedisSessionStore(redis, options);
    const owner = { tenantId: 'tenant-clock', principalKind: 'agent_client' as const, principalId: `agent-${newSessionId().slice(0, 8)}` };
    await replica.create(record(owner));
    await replica.create(record(owner));
    const realNow = Date.now.bind(Date);
    try {
      // Ahead: with its own clock it took both live sessions for expired, dropped them, and let two more in.
      Date.now = () => realNow() + 3_600_000;
      expect(await replica.heldBy(owner)).toBe(2);
      expect(await replica.reserve(owner, newSessionId(), 2, 5_000)).toBe(false);
      // Behind: with its own clock it scored a new session as expired an hour ago, and never counted it.
      Date.now = () => realNow() - 3_600_000;
      await replica.create(record(owner));
      Date.now = realNow;
      expect(await replica.heldBy(owner)).toBe(3);
    } finally {
      Date.now = realNow;
    }
  });

  it('keeps a session counted while only changes keep it alive (a change moves its score as a touch does)', async () => {
    const options = { idleTtlMs: 1_500, cacheMs: 10_000, touchEveryMs: 10_000, maxCached: 100 };
    const store = new RedisSessionStore(redis, options);
    const owner = { tenantId: 'tenant-change', principalKind: 'agent_client' as const, principalId: `agent-${newSessionId().slice(0, 8)}` };
    const session = record(owner);
    await store.create(session);
    const started = Date.now();
    while (Date.now() - started < 2_500) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      await store.change(session.id, (stored) => withLogLevel(stored, stored.logLevel === 'debug' ? 'info' : 'debug'));
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await store.heldBy(owner)).toBe(1);
  });

  it('replaces an upstream\'s state by compare-and-set: of two replicas replacing the same forgotten session, one does', async () => {
    const options = { idleTtlMs: 60_000, cacheMs: 10_000, touchEveryMs: 10_000, maxCached: 100 };
    const replicaA = new RedisSessionStore(redis, options);
    const replicaB = new RedisSessionStore(redis, options);
    const session = record({ upstreams: { up1: { sessionId: 'old', protocolVersion: '2025-06-18' }, up2: { sessionId: 'other', protocolVersion: '2025-06-18' } } });
    await replicaA.create(session);
    const [first, second] = await Promise.all([
      replicaA.swapUpstream(session.id, 'up1', 'old', { sessionId: 'from-a', protocolVersion: '2025-06-18' }),
      replicaB.swapUpstream(session.id, 'up1', 'old', { sessionId: 'from-b', protocolVersion: '2025-06-18' }),
    ]);
    expect([first.swapped, second.swapped].sort()).toEqual([false, true]);
    const winner = first.swapped ? 'from-a' : 'from-b';
    // Both learn the stored record (the loser, the winner's session), and the other upstream's state is untouched.
    for (const outcome of [first, second]) {
      expect(outcome.record?.upstreams['up1']?.sessionId).toBe(winner);
      expect(outcome.record?.upstreams['up2']?.sessionId).toBe('other');
    }
    expect(JSON.parse((await redis.get(`pcs:session:${session.id}`)) ?? '{}').upstreams.up1.sessionId).toBe(winner);
    // Gone: nothing stored, nothing brought back.
    await replicaA.delete(session.id);
    expect(await replicaB.swapUpstream(session.id, 'up1', winner, { sessionId: 'late', protocolVersion: '2025-06-18' })).toEqual({ swapped: false, record: undefined });
    expect(await redis.exists(`pcs:session:${session.id}`)).toBe(0);
  });

  it('loses no change when replicas change different parts of one record at once (subscriptions, log level, an upstream session)', async () => {
    const options = { idleTtlMs: 60_000, cacheMs: 10_000, touchEveryMs: 10_000, maxCached: 100 };
    const replicas = [0, 1, 2].map(() => new RedisSessionStore(redis, options));
    const session = record({ upstreams: { up1: { sessionId: 'old', protocolVersion: '2025-06-18' } } });
    await replicas[0]?.create(session);
    const [a, b, c] = replicas as [RedisSessionStore, RedisSessionStore, RedisSessionStore];
    const outcomes = await Promise.all([
      ...Array.from({ length: 4 }, (_, n) => a.change(session.id, (stored) => withSubscription(stored, 'up1', `mem://${n}`, true))),
      b.change(session.id, (stored) => withLogLevel(stored, 'debug')),
      c.swapUpstream(session.id, 'up1', 'old', { sessionId: 'new', protocolVersion: '2025-06-18' }),
    ]);
    expect(outcomes.map((outcome) => ('changed' in outcome ? outcome.changed : outcome.swapped))).toEqual([true, true, true, true, true, true]);
    const stored = JSON.parse((await redis.get(`pcs:session:${session.id}`)) ?? '{}') as SessionRecord;
    expect([...(stored.subscriptions?.['up1'] ?? [])].sort()).toEqual(['mem://0', 'mem://1', 'mem://2', 'mem://3']);
    expect(stored.logLevel).toBe('debug');
    expect(stored.upstreams['up1']?.sessionId).toBe('new');
    // An edit that changes nothing writes nothing; a record that is gone is not brought back.
    expect((await a.change(session.id, (current) => withSubscription(current, 'up1', 'mem://0', true))).changed).toBe(false);
    await a.delete(session.id);
    expect(await b.change(session.id, (current) => withLogLevel(current, 'error'))).toEqual({ changed: false, record: undefined });
    expect(await redis.exists(`pcs:session:${session.id}`)).toBe(0);
  });

  it('loses no change when one replica makes two hundred at once while three others change the record too', async () => {
    const options = { idleTtlMs: 60_000, cacheMs: 10_000, touchEveryMs: 10_000, maxCached: 100 };
    const [a, ...others] = [0, 1, 2, 3].map(() => new RedisSessionStore(redis, options)) as [RedisSessionStore, ...RedisSessionStore[]];
    const session = record();
    await a.create(session);
    const outcomes = await Promise.all([
      ...Array.from({ length: 200 }, (_, n) => a.change(session.id, (stored) => withSubscription(stored, 'up1', `mem://many/${n}`, true))),
      ...others.flatMap((replica, r) => Array.from({ length: 5 }, (_, n) => replica.change(session.id, (stored) => withSubscription(stored, 'up2', `mem://other/${r}/${n}`, true)))),
    ]);
    expect(outcomes.every((outcome) => outcome.changed)).toBe(true);
    const stored = JSON.parse((await redis.get(`pcs:session:${session.id}`)) ?? '{}') as SessionRecord;
    expect(stored.subscriptions?.['up1']).toHaveLength(200);
    expect(stored.subscriptions?.['up2']).toHaveLength(15);
    await a.delete(session.id);
  }, 30_000);

  it('does not cache an update of a session that is gone (it would come back on this replica)', async () => {
    const store = new RedisSessionStore(redis, { idleTtlMs: 60_000, cacheMs: 10_000, touchEveryMs: 10_000, maxCached: 100 });
    const session = record();
    await store.create(session);
    await redis.del(`pcs:session:${session.id}`);
    store.forget(session.id);
    await store.update({ ...session, upstreams: { up1: { sessionId: 'x', protocolVersion: '2025-06-18' } } });
    expect(await store.get(session.id)).toBeUndefined();
  });

  it('stops serving a cached session once its touch finds it gone (ended by a replica whose message never came)', async () => {
    const store = new RedisSessionStore(redis, { idleTtlMs: 60_000, cacheMs: 10_000, touchEveryMs: 0, maxCached: 100 });
    const session = record();
    await store.create(session);
    await redis.del(`pcs:session:${session.id}`);
    // This lookup still answers from the cache, and its touch finds the record gone; the store shares this connection,
    // so the PING answers after the touch did.
    expect(await store.get(session.id)).toEqual(session);
    await redis.ping();
    expect(await store.get(session.id)).toBeUndefined();
  });

  it('does not cache a record deleted between its read and the refresh of its TTL', async () => {
    const session = record();
    await new RedisSessionStore(redis, { idleTtlMs: 60_000, cacheMs: 10_000, touchEveryMs: 10_000, maxCached: 100 }).create(session);
    const store = new RedisSessionStore(deletingAfterFirstRead(redis, session.id), { idleTtlMs: 60_000, cacheMs: 10_000, touchEveryMs: 10_000, maxCached: 100 });
    expect(await store.get(session.id)).toEqual(session);
    await redis.ping();
    expect(await store.get(session.id)).toBeUndefined();
  });

  it('moves the TTL only for the record\'s own principal: someone else presenting the id does not keep the session alive', async () => {
    const store = new RedisSessionStore(redis, { idleTtlMs: 60_000, cacheMs: 0, touchEveryMs: 0, maxCached: 10 });
    const session = record();
    await store.create(session);
    await redis.pexpire(`pcs:session:${session.id}`, 5_000);
    const owner = { tenantId: 'tenant-a', kind: 'agent_client' as const, id: 'agent-1' };
    const stranger = { tenantId: 'tenant-a', kind: 'agent_client' as const, id: 'agent-2' };
    expect(await store.get(session.id, stranger)).toEqual(session);
    await redis.ping();
    expect(await redis.pttl(`pcs:session:${session.id}`)).toBeLessThanOrEqual(5_000);
    expect(await store.get(session.id, owner)).toEqual(session);
    await redis.ping();
    expect(await redis.pttl(`pcs:session:${session.id}`)).toBeGreaterThan(50_000);
  });

  it('expires idle sessions', async () => {
    const store = new RedisSessionStore(redis, { idleTtlMs: 100, cacheMs: 0, touchEveryMs: 0, maxCached: 10 });
    const session = record();
    await store.create(session);
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(await store.get(session.id)).toBeUndefined();
  });

  it('binds a session to its tenant and principal', () => {
    const session = record();
    expect(sessionBelongsTo(session, { tenantId: 'tenant-a', kind: 'agent_client', id: 'agent-1' })).toBe(true);
    expect(sessionBelongsTo(session, { tenantId: 'tenant-b', kind: 'agent_client', id: 'agent-1' })).toBe(false);
    expect(sessionBelongsTo(session, { tenantId: 'tenant-a', kind: 'agent_client', id: 'agent-2' })).toBe(false);
    expect(sessionBelongsTo(session, { tenantId: 'tenant-a', kind: 'user', id: 'agent-1' })).toBe(false);
  });
});

describe("the principal's session set with the session cap off (no reserve)", () => {
  it('drops the ids of sessions that expired when a new one is created (found by a review)', async () => {
    const store = new RedisSessionStore(redis, { idleTtlMs: 300, cacheMs: 50, touchEveryMs: 50, maxCached: 1_000 });
    const owner = { tenantId: 'tenant-growth', principalKind: 'agent_client' as const, principalId: `agent-${newSessionId().slice(0, 8)}` };
    const make = (): SessionRecord => ({ id: newSessionId(), ...owner, protocolVersion: '2025-11-25', clientInfo: { name: 'spec', version: '1' }, clientCapabilities: {}, upstreams: {}, createdAt: Date.now() });
    // An agent opening a session every 20 ms and never coming back to it: about 15 are alive at any time.
    for (let i = 0; i < 60; i++) {
      await store.create(make());
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const key = `pcs:sessions-of:${owner.tenantId}:${owner.principalKind}:${owner.principalId}`;
    // The newest id is scored its creation time (Redis's clock) plus the TTL: no id held had expired by then.
    const [newestId] = await redis.zrange(key, '-1', '-1');
    const lastCreatedAt = Number(await redis.zscore(key, newestId ?? '')) - 300;
    expect(await redis.zcount(key, '-inf', String(lastCreatedAt))).toBe(0);
    expect(await redis.zcard(key)).toBeLessThan(40);
  });
});
