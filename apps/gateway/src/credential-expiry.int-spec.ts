/**
 * An API key's expiry ends the SSE streams opened with it when it passes, as it ends its requests: with no reload of
 * the keys in between (the periodic one set to an hour here), the stream of the expired key closes within moments of
 * its expiry, and the stream of a key without expiry stays open.
 */
import { generateApiKey, hashApiKey } from '@portcullis/auth/api-keys';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, openStandaloneStream, postInitialize, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let expiring: string;
let lasting: string;
let expiresAt: number;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  const agent = await db.agentClient.create({ data: { tenantId: tenant.id, name: 'expiring' } });
  expiring = generateApiKey();
  expiresAt = Date.now() + 4_000;
  await db.apiKey.create({
    data: { tenantId: tenant.id, name: 'expiring', keyHash: hashApiKey(expiring), displayPrefix: expiring.slice(0, 10), agentClientId: agent.id, expiresAt: new Date(expiresAt) },
  });
  ({ key: lasting } = await createAgentWithKey(db, tenant.id, 'lasting'));
  gateway = await startTestGateway({
    systemDb: db,
    redisUrl: ctx.redisUrl,
    env: { GATEWAY_SNAPSHOT_REFRESH_MS: '3600000', GATEWAY_CREDENTIALS_MAX_AGE_MS: '0' },
  });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await db?.$disconnect();
});

describe('SSE streams of an API key that expires', () => {
  it('close when the key expires, without waiting for a reload; streams of other keys stay open', async () => {
    const doomed = await openStandaloneStream(gateway, tenant.slug, expiring);
    const other = await openStandaloneStream(gateway, tenant.slug, lasting);
    expect(Date.now()).toBeLessThan(expiresAt);

    const endedAt = await waitFor(doomed.endedAt, { timeoutMs: 10_000, description: 'the expired key\'s stream closed' });
    expect(endedAt).toBeGreaterThanOrEqual(expiresAt);
    expect(endedAt - expiresAt).toBeLessThan(1_500);
    expect((await postInitialize(gateway, tenant.slug, expiring)).status).toBe(401);
    expect(gateway.logs()).toContain('closed an SSE stream whose credential expired');

    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(other.endedAt()).toBeUndefined();
    other.close();
  }, 30_000);
});
