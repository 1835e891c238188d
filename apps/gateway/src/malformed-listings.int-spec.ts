/**
 * An upstream listing items that break MCP's schema (a tool without an `inputSchema` of `type: "object"`, a resource
 * without a `name`) must not take the aggregated listing down: the official SDK client checks what a server lists, and
 * one such item made `listTools()` throw, so the agent saw none of the other upstreams' items either (found by review).
 * The gateway leaves such items out, or only their faulty part where it is not essential (a description that is no
 * string, a `lastModified` the SDK reads more strictly than the specification: found by re-review), and logs it.
 */
import type { Server } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, initializeResult, startJsonUpstream, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;
const servers: Server[] = [];

function upstreamWith(sessionId: string, tools: unknown[], resources: unknown[]) {
  return startJsonUpstream({
    sessionId,
    onRequest: (request) => {
      const { method } = request.message;
      if (method === 'initialize') request.answer({ result: initializeResult(request, sessionId, { capabilities: { tools: {}, resources: {} } }) });
      else if (method === 'tools/list') request.answer({ result: { tools } });
      else if (method === 'resources/list') request.answer({ result: { resources } });
      else if (method === 'resources/templates/list') request.answer({ result: { resourceTemplates: [] } });
      else if (method === 'resources/read') request.answer({ result: { contents: [{ uri: String(request.message.params?.['uri']), text: 'a,b' }] } });
      else request.answer({ result: { content: [{ type: 'text', text: 'ok' }] } });
    },
  });
}

beforeAll(async () => {
  const good = await upstreamWith('good-1', [{ name: 'fine', inputSchema: { type: 'object' } }], [{ uri: 'file:///good.txt', name: 'good.txt' }]);
  const bad = await upstreamWith('bad-1', [
      { name: 'schemaless' },
      { name: 'stringy', inputSchema: { type: 'string' } },
      { name: 'valid', inputSchema: { type: 'object' } },
      { name: 'described', description: 42, inputSchema: { type: 'object' } },
      // Two of one name, the first left out: the second is listed (found by re-review).
      { name: 'dup', inputSchema: { type: 'string' } },
      { name: 'dup', inputSchema: { type: 'object' } },
      // An outputSchema the SDK client's Ajv cannot compile made listTools() throw (found by re-review).
      { name: 'dangling', inputSchema: { type: 'object' }, outputSchema: { type: 'object', properties: { when: { $ref: '#/$defs/Timestamp' } } } },
    ],
    [
      { uri: 'file:///nameless.txt' },
      { uri: 'file:///valid.txt', name: 'valid' },
      // Python's naive datetime.isoformat(): ISO 8601, which the SDK's date-time check refuses without an offset.
      { uri: 'file:///report.csv', name: 'report.csv', annotations: { lastModified: '2025-01-12T15:00:58.123456', priority: 0.5 } },
    ],
  );
  servers.push(good.server, bad.server);
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  ({ key } = await createAgentWithKey(db, tenant.id, 'schema-agent'));
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'good', toolPrefix: 'good', transport: 'streamable_http', url: good.url, connectTimeoutMs: 5_000, callTimeoutMs: 5_000 } as never });
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'bad', toolPrefix: 'bad', transport: 'streamable_http', url: bad.url, connectTimeoutMs: 5_000, callTimeoutMs: 5_000 } as never });
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await db?.$disconnect();
  for (const server of servers) await new Promise((resolve) => server.close(resolve));
});

describe('an upstream listing items that break MCP\'s schema', () => {
  it('leaves the other upstreams\' tools listable by the SDK client, its own bad tools left out and logged', async () => {
    const client = new Client({ name: 'schema-agent', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
    try {
      const listed = await client.listTools();
      expect(listed.tools.map((tool) => tool.name)).toEqual(['bad__valid', 'bad__described', 'bad__dup', 'good__fine']);
      // The description that is no string is left out, the tool kept.
      expect(listed.tools.find((tool) => tool.name === 'bad__described')).not.toHaveProperty('description');
      expect(gateway.logs()).toContain('at inputSchema');
      expect(gateway.logs()).toContain('at description; listed without it');
      expect(gateway.logs()).toContain('outputSchema cannot be compiled');
    } finally {
      await client.close();
    }
  });

  it('(a resource without a name) leaves the other upstreams\' resources listable by the SDK client', async () => {
    const client = new Client({ name: 'schema-agent', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
    try {
      const listed = await client.listResources();
      expect(listed.resources.map((resource) => resource.uri)).toEqual(['file:///valid.txt', 'file:///report.csv', 'file:///good.txt']);
      // Only the date the SDK would refuse is left out, and the resource reads.
      expect(listed.resources.find((resource) => resource.uri === 'file:///report.csv')?.annotations).toEqual({ priority: 0.5 });
      expect((await client.readResource({ uri: 'file:///report.csv' })).contents).toEqual([{ uri: 'file:///report.csv', text: 'a,b' }]);
    } finally {
      await client.close();
    }
  });
});
