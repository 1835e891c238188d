import type { Redis } from 'ioredis';

// A distributed counting semaphore for "at most N calls in flight". rate-limiter-flexible counts
// requests per window but has no notion of a call ending, so in-flight calls are kept as members of a
// sorted set scored by their lease expiry: a replica that dies mid-call cannot leak a slot for longer
// than the lease. Acquire and release are single atomic scripts (one round trip each).
const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return 1
`;
// The set's own expiry only ever grows: slots have leases of their own lengths (the call's timeout is part of each),
// and a short one set last must not drop the set, and a long call's slot with it, before that slot's lease is over.

export interface SemaphoreClient {
  acquire(key: string, token: string, limit: number, leaseMs: number): Promise<boolean>;
  release(key: string, token: string): Promise<void>;
}

type ScriptedRedis = Redis & {
  portcullisSemaphoreAcquire(key: string, now: number, expiresAt: number, limit: number, token: string, ttl: number): Promise<number>;
};

export function redisSemaphore(redis: Redis, keyPrefix: string): SemaphoreClient {
  const scripted = redis as ScriptedRedis;
  if (typeof scripted.portcullisSemaphoreAcquire !== 'function') {
    redis.defineCommand('portcullisSemaphoreAcquire', { numberOfKeys: 1, lua: ACQUIRE });
  }
  return {
    async acquire(key, token, limit, leaseMs) {
      const now = Date.now();
      const acquired = await scripted.portcullisSemaphoreAcquire(`${keyPrefix}:cc:${key}`, now, now + leaseMs, limit, token, leaseMs);
      return acquired === 1;
    },
    async release(key, token) {
      await redis.zrem(`${keyPrefix}:cc:${key}`, token);
    },
  };
}
