/**
 * The gateway's copy of API keys and tenants is only trusted for GATEWAY_CREDENTIALS_MAX_AGE_MS: the gateway reads
 * Postgres through a TCP proxy the test cuts, a key is revoked meanwhile (the control plane's database still works),
 * and once the copy is too old the key is refused with 503 rather than served; when the database is reachable again,
 * the next reload brings the revocation (401) and other keys work again. Upstreams and tool pins are served however
 * old, but not before they have loaded once.
 */
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import {
  createAgentWithKey,
  initializeResult,
  messageOf,
  openStandaloneStream,
  postInitialize,
  postInSession,
  startJsonUpstream,
  startProxy,
  startTestGateway,
  type BreakableProxy,
  type TestGateway,
} from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gatewayDb: SystemPrismaClient;
let proxy: BreakableProxy;
let gateway: TestGateway;
let tenant: TestTenant;
let doomed: { agentId: string; key: string };
let survivor: { agentId: string; key: string };
let postgres: string;

/** An initialize POST with this key: the status, Retry-After and the JSON-RPC error if any. */
async function initialize(key: string) {
  const response = await postInitialize(gateway, tenant.slug, key, 'age-spec');
  const text = await response.text();
  const body = (response.headers.get('content-type') ?? '').startsWith('application/json') ? (JSON.parse(text) as { error?: { code: number; message: string } }) : {};
  return { status: response.status, retryAfter: response.headers.get('retry-after'), error: body.error, text };
}

/**
 * `promise`, or an error naming `what` once `ms` have passed: the set-up timed out once under the full suite's load
 * (60 s, passing alone), and the hook's own timeout would not say which step hung.
 */
function step<T>(what: string, promise: Promise<T>, ms = 25_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`set-up: ${what} did not finish within ${ms} ms`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await step('the test tenant', createTestTenant(db));
  await step('the policy snapshot', writeActiveSnapshot(db, tenant.id, ALLOW_ALL));
  doomed = await step('the first key', createAgentWithKey(db, tenant.id, 'doomed'));
  survivor = await step('the second key', createAgentWithKey(db, tenant.id, 'survivor'));
  const url = new URL(ctx.systemDatabaseUrl);
  postgres = `http://${url.hostname}:${url.port || '5432'}`;
  proxy = await step('the database proxy', startProxy(postgres));
  const proxied = new URL(ctx.systemDatabaseUrl);
  const { port } = new URL(proxy.url);
  proxied.hostname = '127.0.0.1';
  proxied.port = port;
  gatewayDb = createSystemPrismaClient({ url: proxied.toString() });
  gateway = await step(
    'the gateway (its first loads through the proxy)',
    startTestGateway({
      systemDb: gatewayDb,
      redisUrl: ctx.redisUrl,
      env: { GATEWAY_SNAPSHOT_REFRESH_MS: '250', GATEWAY_CREDENTIALS_MAX_AGE_MS: '1500' },
    }),
    40_000,
  );
}, 90_000);

afterAll(async () => {
  await gateway?.close();
  await gatewayDb?.$disconnect().catch(() => undefined);
  await proxy?.close();
  await db?.$disconnect();
});

