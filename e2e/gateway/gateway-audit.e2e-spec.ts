/**
 * Audit of the MCP request path, end to end: the official MCP SDK client → gateway (in-process, real policy
 * snapshot, rate limits and audit hooks) → the built demo upstreams; the gateway's audit emitter → BullMQ (real
 * Redis) → the audit pipeline of libs/audit/pipeline (BullMQ worker, batcher, Postgres store as the RLS role) →
 * rows in audit_events. Needs `npx nx build demo-upstreams`.
 */
import 'reflect-metadata';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { NestFactory } from '@nestjs/core';
import type { INestApplicationContext } from '@nestjs/common';
import { PostgresAuditEventStore } from '@portcullis/audit/core';
import { AuditPipelineModule } from '@portcullis/audit/pipeline';
import { generateApiKey, hashApiKey } from '@portcullis/auth/api-keys';
import type { TenantSettingsInput } from '@portcullis/contracts/api';
import { QUEUES } from '@portcullis/contracts/jobs';
import { POLICY_IR_VERSION, type PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { createPrismaClient, createSystemPrismaClient, type PortcullisPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { compile, serializeSnapshot } from '@portcullis/policy/engine';
import { createTestTenant, testContext, waitFor } from '@portcullis/shared/util-testing';
import { Queue } from 'bullmq';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoUpstreams, startTestGateway, type DemoUpstreams, type TestGateway } from '../../apps/gateway/src/testing/gateway-harness';

const ctx = testContext();
const prefix = `e2e-gwaudit-${randomBytes(4).toString('hex')}`;
let db: SystemPrismaClient;
let appDb: PortcullisPrismaClient;
let demo: DemoUpstreams;
let worker: INestApplicationContext;
let gateway: TestGateway;
/** Its audit queue is a closed port and it has no spool directory: events cannot be kept for sure. */
let gatewayAuditDown: TestGateway;

// Secrets an agent might put into arguments; none may reach the audit trail.
const SECRETS = {
  bearer: 'Bearer s3cr3t-bearer-value-0123456789',
  apiKey: 'pcs_livekey_0123456789abcdefghij',
  password: 'hunter2-is-not-a-password',
  card: '4111111111111111',
};

async function tenantWith(rules: PolicyRuleSource[], settings: TenantSettingsInput) {
  const tenant = await createTestTenant(db);
  await db.tenant.update({ where: { id: tenant.id }, data: { settings: settings as object } });
  const upstream = await db.upstream.create({
    data: { tenantId: tenant.id, name: 'ks', toolPrefix: 'ks', transport: 'streamable_http', url: `${demo.url}/kitchen-sink/mcp`, connectTimeoutMs: 3_000, callTimeoutMs: 10_000 },
  });
  const compiled = compile({
    tenantId: tenant.id,
    version: 1,
    defaultEffect: 'allow',
    rules,
    upstreams: [{ name: 'ks', tools: [{ kind: 'tool', name: 'echo' }, { kind: 'tool', name: 'confirm_action' }] }],
  });
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  const ir = JSON.parse(serializeSnapshot(compiled.snapshot)) as { checksum: string };
  await db.policySnapshot.create({ data: { tenantId: tenant.id, version: 1, irVersion: POLICY_IR_VERSION, checksum: ir.checksum, ir, active: true } });
  const agent = await db.agentClient.create({ data: { tenantId: tenant.id, name: 'audited-agent' } });
  const key = generateApiKey();
  const apiKey = await db.apiKey.create({ data: { tenantId: tenant.id, name: 'audited', keyHash: hashApiKey(key), displayPrefix: key.slice(0, 10), agentClientId: agent.id } });
  return { tenant, upstream, agent, key, apiKeyId: apiKey.id };
}

/** An SDK client that also counts the JSON-RPC requests it sends (each must become exactly one event). */
async function connect(base: string, slug: string, key: string) {
  const sent: string[] = [];
  const counting: typeof fetch = async (input, init) => {
    if (init?.method === 'POST' && typeof init.body === 'string') {
      const body = JSON.parse(init.body) as unknown;
      for (const message of Array.isArray(body) ? body : [body]) {
        const m = message as { id?: unknown; method?: unknown };
        if (m.id !== undefined && typeof m.method === 'string') sent.push(m.method);
      }
    }
    return fetch(input, init);
  };
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/t/${slug}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
    fetch: counting,
  });
  const client = new Client({ name: 'audit-e2e', version: '1.0.0' }, { capabilities: {} });
  await client.connect(transport);
  return { client, transport, sent };
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  appDb = createPrismaClient({ url: ctx.databaseUrl });
  demo = await startDemoUpstreams();
  worker = await NestFactory.createApplicationContext(
    AuditPipelineModule.forRoot({
      redisUrl: ctx.redisUrl,
      queuePrefix: prefix,
      concurrency: 200,
      batch: { maxBatch: 200, lingerMs: 10, maxInFlight: 2 },
      retry: { maxAttempts: 3, baseMs: 50 },
      lock: { durationMs: 5_000, stalledIntervalMs: 5_000 },
      store: { useFactory: () => new PostgresAuditEventStore(appDb) },
    }),
    { logger: ['error'] },
  );
  await worker.init();
  gateway = await startTestGateway({
    systemDb: db,
    redisUrl: ctx.redisUrl,
    env: { GATEWAY_AUDIT_ENABLED: 'true', QUEUE_PREFIX: prefix, GATEWAY_AUDIT_FLUSH_MS: '20' },
  });
  gatewayAuditDown = await startTestGateway({
    systemDb: db,
    redisUrl: ctx.redisUrl,
    env: { GATEWAY_AUDIT_ENABLED: 'true', GATEWAY_AUDIT_REDIS_URL: 'redis://127.0.0.1:1', QUEUE_PREFIX: prefix, GATEWAY_AUDIT_FLUSH_MS: '20' },
  });
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await gatewayAuditDown?.close();
  await worker?.close();
  const queue = new Queue(QUEUES.audit, { connection: { url: ctx.redisUrl }, prefix });
  await queue.obliterate({ force: true }).catch(() => undefined);
  await queue.close();
  await demo?.stop();
  await appDb?.$disconnect();
  await db?.$disconnect();
});

