import type { Redis } from 'ioredis';

// A distributed counting semaphore for "at most N calls in flight". rate-limiter-flexible counts
// requests per window but has no notion of a call ending, so in-flight calls are kept as members of a
// sorted set scored by their lease expiry: a replica that dies mid-call cannot leak a slot for longer
// than the lease. Acquire and release are single atomic scripts (one round trip each).
//
// Lease times are on Redis's clock (TIME), not the calling replica's: a replica whose clock ran ahead would otherwise
// prune other replicas' slots early (and admit more than the limit), one behind would keep its own too long.
const ACQUIRE = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
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
  portcullisSemaphoreAcquireOnRedisClock(key: string, limit: number, token: string, leaseMs: number): Promise<number>;
};

export function redisSemaphore(redis: Redis, keyPrefix: string): SemaphoreClient {
  const scripted = redis as ScriptedRedis;
  if (typeof scripted.portcullisSemaphoreAcquireOnRedisClock !== 'function') {
    redis.defineCommand('portcullisSemaphoreAcquireOnRedisClock', { numberOfKeys: 1, lua: ACQUIRE });
  }
  return {
    async acquire(key, token, limit, leaseMs) {
      const acquired = await scripted.portcullisSemaphoreAcquireOnRedisClock(`${keyPrefix}:cc:${key}`, limit, token, Math.max(1, Math.round(leaseMs)));
      return acquired === 1;
    },
    async release(key, token) {
      await redis.zrem(`${keyPrefix}:cc:${key}`, token);
    },
  };
}
