import 'server-only';
import { createRedisClient, onRedisError, pingRedis, type Redis } from '@portcullis/data/redis';
import { redisSessionRevocations, type SessionRevocations } from '@portcullis/portal/auth';
import { portalConfig } from './config';
import { portalLogger } from './logger';

let client: Redis | undefined;
let revocations: SessionRevocations | undefined;

/** The one Redis client of this server process (connected on first use). */
function redisClient(): Redis {
  if (!client) {
    const { redis } = portalConfig();
    client = createRedisClient({ url: redis.url, connectionName: 'portal', maxRetriesPerRequest: 1, commandTimeoutMs: redis.commandTimeoutMs });
    onRedisError(client, (error) => portalLogger().error({ event: 'redis.error', error: error.message }, 'Redis (signed-out sessions) is unreachable'));
  }
  return client;
}

/**
 * The signed-out sessions, in Redis. A dead Redis fails a look within PORTAL_REDIS_TIMEOUT_MS and one retry, never
 * holding a request: the session is then refused.
 */
export function sessionRevocations(): SessionRevocations {
  revocations ??= redisSessionRevocations(redisClient());
  return revocations;
}

/** What readiness found wrong with the signed-out sessions' store. */
export interface SessionStoreProblem {
  readonly reason: string;
  /** The portal's own configuration (REDIS_URL names a database the server refused), as opposed to an outage. */
  readonly misconfigured: boolean;
}

/**
 * Readiness of the signed-out sessions' store: undefined when Redis answers on the database REDIS_URL names, else what
 * to report (never an address or the client's error text; those go to the log). Bounded by `timeoutMs`.
 */
export async function sessionStoreProblem(timeoutMs: number): Promise<SessionStoreProblem | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([pingRedis(redisClient()), timedOut]);
    return undefined;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    portalLogger().warn({ event: 'readiness.redis', error: message }, 'Redis (signed-out sessions) failed the readiness check');
    // pingRedis's finding about the database names no address: shown as it is.
    if (message.startsWith('connected to Redis database')) return { reason: message, misconfigured: true };
    return { reason: 'unreachable', misconfigured: false };
  } finally {
    clearTimeout(timer);
  }
}
