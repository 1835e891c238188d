/**
 * The listing page cache is bounded per replica (GATEWAY_LIST_CACHE_MAX_PAGES / _MAX_MB), shared by every tenant: one
 * tenant paging through its own upstream's long listing must push out its own cached pages, not another tenant's (with
 * one queue for all, the other tenants' listings went to their upstreams each time).
 */
import type { Server } from 'node:http';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, initializeResult, messageOf, postInitialize, postInSession, startJsonUpstream, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let victim: TestTenant;
let hostile: TestTenant;
let victimKey: string;
let hostileKey: string;
const servers: Server[] = [];
/** tools/list requests each upstream received. */
const listings = { victim: 0, hostile: 0 };

/** An upstream listing `pages` pages of one tool each (cursor `p<n>`), counting its tools/list requests. */
function upstream(name: 'victim' | 'hostile', pages: number) {
  return startJsonUpstream({
    sessionId: `${name}-1`,
    onRequest: (request) => {
      const { method, params } = request.message;
      if (method === 'initialize') request.answer({ result: initializeResult(request, name) });
      else if (method === 'tools/list') {
        listings[name] += 1;
        const at = typeof params?.['cursor'] === 'string' ? Number((params['cursor'] as string).slice(1)) : 0;
        const next = at + 1 < pages ? { nextCursor: `p${at + 1}` } : {};
        request.answer({ result: { tools: [{ name: `t${at}`, inputSchema: { type: 'object' } }], ...next } });
      } else request.answer({ result: {} });
    },
  });
}

async function session(tenant: TestTenant, key: string): Promise<string> {
  const init = await postInitialize(gateway, tenant.slug, key);
  await init.text();
  expect(init.status).toBe(200);
  return init.headers.get('mcp-session-id') as string;
}

async function listTools(tenant: TestTenant, key: string, sessionId: string, cursor?: string): Promise<Record<string, unknown>> {
  const answer = await messageOf(await postInSession(gateway, tenant.slug, key, sessionId, { id: 2, method: 'tools/list', params: cursor === undefined ? {} : { cursor } }));
  return answer['result'] as Record<string, unknown>;
}

beforeAll(async () => {
  const victimUpstream = await upstream('victim', 1);
  const hostileUpstream = await upstream('hostile', 40);
  servers.push(victimUpstream.server, hostileUpstream.server);
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  victim = await createTestTenant(db);
  hostile = await createTestTenant(db);
  for (const [tenant, url] of [[victim, victimUpstream.url], [hostile, hostileUpstream.url]] as const) {
    await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
    await db.upstream.create({ data: { tenantId: tenant.id, name: 'up', toolPrefix: 'up', transport: 'streamable_http', url, connectTimeoutMs: 5_000, callTimeoutMs: 5_000 } as never });
  }
  victimKey = (await createAgentWithKey(db, victim.id, 'victim-agent')).key;
  hostileKey = (await createAgentWithKey(db, hostile.id, 'hostile-agent')).key;
  // A small replica-wide bound, so that the spec pages through few pages; the default (2,000) is reached the same way.
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_LIST_CACHE_MAX_PAGES: '16', GATEWAY_LIST_CACHE_MS: '60000' } });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await db?.$disconnect();
  for (const server of servers) await new Promise((resolve) => server.close(resolve));
});

describe('the listing page cache of a replica, shared by its tenants', () => {
  it("keeps a tenant's cached listing while another tenant pages through its own upstream's long listing", async () => {
    const victimSession = await session(victim, victimKey);
    expect((await listTools(victim, victimKey, victimSession))['tools']).toHaveLength(1);
    // Answered from the session's cached page: the upstream is not asked again.
    await listTools(victim, victimKey, victimSession);
    expect(listings.victim).toBe(1);

    // The other tenant's agent pages through its own upstream's 40 pages, 40 requests in one session.
    const hostileSession = await session(hostile, hostileKey);
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await listTools(hostile, hostileKey, hostileSession, cursor);
      cursor = typeof page['nextCursor'] === 'string' ? page['nextCursor'] : undefined;
      pages += 1;
    } while (cursor !== undefined);
    expect(pages).toBe(40);

    // Still within GATEWAY_LIST_CACHE_MS: the victim's listing should still come from its cache.
    await listTools(victim, victimKey, victimSession);
    expect(listings.victim).toBe(1);
  }, 60_000);
});
