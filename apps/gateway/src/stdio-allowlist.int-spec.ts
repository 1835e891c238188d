/**
 * GATEWAY_STDIO_COMMAND_ALLOWLIST through the real data plane (in-process gateway, real Postgres, the built demo
 * upstreams, the official SDK client): a stdio upstream whose command is not on the gateway's list is left out of its
 * tenant's registry, whatever the control plane allowed when it was saved; the tenant's other upstreams still serve.
 * Needs `npx nx build demo-upstreams`.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentWithKey, demoUpstreamTarget, startDemoUpstreams, startTestGateway, type DemoUpstreams, type TestGateway } from './testing/gateway-harness';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
const gateways: TestGateway[] = [];
let tenant: TestTenant;
let key: string;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'math', toolPrefix: 'math', ...demoUpstreamTarget(demo, 'math', 'stdio') } });
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'files', toolPrefix: 'files', ...demoUpstreamTarget(demo, 'files', 'streamable_http') } });
  ({ key } = await createAgentWithKey(db, tenant.id, 'stdio-allowlist'));
}, 60_000);

afterAll(async () => {
  await Promise.all(gateways.map((gateway) => gateway.close()));
  await demo?.stop();
  await db?.$disconnect();
});

async function prefixesListed(allowlist: string | undefined): Promise<string[]> {
  const gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: allowlist === undefined ? {} : { GATEWAY_STDIO_COMMAND_ALLOWLIST: allowlist } });
  gateways.push(gateway);
  const client = new Client({ name: 'stdio-allowlist-int-spec', version: '1.0.0' }, { capabilities: {} });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  try {
    return [...new Set((await client.listTools()).tools.map((tool) => tool.name.split('__')[0] ?? ''))].sort();
  } finally {
    await client.close();
  }
}

describe('GATEWAY_STDIO_COMMAND_ALLOWLIST', () => {
  it('leaves out a stdio upstream whose command is not on the list, and serves it when it is (or when no list is set)', async () => {
    expect(await prefixesListed('/usr/local/bin/some-other-server')).toEqual(['files']);
    expect(await prefixesListed(`/usr/local/bin/some-other-server,${process.execPath}`)).toEqual(['files', 'math']);
    expect(await prefixesListed(undefined)).toEqual(['files', 'math']);
  });
});
