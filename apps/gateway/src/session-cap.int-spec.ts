/**
 * The per-principal session cap over HTTP: an agent key holding GATEWAY_MAX_SESSIONS_PER_PRINCIPAL sessions (here 2,
 * counted in Redis across replicas) gets 429 with Retry-After and a JSON-RPC RATE_LIMITED error for the next
 * initialize, on either transport's replica; ending a session with DELETE frees its place at once.
 */
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentWithKey, startTestGateway, type TestGateway } from './testing/gateway-harness';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';

const ctx = testContext();
let db: SystemPrismaClient;
let gatewayA: TestGateway;
let gatewayB: TestGateway;
let tenant: TestTenant;
let key: string;
let otherKey: string;
let burstKey: string;

const headers = (bearer: string) => ({
  authorization: `Bearer ${bearer}`,
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
});

function initialize(gateway: TestGateway, bearer = key): Promise<Response> {
  return fetch(`${gateway.url}/t/${tenant.slug}/mcp`, {
    method: 'POST',
    headers: headers(bearer),
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'cap-spec', version: '1' } } }),
  });
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  key = (await createAgentWithKey(db, tenant.id, 'capped-agent')).key;
  otherKey = (await createAgentWithKey(db, tenant.id, 'other-agent')).key;
  burstKey = (await createAgentWithKey(db, tenant.id, 'burst-agent')).key;
  const env = { GATEWAY_MAX_SESSIONS_PER_PRINCIPAL: '2' };
  gatewayA = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env });
  gatewayB = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env });
}, 60_000);

afterAll(async () => {
  await gatewayA?.close();
  await gatewayB?.close();
  await db?.$disconnect();
});

describe('sessions per principal', () => {
  it('refuses a third session with 429 on any replica, and takes one again once a session is deleted', async () => {
    const first = await initialize(gatewayA);
    const second = await initialize(gatewayB);
    expect([first.status, second.status]).toEqual([200, 200]);
    const firstId = first.headers.get('mcp-session-id');
    expect(firstId).toEqual(expect.any(String));

    for (const gateway of [gatewayA, gatewayB]) {
      const refused = await initialize(gateway);
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('30');
      expect(refused.headers.get('mcp-session-id')).toBeNull();
      expect(await refused.json()).toMatchObject({ id: 1, error: { code: -32029, message: expect.stringContaining('Too many sessions'), data: { limit: 2, scope: 'principal' } } });
    }
    // Another agent of the tenant is not held to this one's count.
    expect((await initialize(gatewayA, otherKey)).status).toBe(200);

    const deleted = await fetch(`${gatewayB.url}/t/${tenant.slug}/mcp`, {
      method: 'DELETE',
      headers: { ...headers(key), 'mcp-session-id': firstId ?? '', 'mcp-protocol-version': '2025-11-25' },
    });
    expect(deleted.status).toBe(200);
    expect((await initialize(gatewayA)).status).toBe(200);
  });

  it('lets no more than the cap through when initializes arrive at once on both replicas', async () => {
    const statuses = await Promise.all([gatewayA, gatewayB, gatewayA, gatewayB, gatewayA, gatewayB].map((gateway) => initialize(gateway, burstKey).then((res) => res.status)));
    expect(statuses.filter((status) => status === 200)).toHaveLength(2);
    expect(statuses.filter((status) => status === 429)).toHaveLength(4);
  });
});
