import { Redis, type RedisOptions } from 'ioredis';

export type { Redis } from 'ioredis';

export interface RedisClientOptions {
  readonly url: string;
  /** Shown in `CLIENT LIST`, handy when several processes share one Redis. */
  readonly connectionName: string;
  /**
   * BullMQ workers need `null` here (blocking commands must not fail after N retries). Request-path
   * clients keep a small number so a dead Redis fails fast instead of hanging a request.
   */
  readonly maxRetriesPerRequest?: number | null;
  /**
   * A command not answered within this long fails ("Command timed out"). A Redis that stops answering without closing
   * (a partition) otherwise holds every command, and the requests waiting on them, without end. Not for clients with
   * blocking commands (BullMQ's workers). Unset: no bound.
   */
  readonly commandTimeoutMs?: number;
}

/** Reconnects with capped exponential backoff: 50 ms, 100 ms, ... up to 2 s between attempts. */
export function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.max(0, attempt - 1), 2_000);
}

export function createRedisClient(options: RedisClientOptions): Redis {
  const redisOptions: RedisOptions = {
    connectionName: options.connectionName,
    maxRetriesPerRequest: options.maxRetriesPerRequest === undefined ? 2 : options.maxRetriesPerRequest,
    retryStrategy: reconnectDelay,
    enableReadyCheck: true,
    lazyConnect: false,
    ...(options.commandTimeoutMs === undefined ? {} : { commandTimeout: options.commandTimeoutMs }),
  };
  const client = new Redis(options.url, redisOptions);
  // Without a listener ioredis prints every failed reconnect as an unhandled error event; callers that
  // care attach their own logger through `onRedisError`.
  client.on('error', () => undefined);
  return client;
}

/** Readiness: PING answered with PONG within the caller's deadline. */
export async function pingRedis(client: Redis): Promise<void> {
  const answer = await client.ping();
  if (answer !== 'PONG') throw new Error('unexpected PING answer');
}

export function onRedisError(client: Redis, log: (error: Error) => void): void {
  let last = 0;
  client.on('error', (error: Error) => {
    // One line per 10 s at most while Redis is down, not one per reconnect attempt.
    const now = Date.now();
    if (now - last > 10_000) {
      last = now;
      log(error);
    }
  });
}