describe('API keys and tenants older than GATEWAY_CREDENTIALS_MAX_AGE_MS', () => {
  it('refuses keys with 503 while the database is out of reach for too long, then applies what changed meanwhile', async () => {
    expect((await initialize(doomed.key)).status).toBe(200);
    const doomedStream = await openStandaloneStream(gateway, tenant.slug, doomed.key);
    const survivorStream = await openStandaloneStream(gateway, tenant.slug, survivor.key);

    // The gateway loses its database; the control plane (another connection) revokes a key.
    proxy.target = 'http://127.0.0.1:1';
    proxy.breakAll();
    await db.apiKey.updateMany({ where: { tenantId: tenant.id, agentClientId: doomed.agentId }, data: { revokedAt: new Date() } });

    const refused = await waitFor(
      async () => {
        const answer = await initialize(doomed.key);
        return answer.status === 503 ? answer : undefined;
      },
      { timeoutMs: 15_000, description: 'the revoked key refused once the copy is too old' },
    );
    expect(refused.retryAfter).toBe('5');
    expect(refused.error).toMatchObject({ code: -32053, message: 'Credentials or configuration cannot be loaded right now; try again shortly' });
    expect(refused.text).not.toMatch(/postgres|5432|prisma|ECONN/i);
    // Whether a key is good cannot be told now: every well-formed key gets the same answer; a malformed one is 401.
    expect((await initialize(survivor.key)).status).toBe(503);
    expect((await initialize('not-a-key')).status).toBe(401);
    expect(gateway.logs()).toContain('API-key requests are refused (503)');

    // The database is back: the next reload brings the revocation, and the other key is served again.
    proxy.target = postgres;
    await waitFor(async () => ((await initialize(survivor.key)).status === 200 ? true : undefined), {
      timeoutMs: 15_000,
      description: 'keys served again after a reload',
    });
    expect((await initialize(doomed.key)).status).toBe(401);
    expect(gateway.logs()).toContain('requests are authenticated again');
    // Open streams are judged against the fresh copy: the revoked key's stream ends, the other one stays open (not
    // every stream closed because the copy had been too old a moment before).
    await waitFor(() => doomedStream.endedAt() !== undefined, { timeoutMs: 10_000, description: 'the revoked key\'s stream closed' });
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(survivorStream.endedAt()).toBeUndefined();
    survivorStream.close();
  }, 40_000);
});

describe('a gateway booting while the upstreams cannot be read', () => {
  it('refuses agents with 503 until they have loaded, rather than hand out sessions of an empty configuration', async () => {
    const { server, url } = await startJsonUpstream({
      sessionId: 'boot-1',
      onRequest: (request) => {
        const { method } = request.message;
        if (method === 'initialize') request.answer({ result: initializeResult(request, 'boot') });
        else if (method === 'tools/list') request.answer({ result: { tools: [{ name: 'ping', inputSchema: { type: 'object' } }] } });
        else request.answer({ result: { content: [{ type: 'text', text: 'pong' }] } });
      },
    });
    const booting = await createTestTenant(db);
    await writeActiveSnapshot(db, booting.id, ALLOW_ALL);
    const { key } = await createAgentWithKey(db, booting.id, 'boot-agent');
    await db.upstream.create({
      data: { tenantId: booting.id, name: 'boot', toolPrefix: 'boot', transport: 'streamable_http', url, connectTimeoutMs: 5_000, callTimeoutMs: 5_000 } as never,
    });
    // The upstreams' query fails (as a statement timeout would) while `down`; keys, tenants and the rest load.
    let down = true;
    const upstreamModel = new Proxy(db.upstream, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if (property !== 'findMany' || typeof value !== 'function') return value;
        return (...args: unknown[]) =>
          down ? Promise.reject(new Error('canceling statement due to statement timeout')) : (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      },
    });
    const flakyDb = new Proxy(db, { get: (target, property, receiver) => (property === 'upstream' ? upstreamModel : Reflect.get(target, property, receiver)) });
    // No age bound on keys and tenants: the refusal is for the upstreams never loaded alone.
    const booted = await startTestGateway({ systemDb: flakyDb, redisUrl: ctx.redisUrl, env: { GATEWAY_SNAPSHOT_REFRESH_MS: '3600000', GATEWAY_CREDENTIALS_MAX_AGE_MS: '0' } });
    try {
      // Not ready (readiness says so too: /readyz's `configuration` check).
      expect(booted.dataPlane.configurationLoaded()).toBe(false);
      const refused = await postInitialize(booted, booting.slug, key);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('5');
      expect(await messageOf(refused)).toMatchObject({ error: { message: 'Credentials or configuration cannot be loaded right now; try again shortly' } });

      down = false;
      await booted.dataPlane.refreshAll();
      expect(booted.dataPlane.configurationLoaded()).toBe(true);
      const init = await postInitialize(booted, booting.slug, key);
      expect(init.status).toBe(200);
      expect(await messageOf(init)).toMatchObject({ result: { capabilities: { tools: {} } } });
      const listed = await messageOf(await postInSession(booted, booting.slug, key, init.headers.get('mcp-session-id') ?? '', { id: 2, method: 'tools/list' }));
      expect(listed['result']).toMatchObject({ tools: [expect.objectContaining({ name: 'boot__ping' })] });
    } finally {
      await booted.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
