/**
 * Rate limits on the real request path: the official MCP SDK client (and plain JSON POSTs) → gateway (policy
 * snapshot with rule limits, tenant settings) → the built demo upstreams, with the counters in the real Redis.
 * Needs `npx nx build demo-upstreams`.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { generateApiKey, hashApiKey } from '@portcullis/auth/api-keys';
import type { TenantSettingsInput } from '@portcullis/contracts/api';
import { POLICY_IR_VERSION, type PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { createPrismaClient, createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { compile, serializeSnapshot } from '@portcullis/policy/engine';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoUpstreams, startTestGateway, type DemoUpstreams, type TestGateway } from './testing/gateway-harness';

const RATE_LIMITED = -32029;
const UNAVAILABLE = -32053;

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let gatewayA: TestGateway;
let gatewayB: TestGateway;
/** Its limiter points at a closed port: Redis "down" for the counters only. */
let gatewayNoRedis: TestGateway;

interface Fixture {
  readonly tenant: TestTenant;
  agentKey(): Promise<string>;
  userKey(): Promise<string>;
}

/** A tenant with the kitchen-sink upstream, the given settings and a policy snapshot with `rules` (default allow). */
async function fixture(rules: PolicyRuleSource[], settings: TenantSettingsInput = {}): Promise<Fixture> {
  const tenant = await createTestTenant(db);
  await db.tenant.update({ where: { id: tenant.id }, data: { settings: settings as object } });
  await db.upstream.create({
    data: { tenantId: tenant.id, name: 'ks', toolPrefix: 'ks', transport: 'streamable_http', url: `${demo.url}/kitchen-sink/mcp`, connectTimeoutMs: 3_000, callTimeoutMs: 10_000 },
  });
  const compiled = compile({
    tenantId: tenant.id,
    version: 1,
    defaultEffect: 'allow',
    rules,
    upstreams: [{ name: 'ks', tools: [{ kind: 'tool', name: 'echo' }, { kind: 'tool', name: 'slow_count' }] }],
  });
  if (!compiled.ok) throw new Error(`policy does not compile: ${JSON.stringify(compiled.errors)}`);
  const ir = JSON.parse(serializeSnapshot(compiled.snapshot)) as { checksum: string };
  await db.policySnapshot.create({ data: { tenantId: tenant.id, version: 1, irVersion: POLICY_IR_VERSION, checksum: ir.checksum, ir, active: true } });
  const issue = async (owner: { agentClientId: string } | { userId: string }): Promise<string> => {
    const key = generateApiKey();
    await db.apiKey.create({ data: { tenantId: tenant.id, name: `key-${randomBytes(3).toString('hex')}`, keyHash: hashApiKey(key), displayPrefix: key.slice(0, 10), ...owner } });
    return key;
  };
  return {
    tenant,
    agentKey: async () => {
      const agent = await db.agentClient.create({ data: { tenantId: tenant.id, name: `agent-${randomBytes(3).toString('hex')}` } });
      return issue({ agentClientId: agent.id });
    },
    userKey: async () => {
      const user = await db.user.create({ data: { email: `u-${randomBytes(5).toString('hex')}@example.com`, name: 'Rate Limited' } });
      await db.membership.create({ data: { tenantId: tenant.id, userId: user.id, role: 'member' } });
      return issue({ userId: user.id });
    },
  };
}

async function ready(): Promise<void> {
  await Promise.all([gatewayA, gatewayB, gatewayNoRedis].map((gateway) => gateway.dataPlane.refreshAll()));
}