describe('gateway audit events (SDK client → gateway → BullMQ → audit pipeline → Postgres)', () => {
  it('stores exactly one redacted event per MCP request of a session, with its actor, key, decision and outcome; the key shows its last use', async () => {
    const { tenant, upstream, agent, key, apiKeyId } = await tenantWith(
      [
        {
          id: 'echo-twice-a-minute',
          subjects: [{ type: 'authenticated' }],
          targets: [{ kind: 'tool', upstream: 'ks', name: 'echo' }],
          effect: 'allow',
          rateLimit: { scope: ['agent_client', 'tool'], requests: 2, windowSeconds: 60 },
        },
        { id: 'no-confirmations', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'ks', name: 'confirm_action' }], effect: 'deny' },
      ],
      { audit: { results: 'full', redactPaths: ['$.arguments.card.number'] } },
    );
    await gateway.dataPlane.refreshAll();
    const { client, transport, sent } = await connect(gateway.url, tenant.slug, key);
    const sessionId = transport.sessionId;
    await client.listTools();
    const args = {
      message: `please use ${SECRETS.bearer} for this`,
      password: SECRETS.password,
      options: { apiKey: SECRETS.apiKey, note: `key ${SECRETS.apiKey}` },
      card: { number: SECRETS.card, holder: 'Ada' },
    };
    const echoed = await client.callTool({ name: 'ks__echo', arguments: args });
    expect(JSON.stringify(echoed)).toContain(SECRETS.bearer); // the agent gets its answer unchanged
    await client.callTool({ name: 'ks__echo', arguments: { message: 'second' } });
    await expect(client.callTool({ name: 'ks__echo', arguments: { message: 'third' } })).rejects.toThrow(/-32029/);
    await expect(client.callTool({ name: 'ks__confirm_action', arguments: { action: 'x' } })).rejects.toThrow(/denied/);
    await expect(client.callTool({ name: 'zz__nope', arguments: {} })).rejects.toThrow(/Unknown tool/);
    await client.ping();
    await client.listPrompts();
    await client.close();
    expect(sent).toEqual(['initialize', 'tools/list', 'tools/call', 'tools/call', 'tools/call', 'tools/call', 'tools/call', 'ping', 'prompts/list']);

    await gateway.dataPlane.audit?.flush();
    const rows = await waitFor(
      async () => {
        const stored = await db.auditEvent.findMany({ where: { tenantId: tenant.id }, orderBy: { seq: 'asc' } });
        return stored.length >= sent.length ? stored : undefined;
      },
      { timeoutMs: 20_000, description: 'one audit event per request' },
    );
    // Nothing more arrives later.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await db.auditEvent.count({ where: { tenantId: tenant.id } })).toBe(sent.length);

    expect(rows.map((r) => r.method).sort()).toEqual([...sent].sort());
    expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
    for (const row of rows) {
      expect(row).toMatchObject({ kind: 'mcp', agentClientId: agent.id, apiKeyId, actorUserId: null, mcpSessionId: sessionId });
      expect(row.traceId).toMatch(/\S/);
      expect(row.latencyMs).toBeGreaterThanOrEqual(0);
      expect(row.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/); // UUIDv7: time-ordered
    }

    const calls = rows.filter((r) => r.method === 'tools/call');
    const byOutcome = (outcome: string) => calls.filter((r) => r.outcome === outcome);
    expect(byOutcome('ok')).toHaveLength(2);
    const [first] = byOutcome('ok').sort((a, b) => a.occurredAt.getTime() - b.occurredAt.getTime());
    expect(first).toMatchObject({ tool: 'ks__echo', upstreamId: upstream.id, decision: 'allow', snapshotVersion: 1, errorCode: null });
    const stored = first?.arguments as { arguments: Record<string, unknown>; result: { content: { text: string }[] } };
    expect(stored.arguments).toEqual({
      message: 'please use [redacted] for this',
      password: '[redacted]',
      options: { apiKey: '[redacted]', note: 'key [redacted]' },
      card: { number: '[redacted]', holder: 'Ada' },
    });
    expect(stored.result.content[0]?.text).toBe('please use [redacted] for this');

    const [limited] = byOutcome('rate_limited');
    expect(limited).toMatchObject({ tool: 'ks__echo', decision: 'allow', snapshotVersion: 1, errorCode: '-32029' });
    expect(limited?.reason).toMatch(/Rate limit exceeded: 2 requests per 60 s/);
    const [denied] = byOutcome('denied');
    expect(denied).toMatchObject({ tool: 'ks__confirm_action', decision: 'deny', snapshotVersion: 1, errorCode: '-32030' });
    const [unknown] = byOutcome('error');
    expect(unknown).toMatchObject({ tool: null, decision: null, errorCode: '-32602' });
    expect(rows.find((r) => r.method === 'initialize')?.arguments).toMatchObject({ arguments: { clientInfo: { name: 'audit-e2e' } } });

    const everything = JSON.stringify(rows, (_, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
    for (const secret of Object.values(SECRETS)) expect(everything).not.toContain(secret.replace(/^Bearer /, ''));

    // The audit worker stamped the key's last use (in the transaction of its first batch; later ones within the minute
    // leave it): what the control plane's API shows as `lastUsedAt`.
    const times = rows.map((r) => r.occurredAt.getTime());
    const { lastUsedAt } = await db.apiKey.findUniqueOrThrow({ where: { id: apiKeyId }, select: { lastUsedAt: true } });
    expect(lastUsedAt).not.toBeNull();
    expect(lastUsedAt?.getTime()).toBeGreaterThanOrEqual(Math.min(...times));
    expect(lastUsedAt?.getTime()).toBeLessThanOrEqual(Math.max(...times));
  });

  it('keeps only the shape of results in metadata mode', async () => {
    const { tenant, key } = await tenantWith([], { audit: { results: 'metadata' } });
    await gateway.dataPlane.refreshAll();
    const { client } = await connect(gateway.url, tenant.slug, key);
    await client.callTool({ name: 'ks__echo', arguments: { message: 'visible argument, hidden result' } });
    await client.close();
    await gateway.dataPlane.audit?.flush();
    const row = await waitFor(
      async () => (await db.auditEvent.findFirst({ where: { tenantId: tenant.id, method: 'tools/call' } })) ?? undefined,
      { timeoutMs: 20_000, description: 'the call event' },
    );
    expect(row.arguments).toEqual({ arguments: { message: 'visible argument, hidden result' }, result: { content: { count: 1, types: ['text'] } } });
  });

  it('answers and audits a call whose arguments are nested too deeply to forward or copy', async () => {
    const { tenant, key } = await tenantWith([], { audit: { results: 'metadata' } });
    await gateway.dataPlane.refreshAll();
    const { client, transport } = await connect(gateway.url, tenant.slug, key);
    // Sent as text: the SDK client could not serialise it either. 40 KB, under the body limit.
    const body = `{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"name":"ks__echo","arguments":{"a":${'['.repeat(20_000)}1${']'.repeat(20_000)}}}}`;
    const res = await fetch(`${gateway.url}/t/${tenant.slug}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        accept: 'application/json, text/event-stream',
        'content-type': 'application/json',
        'mcp-session-id': transport.sessionId ?? '',
        'mcp-protocol-version': '2025-06-18',
      },
      body,
    });
    expect(res.status).toBe(200);
    const answer = (await res.json()) as { id: number; error?: { code: number; message: string } };
    expect(answer).toMatchObject({ id: 77, error: { code: -32602, message: 'Invalid params: nested too deeply' } });
    // The gateway goes on serving the session.
    expect((await client.callTool({ name: 'ks__echo', arguments: { message: 'after' } })).isError).not.toBe(true);
    await client.close();
    await gateway.dataPlane.audit?.flush();
    const row = await waitFor(
      async () => (await db.auditEvent.findFirst({ where: { tenantId: tenant.id, method: 'tools/call', arguments: { path: ['arguments', 'unserialisable'], equals: true } } })) ?? undefined,
      { timeoutMs: 20_000, description: 'the deep call event' },
    );
    expect(row).toMatchObject({ outcome: 'error', errorCode: '-32602', tool: 'ks__echo' });
  });

  it('audits a call whose rate limits could not be checked (counters unreachable, tenant fails open)', async () => {
    const degraded = await startTestGateway({
      systemDb: db,
      redisUrl: ctx.redisUrl,
      env: { GATEWAY_AUDIT_ENABLED: 'true', QUEUE_PREFIX: prefix, GATEWAY_AUDIT_FLUSH_MS: '20', GATEWAY_RATE_LIMIT_REDIS_URL: 'redis://127.0.0.1:1', GATEWAY_RATE_LIMIT_TIMEOUT_MS: '200' },
    });
    try {
      const { tenant, key } = await tenantWith(
        [{ id: 'limited', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'ks', name: 'echo' }], effect: 'allow', rateLimit: { scope: ['tool'], requests: 1, windowSeconds: 60 } }],
        { rateLimits: { failMode: 'open' } },
      );
      await degraded.dataPlane.refreshAll();
      const { client } = await connect(degraded.url, tenant.slug, key);
      expect((await client.callTool({ name: 'ks__echo', arguments: { message: 'unchecked' } })).isError).not.toBe(true);
      await client.close();
      await degraded.dataPlane.audit?.flush();
      const row = await waitFor(
        async () => (await db.auditEvent.findFirst({ where: { tenantId: tenant.id, method: 'tools/call' } })) ?? undefined,
        { timeoutMs: 20_000, description: 'the call event' },
      );
      expect(row).toMatchObject({ outcome: 'ok', decision: 'allow' });
      expect(row.reason).toMatch(/rate limits not enforced: counters unavailable \(tenant fails open\)/);
      expect(degraded.logs()).toContain('rate limits unchecked');
    } finally {
      await degraded.close();
    }
  });

  it('refuses calls and new sessions of a fail-closed tenant while its events cannot be kept; a fail-open tenant goes on', async () => {
    const closed = await tenantWith([], { audit: { failMode: 'closed' } });
    const open = await tenantWith([], { audit: { failMode: 'open' } });
    await gatewayAuditDown.dataPlane.refreshAll();
    const openSession = await connect(gatewayAuditDown.url, open.tenant.slug, open.key);
    // Opened before the gateway has found out that the queue is unreachable.
    const closedSession = await connect(gatewayAuditDown.url, closed.tenant.slug, closed.key);
    // The first flush finds the queue unreachable.
    await gatewayAuditDown.dataPlane.audit?.flush();
    expect(gatewayAuditDown.dataPlane.audit?.stats().redis).toBe('down');
    expect((await openSession.client.callTool({ name: 'ks__echo', arguments: { message: 'fine' } })).isError).not.toBe(true);

    const started = Date.now();
    const refused = await closedSession.client.callTool({ name: 'ks__echo', arguments: { message: 'not without a record' } }).then(
      () => undefined,
      (error: unknown) => error as { code?: number; message: string; data?: Record<string, unknown> },
    );
    // Refused at once: under the emitter's 2 s send timeout, so a refusal that waited on a send attempt still fails
    // this, with more room than before for the round trip on a loaded machine.
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(refused?.code).toBe(-32053);
    expect(refused?.message).toMatch(/audit trail cannot record calls right now/);
    expect(refused?.data).toMatchObject({ reason: 'audit_unavailable' });
    expect(gatewayAuditDown.logs()).toContain('the audit trail cannot take events and the tenant fails closed');

    // A new session is refused the same way (HTTP 503 around the JSON-RPC error), before any upstream is contacted.
    const noSession = await connect(gatewayAuditDown.url, closed.tenant.slug, closed.key).then(
      () => undefined,
      (error: unknown) => error as { code?: number; message: string },
    );
    expect(noSession?.code).toBe(503);
    expect(noSession?.message).toMatch(/audit trail cannot record calls right now/);
    await Promise.all([openSession.client.close(), closedSession.client.close()]);
  });
});
