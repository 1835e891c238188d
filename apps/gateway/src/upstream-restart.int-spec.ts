/**
 * An upstream that restarts forgets its MCP sessions and answers 404 to them. The MCP client must then start a new
 * session; the gateway does that for its agents' sessions without their noticing: the request refused with 404 (which
 * the upstream did not run) goes again on the new upstream session, on whichever replica serves it, and the new
 * upstream session is first told the agent's resource subscriptions and log level.
 * Needs `npx nx build demo-upstreams`.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LoggingMessageNotificationSchema, ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentWithKey, startDemoUpstreams, startTestGateway, type DemoUpstreams, type TestGateway } from './testing/gateway-harness';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let port: number;
let gatewayA: TestGateway;
let gatewayB: TestGateway;
let tenant: TestTenant;
let key: string;
let legacy: { slug: string; key: string };

const text = (result: unknown): string => ((result as { content?: { text?: string }[] }).content ?? []).map((item) => item.text ?? '').join('');

/** An SDK client on `base` that sends its session's requests wherever `route` says (gateway A or B). */
async function connect(route: () => string, as: { readonly slug: string; readonly key: string } = { slug: tenant.slug, key }) {
  const client = new Client({ name: 'restart-spec', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(`${gatewayA.url}/t/${as.slug}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${as.key}` } },
    fetch: (input, init) => fetch(String(input).replace(gatewayA.url, route()), init),
  });
  await client.connect(transport);
  return client;
}

/** The resource updates and log messages `client` receives from now on. */
function listen(client: Client): { readonly updated: string[]; readonly logged: unknown[] } {
  const updated: string[] = [];
  const logged: unknown[] = [];
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => void updated.push(notification.params.uri));
  client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => void logged.push(notification.params.data));
  return { updated, logged };
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  port = Number(new URL(demo.url).port);
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({
    data: { tenantId: tenant.id, name: 'ks', toolPrefix: 'ks', transport: 'streamable_http', url: `${demo.url}/kitchen-sink/mcp`, connectTimeoutMs: 3_000, callTimeoutMs: 10_000 } as never,
  });
  key = (await createAgentWithKey(db, tenant.id, 'restart-agent')).key;
  // Another tenant whose kitchen sink speaks the legacy HTTP+SSE transport.
  const legacyTenant = await createTestTenant(db);
  await writeActiveSnapshot(db, legacyTenant.id, ALLOW_ALL);
  await db.upstream.create({
    data: { tenantId: legacyTenant.id, name: 'lks', toolPrefix: 'lks', transport: 'sse', url: `${demo.url}/kitchen-sink/sse`, connectTimeoutMs: 3_000, callTimeoutMs: 10_000 } as never,
  });
  legacy = { slug: legacyTenant.slug, key: (await createAgentWithKey(db, legacyTenant.id, 'legacy-agent')).key };
  gatewayA = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
  gatewayB = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gatewayA?.close();
  await gatewayB?.close();
  await demo?.stop();
  await db?.$disconnect();
});

describe('an upstream that restarted (and forgot its sessions)', () => {
  it('is served again at once on a new upstream session, on the replica that met the 404 and on another one', async () => {
    let target = gatewayA.url;
    const client = await connect(() => target);
    expect(text(await client.callTool({ name: 'ks__echo', arguments: { message: 'before' } }))).toBe('before');
    // The same session on the other replica (it resumes the upstream session the record names).
    target = gatewayB.url;
    expect(text(await client.callTool({ name: 'ks__echo', arguments: { message: 'on b' } }))).toBe('on b');

    await demo.stop();
    demo = await startDemoUpstreams({ port });

    // Replica B meets the 404: the call goes through on a new upstream session, and the record now names it.
    expect(text(await client.callTool({ name: 'ks__echo', arguments: { message: 'after on b' } }))).toBe('after on b');
    expect(gatewayB.logs()).toContain('upstream session started again');
    // Listings have the upstream's tools again (before, it dropped out of every listing until a new agent session).
    expect((await client.listTools()).tools.map((tool) => tool.name)).toContain('ks__echo');
    // Replica A still holds the old upstream session: its first request meets the 404 too, and recovers the same way.
    target = gatewayA.url;
    expect(text(await client.callTool({ name: 'ks__echo', arguments: { message: 'after on a' } }))).toBe('after on a');
    expect(text(await client.callTool({ name: 'ks__echo', arguments: { message: 'again on a' } }))).toBe('again on a');
    // ...except that B's new upstream session was stored first: A ended the one it started and continues B's, so the
    // agent's session keeps one upstream session (A never records one of its own).
    expect(gatewayA.logs()).not.toContain('upstream session started again');
    await client.close();
  });

  it('keeps the agent\'s subscription and log level, set through one replica, on the new upstream session another replica starts', async () => {
    let target = gatewayA.url;
    const client = await connect(() => target);
    const { updated, logged } = listen(client);
    // Through replica A: subscribed to the kitchen sink's counter, and only errors logged.
    await client.subscribeResource({ uri: 'demo://counter' });
    await client.setLoggingLevel('error');
    await client.callTool({ name: 'ks__increment_counter', arguments: {} });
    await client.callTool({ name: 'ks__log_message', arguments: { level: 'info', message: 'quiet before' } });
    expect(updated).toEqual(['demo://counter']);
    expect(logged).toEqual([]);
    const startedBefore = gatewayB.logs().split('upstream session started again').length;

    await demo.stop();
    demo = await startDemoUpstreams({ port });

    // Replica B meets the 404 and starts the new upstream session: it is subscribed and set to "error" before the call.
    target = gatewayB.url;
    await client.callTool({ name: 'ks__increment_counter', arguments: {} });
    expect(gatewayB.logs().split('upstream session started again').length).toBe(startedBefore + 1);
    expect(updated).toEqual(['demo://counter', 'demo://counter']);
    await client.callTool({ name: 'ks__log_message', arguments: { level: 'info', message: 'quiet after' } });
    await client.callTool({ name: 'ks__log_message', arguments: { level: 'error', message: 'loud after' } });
    expect(logged).toEqual(['loud after']);
    expect(gatewayB.logs()).not.toContain('not told');
    await client.close();
  });

  it('subscribes the new legacy SSE session again after the upstream restart dropped its stream', async () => {
    const client = await connect(() => gatewayA.url, legacy);
    const { updated, logged } = listen(client);
    await client.subscribeResource({ uri: 'demo://counter' });
    await client.setLoggingLevel('error');

    await demo.stop();
    demo = await startDemoUpstreams({ port });

    // The dropped stream is noticed; the next call opens a new legacy session (a new server instance), told both first.
    const call = (name: string, args: Record<string, unknown>) => client.callTool({ name, arguments: args });
    const reached = async (): Promise<boolean> => {
      try {
        await call('lks__increment_counter', {});
        return true;
      } catch {
        return false;
      }
    };
    for (let attempt = 0; !(await reached()); attempt += 1) {
      if (attempt > 50) throw new Error('the legacy upstream was not reached again');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(updated).toContain('demo://counter');
    await call('lks__log_message', { level: 'info', message: 'quiet after' });
    await call('lks__log_message', { level: 'error', message: 'loud after' });
    expect(logged).toEqual(['loud after']);
    await client.close();
  });
});
