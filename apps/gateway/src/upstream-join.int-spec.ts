/**
 * An upstream that is down when an agent's session starts, or that a tenant adds while the session runs, joins the
 * session once it can be reached: on the agent's next listing, or, for an agent listening on its standalone stream,
 * by itself, with a `tools/list_changed` notice. Two gateway replicas share the session; the joined upstream session
 * is stored in its record, and the other replica uses that one. Needs `npx nx build demo-upstreams`.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ResourceUpdatedNotificationSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentWithKey, demoUpstreamTarget, freePort, startDemoUpstreams, startTestGateway, type DemoUpstreams, type TestGateway } from './testing/gateway-harness';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';

const ctx = testContext();
let db: SystemPrismaClient;
let redis: Redis;
let demo: DemoUpstreams;
let late: DemoUpstreams | undefined;
let lateSink: DemoUpstreams | undefined;
let sinkPort: number;
let sinks: TestTenant;
let sinksKey: string;
let latePort: number;
let gatewayA: TestGateway;
let gatewayB: TestGateway;
let tenant: TestTenant;
let key: string;

const text = (result: unknown): string => ((result as { content?: { text?: string }[] }).content ?? []).map((item) => item.text ?? '').join('');

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  redis = createRedisClient({ url: ctx.redisUrl, connectionName: 'upstream-join-spec' });
  demo = await startDemoUpstreams();
  latePort = await freePort();
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({
    data: { tenantId: tenant.id, name: 'ks', toolPrefix: 'ks', transport: 'streamable_http', url: `${demo.url}/kitchen-sink/mcp`, connectTimeoutMs: 3_000, callTimeoutMs: 10_000 } as never,
  });
  // Nothing listens there until the test starts it.
  await db.upstream.create({
    data: { tenantId: tenant.id, name: 'math', toolPrefix: 'm', transport: 'streamable_http', url: `http://127.0.0.1:${latePort}/math/mcp`, connectTimeoutMs: 2_000, callTimeoutMs: 10_000 } as never,
  });
  key = (await createAgentWithKey(db, tenant.id, 'join-agent')).key;
  // A second tenant: two kitchen sinks list demo://counter, and the one down at initialize has the prefix that routes
  // it first once joined.
  sinkPort = await freePort();
  sinks = await createTestTenant(db);
  await writeActiveSnapshot(db, sinks.id, ALLOW_ALL);
  await db.upstream.create({
    data: { tenantId: sinks.id, name: 'sink-z', toolPrefix: 'z', transport: 'streamable_http', url: `${demo.url}/kitchen-sink/mcp`, connectTimeoutMs: 3_000, callTimeoutMs: 10_000 } as never,
  });
  await db.upstream.create({
    data: { tenantId: sinks.id, name: 'sink-a', toolPrefix: 'a', transport: 'streamable_http', url: `http://127.0.0.1:${sinkPort}/kitchen-sink/mcp`, connectTimeoutMs: 2_000, callTimeoutMs: 10_000 } as never,
  });
  sinksKey = (await createAgentWithKey(db, sinks.id, 'unsubscribe-agent')).key;
  // Upstream registries reloaded twice a second, so that background joins (after each reload) come soon.
  const env = { GATEWAY_UPSTREAM_JOIN_RETRY_MS: '500', GATEWAY_SNAPSHOT_REFRESH_MS: '500' };
  gatewayA = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env });
  gatewayB = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env });
}, 60_000);

afterAll(async () => {
  await gatewayA?.close();
  await gatewayB?.close();
  await demo?.stop();
  await late?.stop();
  await lateSink?.stop();
  redis?.disconnect();
  await db?.$disconnect();
});

describe('upstreams joining a running session', () => {
  it('brings an upstream back from an outage at initialize, and one added later, to a listening agent on either replica; one removed leaves', async () => {
    let target = gatewayA.url;
    const client = new Client({ name: 'join-spec', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${gatewayA.url}/t/${tenant.slug}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${key}` } },
      fetch: (input, init) => fetch(String(input).replace(gatewayA.url, target), init),
    });
    let changes = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void (changes += 1));
    // The SDK client opens its standalone GET stream (on A) once initialized.
    await client.connect(transport);
    const names = async () => (await client.listTools()).tools.map((tool) => tool.name);
    expect((await names()).some((name) => name.startsWith('m__'))).toBe(false);
    expect(gatewayA.logs()).toContain('upstream dropped out of the request');

    // The math server comes up: the session gets it without listing, and the agent is told.
    late = await startDemoUpstreams({ port: latePort });
    await waitFor(() => changes >= 1, { timeoutMs: 10_000, description: 'tools/list_changed after the math server came up' });
    expect(await names()).toEqual(expect.arrayContaining(['ks__echo', 'm__add']));
    expect(gatewayA.logs()).toContain('upstream joined the session');
    // Replica B never opened the math upstream for this session: it resumes the session A stored.
    target = gatewayB.url;
    expect(await client.callTool({ name: 'm__add', arguments: { a: 2, b: 3 } })).toMatchObject({ structuredContent: { result: 5 } });

    // A stdio upstream configured while the session runs joins it the same way.
    target = gatewayA.url;
    const seen = changes;
    await db.upstream.create({
      data: { tenantId: tenant.id, name: 'tickets', toolPrefix: 'tk', ...demoUpstreamTarget(demo, 'tickets', 'stdio'), connectTimeoutMs: 10_000, callTimeoutMs: 10_000 } as never,
    });
    await redis.publish(CHANGE_CHANNELS.upstreams, tenant.id);
    // Told twice: the tenant's upstreams changed, and (once its process has started) the new one joined.
    await waitFor(() => changes >= seen + 2, { timeoutMs: 15_000, description: 'tools/list_changed after the tickets upstream was added and joined' });
    expect(await names()).toEqual(expect.arrayContaining(['ks__echo', 'm__add', 'tk__create_ticket']));
    target = gatewayB.url;
    const created = await client.callTool({ name: 'tk__create_ticket', arguments: { title: 'joined later', body: 'added while the session ran', priority: 'low' } });
    expect(created.isError).toBeFalsy();
    expect(text(created)).toContain('joined later');

    // An upstream the tenant removes leaves the listings, and the agent is told so too.
    const before = changes;
    await db.upstream.deleteMany({ where: { tenantId: tenant.id, name: 'math' } });
    await redis.publish(CHANGE_CHANNELS.upstreams, tenant.id);
    await waitFor(() => changes > before, { timeoutMs: 10_000, description: 'tools/list_changed after the math upstream was removed' });
    expect(await names()).not.toContain('m__add');
    await client.close();
  }, 60_000);

  it('ends a subscription made through the replica that joined the upstream, on that upstream, when the other replica is asked', async () => {
    let target = gatewayA.url;
    const client = new Client({ name: 'join-unsubscribe-spec', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${gatewayA.url}/t/${sinks.slug}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${sinksKey}` } },
      // No standalone stream: replica A then has no reason to join or adopt the late upstream by itself.
      fetch: (input, init) => (init?.method === 'GET' ? Promise.resolve(new Response(null, { status: 405 })) : fetch(String(input).replace(gatewayA.url, target), init)),
    });
    let updates = 0;
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, () => void (updates += 1));
    await client.connect(transport);
    // Replica A learns where the counter is while sink-z is the only server that lists it.
    expect((await client.readResource({ uri: 'demo://counter' })).contents).toHaveLength(1);
    lateSink = await startDemoUpstreams({ port: sinkPort });

    // Replica B joins sink-a on a listing, and the subscription is made there.
    target = gatewayB.url;
    await waitFor(async () => (await client.listTools()).tools.some((tool) => tool.name === 'a__increment_counter'), {
      timeoutMs: 10_000,
      description: 'sink-a joined through replica B',
    });
    await client.subscribeResource({ uri: 'demo://counter' });
    await client.callTool({ name: 'a__increment_counter', arguments: {} });
    await waitFor(() => updates === 1, { timeoutMs: 5_000, description: 'the update of the subscribed counter' });

    // Replica A never joined sink-a: the unsubscribe still goes there, not to sink-z, which holds no subscription.
    target = gatewayA.url;
    await expect(client.unsubscribeResource({ uri: 'demo://counter' })).resolves.toEqual({});
    target = gatewayB.url;
    await client.callTool({ name: 'a__increment_counter', arguments: {} });
    const counted = await client.callTool({ name: 'a__increment_counter', arguments: {} });
    expect(counted).toMatchObject({ structuredContent: { value: 3 } });
    expect(updates).toBe(1);
    await client.close();
  }, 60_000);
});
