import 'server-only';
import { createRedisClient, onRedisError } from '@portcullis/data/redis';
import { redisSessionRevocations, type SessionRevocations } from '@portcullis/portal/auth';
import { portalConfig } from './config';
import { portalLogger } from './logger';

let revocations: SessionRevocations | undefined;

/**
 * The signed-out sessions, in Redis (one client per server process, connected on first use). A dead Redis fails a
 * look within PORTAL_REDIS_TIMEOUT_MS and one retry, never holding a request: the session is then refused.
 */
export function sessionRevocations(): SessionRevocations {
  if (!revocations) {
    const { redis } = portalConfig();
    const client = createRedisClient({ url: redis.url, connectionName: 'portal', maxRetriesPerRequest: 1, commandTimeoutMs: redis.commandTimeoutMs });
    onRedisError(client, (error) => portalLogger().error({ event: 'redis.error', error: error.message }, 'Redis (signed-out sessions) is unreachable'));
    revocations = redisSessionRevocations(client);
  }
  return revocations;
}
