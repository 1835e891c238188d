export { createRedisClient, onRedisError, pingRedis, reconnectDelay } from './lib/redis';
export type { Redis, RedisClientOptions } from './lib/redis';
