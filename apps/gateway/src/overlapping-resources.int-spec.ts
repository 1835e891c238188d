/**
 * Two upstreams serving the same resource URIs (two instances of the demo tickets server, prefixes `ta` and `tb`). The
 * gateway is the agent's one server: a URI or template is listed once, as the upstream its reads, subscriptions and
 * completions go to (the first by prefix). Before, the merged listings named each twice, and the second entry was a
 * resource the agent could never reach.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, demoUpstreamTarget, startDemoUpstreams, startTestGateway, type DemoUpstreams, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  for (const prefix of ['ta', 'tb']) {
    await db.upstream.create({
      data: { tenantId: tenant.id, name: `tickets-${prefix}`, toolPrefix: prefix, connectTimeoutMs: 10_000, callTimeoutMs: 15_000, ...demoUpstreamTarget(demo, 'tickets', 'streamable_http') } as never,
    });
  }
  ({ key } = await createAgentWithKey(db, tenant.id, 'overlap-agent'));
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await demo?.stop();
  await db?.$disconnect();
});

async function connect(): Promise<Client> {
  const client = new Client({ name: 'overlap', version: '1' }, { capabilities: {} });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  return client;
}

const repeated = (values: readonly string[]) => values.filter((value, index) => values.indexOf(value) !== index);

describe('two upstreams listing the same resource URIs', () => {
  it('resources/list names each URI once (the gateway is one server; a read of it reaches one upstream only)', async () => {
    const client = await connect();
    const { resources } = await client.listResources();
    const uris = resources.map((resource) => resource.uri);
    expect(uris).toContain('tickets://summary');
    expect(repeated(uris)).toEqual([]);
    await client.close();
  });

  it('resources/templates/list names each template once', async () => {
    const client = await connect();
    const { resourceTemplates } = await client.listResourceTemplates();
    const templates = resourceTemplates.map((template) => template.uriTemplate);
    expect(templates).toContain('tickets://ticket/{id}');
    expect(repeated(templates)).toEqual([]);
    await client.close();
  });

  it('lists the URI as the upstream its reads go to', async () => {
    const client = await connect();
    const closed = await client.callTool({ name: 'tb__close_ticket', arguments: { id: 'TCK-1001', resolution: 'closed on tb' } });
    expect(closed.isError).not.toBe(true);
    const { resources } = await client.listResources();
    expect(resources.filter((resource) => resource.uri === 'tickets://ticket/TCK-1001')).toHaveLength(1);
    // Served by ta, which the listing's entry is: tb's change is not what a read of the URI shows.
    const read = await client.readResource({ uri: 'tickets://ticket/TCK-1001' });
    expect(JSON.stringify(read.contents)).not.toContain('closed on tb');
    await client.close();
  });
});
