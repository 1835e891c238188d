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

/**
 * Readiness: PING answered with PONG within the caller's deadline, and, where the URL names a database other than 0,
 * the connection really is on it. A server with fewer databases refuses ioredis's SELECT at connect; ioredis reports
 * that as an error event only and carries on in database 0, where every key would mix with another app's.
 */
export async function pingRedis(client: Redis): Promise<void> {
  const answer = await client.ping();
  if (answer !== 'PONG') throw new Error('unexpected PING answer');
  const problem = await wrongDatabase(client, 'REDIS_URL');
  if (problem !== undefined) throw new Error(problem);
}

/**
 * Why `client` is not on the database its URL names (`variable`, for the message), or undefined when it is (or names
 * database 0, which every server has). Needs a connected client.
 */
async function wrongDatabase(client: Redis, variable: string): Promise<string | undefined> {
  const configured = client.options.db ?? 0;
  if (configured === 0) return undefined;
  let info: unknown;
  try {
    info = await client.call('CLIENT', 'INFO');
  } catch (error) {
    // A server that cannot say (before Redis 6.2, or an ACL user without CLIENT): not known to be wrong. Anything
    // else (the connection lost) is the caller's failure.
    if ((error as Error).name === 'ReplyError' && /unknown (sub)?command|NOPERM|no permissions/i.test((error as Error).message)) return undefined;
    throw error;
  }
  const current = typeof info === 'string' ? /(?:^| )db=(\d+)/.exec(info)?.[1] : undefined;
  if (current === undefined) return 'CLIENT INFO did not name the connection\'s database';
  if (Number(current) === configured) return undefined;
  return `connected to Redis database ${current}, not ${configured} as ${variable} says: the server refused SELECT ${configured} (fewer databases configured)`;
}

/**
 * At boot, for a Redis URL that readiness does not watch (the gateway's own for rate limits or audit): why the server
 * at `url` refuses the database it names, or undefined when it takes it — or cannot be asked within `timeoutMs` (a
 * Redis down at boot is the fail modes' to handle, not a configuration error).
 */
export async function redisDatabaseRefused(url: string, variable: string, timeoutMs: number): Promise<string | undefined> {
  const client = createRedisClient({ url, connectionName: 'database-check', maxRetriesPerRequest: 0, commandTimeoutMs: timeoutMs });
  try {
    if ((client.options.db ?? 0) === 0) return undefined;
    await Promise.race([
      new Promise<void>((resolve) => client.once('ready', () => resolve())),
      new Promise<void>((_resolve, reject) => setTimeout(() => reject(new Error('not ready')), timeoutMs).unref()),
    ]);
    return await wrongDatabase(client, variable);
  } catch {
    return undefined;
  } finally {
    client.disconnect();
  }
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
