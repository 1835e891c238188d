export { createRedisClient, onRedisError, pingRedis, reconnectDelay, redisDatabaseRefused } from './lib/redis';
export type { Redis, RedisClientOptions } from './lib/redis';
