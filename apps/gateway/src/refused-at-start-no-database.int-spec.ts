/**
 * A starting replica ends the sessions of principals and tenants its first loads find refused, of tenants its database
 * knows only. A replica started without DATABASE_SYSTEM_URL (supported: it warns "the MCP endpoints know no tenants"
 * and serves nothing) loads no tenant and no key: judging every tenant it did not find, it ended every session in the
 * shared Redis, served by the other replicas (found by review), as would a replica whose database is not its Redis's.
 */
import type { Server } from 'node:http';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, initializeResult, postInitialize, postInSession, startJsonUpstream, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway | undefined;
let noDatabase: TestGateway | undefined;
let tenant: TestTenant;
let upstream: { server: Server; url: string } | undefined;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  upstream = await startJsonUpstream({ sessionId: 'no-database', onRequest: (request) => request.answer({ result: request.message.method === 'initialize' ? initializeResult(request, 'no-database') : {} }) });
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'nodatabase', toolPrefix: 'nodatabase', transport: 'streamable_http', url: upstream.url } as never });
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await noDatabase?.close();
  await gateway?.close();
  upstream?.server.closeAllConnections();
  upstream?.server.close();
  await db?.$disconnect();
});

describe('a replica started without the system database', () => {
  it('does not end the sessions the other replicas serve', async () => {
    const { key } = await createAgentWithKey(db, tenant.id, 'no-database-agent');
    await (gateway as TestGateway).dataPlane.refreshAll();
    const init = await postInitialize(gateway as TestGateway, tenant.slug, key);
    await init.text();
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    await new Promise((resolve) => setTimeout(resolve, 1_100));

    noDatabase = await startTestGateway({ systemDb: null as never, redisUrl: ctx.redisUrl });
    await noDatabase.dataPlane.refreshAll();

    expect((await postInSession(gateway as TestGateway, tenant.slug, key, sessionId, { id: 2, method: 'ping' })).status).toBe(200);
  }, 60_000);
});
