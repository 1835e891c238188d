/**
 * A change announced while a gateway boots, after its boot load read the database and before it subscribed to the
 * change channels, reaches it at once: it loads everything again once subscribed, rather than at the next periodic
 * refresh (an hour here).
 */
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { createTestTenant, testContext, waitFor } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, postInitialize, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let redis: Redis;
let gateway: TestGateway | undefined;

beforeAll(() => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  redis = createRedisClient({ url: ctx.redisUrl, connectionName: 'boot-window-spec' });
});

afterAll(async () => {
  await gateway?.close();
  redis?.disconnect();
  await db?.$disconnect();
});

describe('a change announced while the gateway boots', () => {
  it('takes effect once the gateway is up, not at the next periodic refresh', async () => {
    const tenant = await createTestTenant(db);
    await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
    const { key, agentId } = await createAgentWithKey(db, tenant.id, 'boot-window-agent');

    // The boot load of API keys reads its rows, then waits here until the key is revoked and the revocation announced.
    let reached: () => void = () => undefined;
    const atGate = new Promise<void>((resolve) => (reached = resolve));
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let held = false;
    const apiKeys = new Proxy(db.apiKey, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if (property !== 'findMany' || typeof value !== 'function') return value;
        return async (...args: unknown[]) => {
          const rows: unknown = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          if (!held) {
            held = true;
            reached();
            await gate;
          }
          return rows;
        };
      },
    });
    const gatedDb = new Proxy(db, { get: (target, property, receiver) => (property === 'apiKey' ? apiKeys : Reflect.get(target, property, receiver)) });

    const booting = startTestGateway({ systemDb: gatedDb, redisUrl: ctx.redisUrl, env: { GATEWAY_SNAPSHOT_REFRESH_MS: '3600000', GATEWAY_CREDENTIALS_MAX_AGE_MS: '0' } });
    await Promise.race([atGate, booting]);
    await db.apiKey.updateMany({ where: { agentClientId: agentId }, data: { revokedAt: new Date() } });
    await redis.publish(CHANGE_CHANNELS.apiKeys, tenant.id);
    open();
    gateway = await booting;

    await waitFor(async () => (await postInitialize(gateway as TestGateway, tenant.slug, key)).status === 401, {
      timeoutMs: 5_000,
      description: 'the key revoked during boot is refused',
    });
    expect((await postInitialize(gateway, tenant.slug, key)).status).toBe(401);
  }, 30_000);
});
