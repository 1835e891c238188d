/**
 * Redis unreachable when the gateway starts: its SUBSCRIBE fails at boot. Once a Redis comes up at that address (a
 * private redis-server started here, on a free port), the gateway subscribes after all: change notices reach it again
 * (a revocation applies at once, with the periodic reload set to an hour), the cross-replica bus is on, and a key
 * revoked while it could hear nothing is refused too, by the reload that follows the subscription.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { BROADCAST_CHANNEL } from '@portcullis/gateway/core';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, freePort, postInitialize, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway | undefined;
let tenant: TestTenant;
let port: number;
let redisServer: ChildProcess | undefined;
let publisher: Redis | undefined;
const agents: Record<'survivor' | 'revokedWhileDown' | 'revokedByNotice', { agentId: string; key: string }> = {} as never;

/** The status of an initialize POST with this key. */
async function initialize(key: string): Promise<number> {
  const response = await postInitialize(gateway as TestGateway, tenant.slug, key, 'redis-boot-spec');
  await response.text();
  return response.status;
}

const revoke = (agentId: string) => db.apiKey.updateMany({ where: { tenantId: tenant.id, agentClientId: agentId }, data: { revokedAt: new Date() } });

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  for (const name of ['survivor', 'revokedWhileDown', 'revokedByNotice'] as const) agents[name] = await createAgentWithKey(db, tenant.id, name);
  // Nothing listens there yet.
  port = await freePort();
  gateway = await startTestGateway({
    systemDb: db,
    redisUrl: `redis://127.0.0.1:${port}`,
    env: { GATEWAY_SNAPSHOT_REFRESH_MS: '3600000', GATEWAY_CREDENTIALS_MAX_AGE_MS: '0', GATEWAY_RATE_LIMITS_ENABLED: 'false' },
  });
}, 60_000);

afterAll(async () => {
  publisher?.disconnect();
  try {
    await gateway?.close();
  } finally {
    if (redisServer && redisServer.exitCode === null) {
      const exited = new Promise((resolve) => redisServer?.once('exit', resolve));
      redisServer.kill('SIGTERM');
      await exited;
    }
    await db?.$disconnect();
  }
}, 30_000);

describe('Redis down when the gateway starts', () => {
  it('subscribes once Redis is up, reloads what it may have missed, and applies notices from then on', async () => {
    expect(gateway?.logs()).toContain('could not subscribe to gateway channels');
    // No session can be recorded meanwhile: unavailable, try again (503 with Retry-After), not the gateway's own 500.
    const refused = await postInitialize(gateway as TestGateway, tenant.slug, agents.survivor.key, 'redis-boot-spec');
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect((await refused.json()).error.message).toMatch(/session store is unavailable/);
    // Revoked while the gateway could hear no notice (none could be published either).
    await revoke(agents.revokedWhileDown.agentId);

    redisServer = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    publisher = createRedisClient({ url: `redis://127.0.0.1:${port}`, connectionName: 'redis-boot-spec' });
    const redis = publisher;
    const subscribers = async (channel: string) => Number(((await redis.call('PUBSUB', 'NUMSUB', channel)) as [string, number])[1]);
    await waitFor(async () => (await subscribers(CHANGE_CHANNELS.apiKeys)) === 1, { timeoutMs: 15_000, description: 'the change channels subscribed' });
    expect(await subscribers(BROADCAST_CHANNEL)).toBe(1);
    expect(gateway?.logs()).toContain('subscribed to gateway channels');
    expect(gateway?.logs()).toContain('policy snapshot notices are back');

    await waitFor(async () => (await initialize(agents.revokedWhileDown.key)) === 401, {
      timeoutMs: 10_000,
      description: 'the key revoked during the outage refused after the reload that follows the subscription',
    });
    expect(await initialize(agents.survivor.key)).toBe(200);

    await revoke(agents.revokedByNotice.agentId);
    expect(await redis.publish(CHANGE_CHANNELS.apiKeys, tenant.id)).toBe(1);
    await waitFor(async () => (await initialize(agents.revokedByNotice.key)) === 401, { timeoutMs: 5_000, description: 'the revocation notice applied' });
    expect(await initialize(agents.survivor.key)).toBe(200);
  }, 60_000);
});