async function connect(base: string, slug: string, apiKey: string): Promise<Client> {
  const client = new Client({ name: 'rate-limit-spec', version: '1.0.0' }, { capabilities: {} });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/t/${slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${apiKey}` } } }));
  return client;
}

const echo = (client: Client, message = 'hi') => client.callTool({ name: 'ks__echo', arguments: { message } });

/** The JSON-RPC error an SDK client receives inside the HTTP 429 it is answered with. */
async function rateLimitedError(call: Promise<unknown>): Promise<{ code: number; message: string; data: Record<string, unknown> }> {
  const error = await call.then(
    () => {
      throw new Error('expected the call to be refused');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StreamableHTTPError);
  expect((error as StreamableHTTPError).code).toBe(429);
  const body = /(\{.*\})\s*$/s.exec((error as Error).message)?.[1];
  return (JSON.parse(body ?? '{}') as { error: { code: number; message: string; data: Record<string, unknown> } }).error;
}

/** A session opened with plain HTTP, for looking at status codes and headers. */
async function rawSession(base: string, slug: string, apiKey: string) {
  const headers = { authorization: `Bearer ${apiKey}`, accept: 'application/json, text/event-stream', 'content-type': 'application/json' };
  const init = await fetch(`${base}/t/${slug}/mcp`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
  });
  const sessionId = init.headers.get('mcp-session-id') ?? '';
  const sessionHeaders = { ...headers, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-03-26' };
  await fetch(`${base}/t/${slug}/mcp`, { method: 'POST', headers: sessionHeaders, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
  return (body: unknown) => fetch(`${base}/t/${slug}/mcp`, { method: 'POST', headers: sessionHeaders, body: JSON.stringify(body) });
}

const call = (id: number, message: string) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'ks__echo', arguments: { message } } });

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  gatewayA = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
  gatewayB = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
  gatewayNoRedis = await startTestGateway({
    systemDb: db,
    redisUrl: ctx.redisUrl,
    env: { GATEWAY_RATE_LIMIT_REDIS_URL: 'redis://127.0.0.1:1', GATEWAY_RATE_LIMIT_TIMEOUT_MS: '200' },
  });
}, 60_000);

afterAll(async () => {
  await Promise.all([gatewayA, gatewayB, gatewayNoRedis].map((gateway) => gateway?.close()));
  await demo?.stop();
  await db?.$disconnect();
});

const perUserPerTool: PolicyRuleSource = {
  id: 'echo-per-user-per-tool',
  subjects: [{ type: 'authenticated' }],
  targets: [{ kind: 'tool', upstream: 'ks', name: 'echo' }],
  effect: 'allow',
  rateLimit: { scope: ['user', 'tool'], requests: 3, windowSeconds: 60 },
};

describe('rate limits on the gateway request path', () => {
  it('a per-user, per-tool limit refuses the 4th call with the limit, scope and retry-after (HTTP 429)', async () => {
    const f = await fixture([perUserPerTool]);
    const [alice, bob] = [await f.userKey(), await f.userKey()];
    await ready();
    const client = await connect(gatewayA.url, f.tenant.slug, alice);
    for (let i = 0; i < 3; i++) expect((await echo(client)).isError).not.toBe(true);
    const error = await rateLimitedError(echo(client));
    expect(error.code).toBe(RATE_LIMITED);
    expect(error.message).toMatch(/Rate limit exceeded: 3 requests per 60 s per user and tool/);
    expect(error.data).toMatchObject({ kind: 'requests', limit: 3, windowSeconds: 60, scope: ['user', 'tool'] });
    expect(error.data['retryAfterSeconds']).toBeGreaterThan(0);
    expect(error.data['retryAfterSeconds']).toBeLessThanOrEqual(60);
    // Another tool of the same user, and the same tool for another user, are counted apart.
    expect((await client.callTool({ name: 'ks__slow_count', arguments: { steps: 1, interval_ms: 1 } })).isError).not.toBe(true);
    const other = await connect(gatewayA.url, f.tenant.slug, bob);
    expect((await echo(other)).isError).not.toBe(true);
    await Promise.all([client.close(), other.close()]);
  });

  it('answers a plain JSON POST over the limit with HTTP 429, Retry-After and the JSON-RPC error as body', async () => {
    const f = await fixture([perUserPerTool]);
    const key = await f.userKey();
    await ready();
    const post = await rawSession(gatewayA.url, f.tenant.slug, key);
    for (let i = 1; i <= 3; i++) expect((await post(call(i, 'ok'))).status).toBe(200);
    const refused = await post(call(4, 'one too many'));
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toContain('application/json');
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    const body = (await refused.json()) as { id: number; error: { code: number; data: Record<string, unknown> } };
    expect(body).toMatchObject({ id: 4, error: { code: RATE_LIMITED, data: { limit: 3, scope: ['user', 'tool'], retryAfterSeconds: retryAfter } } });
    // In a batch (protocol 2025-03-26) the refusal is one answer among others: HTTP 200.
    const batch = await post([call(5, 'a'), { jsonrpc: '2.0', id: 6, method: 'ping' }]);
    expect(batch.status).toBe(200);
    const answers = (await batch.json()) as { id: number; error?: { code: number } }[];
    expect(answers.find((a) => a.id === 5)?.error?.code).toBe(RATE_LIMITED);
    expect(answers.find((a) => a.id === 6)?.error).toBeUndefined();
  });

  /** A tenant whose agent may run one slow_count at a time, and a client of that agent. */
  async function oneSlowCallAtATime() {
    const f = await fixture([
      {
        id: 'one-slow-call-at-a-time',
        subjects: [{ type: 'authenticated' }],
        targets: [{ kind: 'tool', upstream: 'ks', name: 'slow_count' }],
        effect: 'allow',
        rateLimit: { scope: ['agent_client'], maxConcurrent: 1 },
      },
    ]);
    const key = await f.agentKey();
    await ready();
    return connect(gatewayA.url, f.tenant.slug, key);
  }

  /**
   * A call long enough (20 × 250 ms) that its slot is still held when the next one arrives, even on a slow machine;
   * resolves (with the call, still running) once its first progress notification proves it was admitted and is in
   * flight upstream.
   */
  async function slowCallInFlight(client: Client, signal?: AbortSignal): Promise<{ slow: Promise<unknown> }> {
    let inFlight = false;
    const slow = client.callTool({ name: 'ks__slow_count', arguments: { steps: 20, interval_ms: 250 } }, undefined, {
      ...(signal ? { signal } : {}),
      onprogress: () => {
        inFlight = true;
      },
    });
    // A handled copy: the call may be cancelled before anyone awaits it.
    slow.catch(() => undefined);
    await waitFor(() => inFlight, { timeoutMs: 10_000, description: 'the slow call to be in flight' });
    return { slow };
  }

  const quickCall = (client: Client) => client.callTool({ name: 'ks__slow_count', arguments: { steps: 1, interval_ms: 1 } });

  /** A quick call, retried while it is refused for concurrency (a slot is given back asynchronously). */
  const quickCallOnceFree = (client: Client, timeoutMs: number) =>
    waitFor(
      () =>
        quickCall(client).catch((e: unknown) => {
          if (e instanceof StreamableHTTPError && e.code === 429) return undefined;
          throw e;
        }),
      { timeoutMs, intervalMs: 100, description: 'the slot given back' },
    );

  it('bounds calls in flight per agent client and frees the slot when a call ends', async () => {
    const client = await oneSlowCallAtATime();
    const { slow } = await slowCallInFlight(client);
    const error = await rateLimitedError(quickCall(client));
    expect(error.data).toMatchObject({ kind: 'concurrency', limit: 1, scope: ['agent_client'] });
    expect(error.message).toMatch(/at most 1 at once per agent client/);
    // Other tools are not limited by it.
    expect((await echo(client)).isError).not.toBe(true);
    expect(((await slow) as { isError?: boolean }).isError).not.toBe(true);
    // Released after the call: the next one gets the slot. A slot that was never released would stay held for the
    // 15 min lease and this would time out.
    expect((await quickCallOnceFree(client, 10_000)).isError).not.toBe(true);
    await client.close();
  });

  it('keeps a cancelled call\'s slot until its timeout would have passed (the upstream may still be running it)', async () => {
    const client = await oneSlowCallAtATime();
    const cancel = new AbortController();
    const startedAt = Date.now();
    const { slow } = await slowCallInFlight(client, cancel.signal);
    cancel.abort();
    await expect(slow).rejects.toThrow();
    // Cancel and call again: still one at a time (before, the slot came back with the cancellation, so an agent
    // could run any number at once on an upstream that ignores cancellations). The pause lets a release at once,
    // were there one, land first.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const error = await rateLimitedError(quickCall(client));
    expect(error.data).toMatchObject({ kind: 'concurrency', limit: 1 });
    // Given back once the call's timeout (10 s) would have passed.
    expect((await quickCallOnceFree(client, 20_000)).isError).not.toBe(true);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(9_500);
    await client.close();
  }, 40_000);

  it('two replicas share one count through Redis', async () => {
    const f = await fixture([perUserPerTool]);
    const key = await f.userKey();
    await ready();
    const onA = await connect(gatewayA.url, f.tenant.slug, key);
    const onB = await connect(gatewayB.url, f.tenant.slug, key);
    expect((await echo(onA)).isError).not.toBe(true);
    expect((await echo(onB)).isError).not.toBe(true);
    expect((await echo(onA)).isError).not.toBe(true);
    expect((await rateLimitedError(echo(onB))).code).toBe(RATE_LIMITED);
    expect((await rateLimitedError(echo(onA))).code).toBe(RATE_LIMITED);
    await Promise.all([onA.close(), onB.close()]);
  });

  it('enforces the tenant-wide limit from the tenant settings, for every request', async () => {
    const f = await fixture([], { rateLimits: { tenant: { requests: 4, windowSeconds: 60 } } });
    const key = await f.agentKey();
    await ready();
    const client = await connect(gatewayA.url, f.tenant.slug, key);
    // initialize is a request too: with it, these are the 4 the window allows.
    await client.listTools();
    await echo(client);
    await client.ping();
    const error = await rateLimitedError(client.ping());
    expect(error.message).toMatch(/4 requests per 60 s for this tenant/);
    expect(error.data).toMatchObject({ limit: 4, scope: ['tenant'] });
    await client.close();
  });

  it('with Redis unreachable: a fail-open tenant proceeds (logged), a fail-closed tenant is refused at once', async () => {
    const open = await fixture([perUserPerTool], { rateLimits: { failMode: 'open' } });
    const closed = await fixture([perUserPerTool], { rateLimits: { failMode: 'closed' } });
    const [openKey, closedKey] = [await open.userKey(), await closed.userKey()];
    await ready();
    const openClient = await connect(gatewayNoRedis.url, open.tenant.slug, openKey);
    // More than the limit, none refused: the counters cannot be asked and the tenant chose availability.
    for (let i = 0; i < 5; i++) {
      const started = Date.now();
      expect((await echo(openClient)).isError).not.toBe(true);
      // Generous for a loaded machine, yet far from waiting on the unreachable Redis (no offline queue, 200 ms cap).
      expect(Date.now() - started).toBeLessThan(4_000);
    }
    expect(gatewayNoRedis.logs()).toContain('rate limits unchecked: Redis unavailable, tenant fails open');

    const closedClient = await connect(gatewayNoRedis.url, closed.tenant.slug, closedKey);
    const started = Date.now();
    const refused = await echo(closedClient).then(
      () => undefined,
      (error: unknown) => error as { code?: number; message: string; data?: Record<string, unknown> },
    );
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(refused?.code).toBe(UNAVAILABLE);
    expect(refused?.message).toMatch(/Rate limits cannot be checked right now/);
    expect(refused?.data).toMatchObject({ reason: 'rate_limits_unavailable', retryAfterSeconds: 1 });
    // Requests without limits (listing, ping) are not affected.
    expect((await closedClient.listTools()).tools.length).toBeGreaterThan(0);
    expect(gatewayNoRedis.logs()).toContain('calls refused: rate limits cannot be checked');
    await Promise.all([openClient.close(), closedClient.close()]);
  });

  it('limits calls that need approval before they are held: no approval is recorded for a call past the limit', async () => {
    const appDb = createPrismaClient({ url: ctx.databaseUrl });
    const withApprovals = await startTestGateway({ systemDb: db, appDb, redisUrl: ctx.redisUrl });
    try {
      const f = await fixture([
        {
          id: 'echo-needs-a-human',
          subjects: [{ type: 'authenticated' }],
          targets: [{ kind: 'tool', upstream: 'ks', name: 'echo' }],
          effect: 'require_approval',
          rateLimit: { scope: ['agent_client'], requests: 2, windowSeconds: 60 },
        },
      ]);
      const key = await f.agentKey();
      await withApprovals.dataPlane.refreshAll();
      const send = await rawSession(withApprovals.url, f.tenant.slug, key);
      // Two calls are held (they wait for a person); the third is over the rule's limit and refused at once.
      const held = [1, 2].map((id) => send(call(id, `held ${id}`)).catch(() => undefined));
      await waitFor(async () => (await db.approval.count({ where: { tenantId: f.tenant.id, status: 'pending' } })) === 2, { description: 'two held calls' });
      const third = await send(call(3, 'over the limit'));
      expect(third.status).toBe(429);
      expect(((await third.json()) as { error: { code: number } }).error.code).toBe(RATE_LIMITED);
      expect(await db.approval.count({ where: { tenantId: f.tenant.id } })).toBe(2);
      // Closing the gateway ends the held calls: answered, not left hanging (the finally closes it if a check failed).
      await withApprovals.close();
      await Promise.all(held);
    } finally {
      await withApprovals.close().catch(() => undefined);
      await appDb.$disconnect();
    }
  });
});
