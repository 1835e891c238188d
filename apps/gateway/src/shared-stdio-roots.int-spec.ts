import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ListRootsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentWithKey, startTestGateway, type TestGateway } from './testing/gateway-harness';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';

/**
 * A stdio process shared by two principals of a tenant (the harness bounds an upstream at two processes): a server
 * request carries no link to the call that caused it, so the gateway asks an agent only when every call in flight on
 * the process is that agent's session's (ADR 0008). The server here asks for roots while it lists resources.
 */
const server = path.resolve(__dirname, 'testing/roots-listing-server.mjs');
const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let aliceKey: string;
let bobKey: string;
const clients: Client[] = [];

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({
    data: { tenantId: tenant.id, name: 'files', toolPrefix: 'fs', transport: 'stdio', command: process.execPath, args: [server], connectTimeoutMs: 5_000, callTimeoutMs: 10_000 } as never,
  });
  aliceKey = (await createAgentWithKey(db, tenant.id, 'alice')).key;
  bobKey = (await createAgentWithKey(db, tenant.id, 'bob')).key;
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((client) => client.close().catch(() => undefined)));
  await gateway?.close();
  await db?.$disconnect();
});

/** An agent whose roots are `root`; `asked` records each time it is asked for them. */
async function agent(key: string, name: string, root: string, asked: string[]): Promise<Client> {
  const client = new Client({ name, version: '1.0.0' }, { capabilities: { roots: { listChanged: true } } });
  client.setRequestHandler(ListRootsRequestSchema, () => {
    asked.push(name);
    return { roots: [{ uri: root, name }] };
  });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  clients.push(client);
  return client;
}

describe('a server request on a stdio process two principals share', () => {
  it('goes to the agent whose listing caused it, and to no one while another principal\'s call is in flight', async () => {
    const asked: string[] = [];
    // Alice's first session starts process 1, her second process 2 (the bound); Bob's session then shares process 1.
    const alice = await agent(aliceKey, 'alice', 'file:///home/alice/secret-project', asked);
    await agent(aliceKey, 'alice-2', 'file:///home/alice/other', asked);
    const bob = await agent(bobKey, 'bob', 'file:///home/bob', asked);

    // Only Bob's listing in flight: his agent is asked, and his listing is of his roots. (Before, a process shared by
    // several sessions refused every server request no call with a handler of its own could take: an empty listing.)
    expect((await bob.listResources()).resources.map((resource) => resource.uri)).toEqual(['file:///home/bob/index']);
    expect(asked).toEqual(['bob']);

    // Alice's call on process 1 while Bob lists: either could have caused the roots/list, so it is refused. Before,
    // Alice's agent was asked, and her roots came back to Bob as his listing.
    const held = alice.callTool({ name: 'fs__hold', arguments: {} });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const listing = await bob.listResources().then(
      (result) => result.resources.map((resource) => resource.uri).join(' '),
      (error: Error) => `refused: ${error.message}`,
    );
    await held;
    expect(listing).not.toContain('alice');
    expect(asked).toEqual(['bob']);
  }, 30_000);
});
