/**
 * Policy enforcement end to end: the official MCP SDK client → gateway (in-process, real Postgres snapshots and
 * Redis notices) → the built demo upstreams. Listings are filtered per subject; denied calls get the gateway's
 * POLICY_DENIED JSON-RPC error; snapshot changes, refusals and missing snapshots behave as documented.
 * Needs `npx nx build demo-upstreams`.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, ResourceUpdatedNotificationSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { createSystemPrismaClient, type Prisma, type SystemPrismaClient } from '@portcullis/data/db';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { GATEWAY_RPC } from '@portcullis/gateway/core';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentWithKey, startDemoUpstreams, startTestGateway, type DemoUpstreams, type TestGateway } from './testing/gateway-harness';
import { writeActiveSnapshot, type FixturePolicy } from './testing/policy-fixtures';

const ctx = testContext();
let db: SystemPrismaClient;
let redis: Redis;
let demo: DemoUpstreams;
let gateway: TestGateway;
let tenant: TestTenant;
let bareTenant: TestTenant;
const agents: Record<'reader' | 'bot', { id: string; key: string }> = { reader: { id: '', key: '' }, bot: { id: '', key: '' } };
let bareKey: string;

async function makeAgent(t: TestTenant, name: string): Promise<{ id: string; key: string }> {
  const { agentId, key } = await createAgentWithKey(db, t.id, name);
  return { id: agentId, key };
}

function policy(extra: PolicyRuleSource[] = []): FixturePolicy {
  return {
    defaultEffect: 'deny',
    agentClientIds: [agents.reader.id, agents.bot.id],
    rules: [
      {
        id: 'reader-searches',
        subjects: [{ type: 'agent_client', agentClientId: agents.reader.id }],
        targets: [{ kind: 'tool', upstream: 'tickets', name: 'search_tickets' }],
        effect: 'allow',
      },
      {
        id: 'bot-runs-tickets',
        subjects: [{ type: 'agent_client', agentClientId: agents.bot.id }],
        targets: [
          { kind: 'tool', upstream: 'tickets', name: '*' },
          { kind: 'prompt', upstream: 'tickets', name: '*' },
          { kind: 'resource', upstream: 'tickets', uri: 'tickets://**' },
        ],
        effect: 'allow',
      },
      {
        id: 'bot-reads-docs',
        subjects: [{ type: 'agent_client', agentClientId: agents.bot.id }],
        targets: [{ kind: 'resource', upstream: 'files', uri: 'file:///docs/**' }],
        effect: 'allow',
      },
      { id: 'everyone-echoes', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'ks', name: 'echo' }], effect: 'allow' },
      { id: 'nobody-closes', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'tickets', name: 'close_ticket' }], effect: 'deny' },
      ...extra,
    ],
  };
}

/** Publishes the tenant's policy with the `extra` rules and waits until the gateway enforces it. */
async function enforce(extra: PolicyRuleSource[] = []): Promise<void> {
  const written = await writeActiveSnapshot(db, tenant.id, policy(extra), { publish: redis });
  await waitFor(() => gateway.dataPlane.policies.entry(tenant.id)?.version === written.version, { timeoutMs: 5_000 });
}

async function connect(slug: string, key: string) {
  const client = new Client({ name: 'policy-int-spec', version: '1.0.0' }, { capabilities: {} });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  return client;
}

async function rpcError(promise: Promise<unknown>): Promise<McpError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof McpError)) throw new Error(`expected an McpError, got ${String(error)}`);
  return error;
}

const names = (items: readonly { name: string }[]) => items.map((item) => item.name).sort();

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  redis = createRedisClient({ url: ctx.redisUrl, connectionName: 'policy-int-spec' });
  demo = await startDemoUpstreams();
  tenant = await createTestTenant(db);
  bareTenant = await createTestTenant(db);
  for (const t of [tenant, bareTenant]) {
    await db.upstream.create({ data: { tenantId: t.id, name: 'tickets', toolPrefix: 'tickets', transport: 'streamable_http', url: `${demo.url}/tickets/mcp` } });
    await db.upstream.create({ data: { tenantId: t.id, name: 'ks', toolPrefix: 'ks', transport: 'streamable_http', url: `${demo.url}/kitchen-sink/mcp` } });
  }
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'files', toolPrefix: 'files', transport: 'streamable_http', url: `${demo.url}/files/mcp` } });
  agents.reader = await makeAgent(tenant, 'reader');
  agents.bot = await makeAgent(tenant, 'bot');
  bareKey = (await makeAgent(bareTenant, 'bare')).key;
  await writeActiveSnapshot(db, tenant.id, policy());
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_POLICY_RECONCILE_MS: '60000' } });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await demo?.stop();
  redis?.disconnect();
  await db?.$disconnect();
});

describe('listings are filtered per subject', () => {
  it('shows each agent client only the tools it may call', async () => {
    const reader = await connect(tenant.slug, agents.reader.key);
    const bot = await connect(tenant.slug, agents.bot.key);
    expect(names((await reader.listTools()).tools)).toEqual(['ks__echo', 'tickets__search_tickets']);
    expect(names((await bot.listTools()).tools)).toEqual(['ks__echo', 'tickets__create_ticket', 'tickets__search_tickets']);
    // Prompts and resources follow the same rules (the bot has the tickets prompts and resources; the reader none;
    // nobody has the kitchen sink's).
    expect(names((await bot.listPrompts()).prompts)).toEqual(['tickets__triage_ticket']);
    expect((await reader.listPrompts()).prompts).toEqual([]);
    expect((await bot.listResources()).resources.length).toBeGreaterThan(0);
    expect((await reader.listResources()).resources).toEqual([]);
    await reader.close();
    await bot.close();
  });
});

describe('upstream instructions follow the policy', () => {
  it('tells an agent only about the upstreams it may use something on', async () => {
    const reader = await connect(tenant.slug, agents.reader.key);
    const bot = await connect(tenant.slug, agents.bot.key);
    const bare = await connect(bareTenant.slug, bareKey);
    const prefixes = (client: Client) => [...(client.getInstructions() ?? '').matchAll(/^(\w+): /gm)].map((match) => match[1]).sort();
    // The files server's instructions (and its name) reach the bot, which may read its docs, and not the reader.
    expect(prefixes(bot)).toEqual(['files', 'ks', 'tickets']);
    expect(prefixes(reader)).toEqual(['ks', 'tickets']);
    expect(bot.getInstructions()).toContain('files: A read-only virtual project tree.');
    // No policy in force: no instructions at all, as no listing.
    expect(bare.getInstructions()).toBeUndefined();
    await Promise.all([reader.close(), bot.close(), bare.close()]);
  });
});

describe('calls are decided by the policy', () => {
  it('runs an allowed call and refuses a denied one with POLICY_DENIED, the agent message and the snapshot version', async () => {
    const reader = await connect(tenant.slug, agents.reader.key);
    const echoed = await reader.callTool({ name: 'ks__echo', arguments: { message: 'allowed' } });
    expect(JSON.stringify(echoed.content)).toContain('allowed');
    expect(echoed.isError).not.toBe(true);

    const denied = await rpcError(reader.callTool({ name: 'tickets__create_ticket', arguments: { title: 'x', body: 'y', priority: 'low' } }));
    expect(denied.code).toBe(GATEWAY_RPC.POLICY_DENIED);
    expect(denied.message).toContain('Tool "create_ticket" on "tickets" was denied. This request is not permitted by the tenant\'s policy.');
    expect(denied.data).toMatchObject({ snapshotVersion: 1, traceId: expect.any(String) });
    // The rule that decided stays private.
    expect(JSON.stringify({ message: denied.message, data: denied.data })).not.toMatch(/nobody|reader-searches|deny:/);

    const bot = await connect(tenant.slug, agents.bot.key);
    const closed = await rpcError(bot.callTool({ name: 'tickets__close_ticket', arguments: { id: 1 } }));
    expect(closed.code).toBe(GATEWAY_RPC.POLICY_DENIED);
    // Another spelling of the denied tool (which an upstream matching names case-insensitively would run) is denied
    // too, though the bot's allow of every tickets tool matches it.
    const respelled = await rpcError(bot.callTool({ name: 'tickets__Close_TICKET', arguments: { id: 1 } }));
    expect(respelled.code).toBe(GATEWAY_RPC.POLICY_DENIED);
    const prompt = await rpcError(reader.getPrompt({ name: 'tickets__triage_ticket', arguments: { id: '1' } }));
    expect(prompt.code).toBe(GATEWAY_RPC.POLICY_DENIED);
    expect(prompt.message).toContain('Prompt "triage_ticket"');
    await reader.close();
    await bot.close();
  });

  it('enforces a new snapshot on live sessions as soon as its notice arrives, and tells their agents', async () => {
    let listening = false;
    const seeGet = (req: { method?: string; url?: string }) => void (listening ||= req.method === 'GET' && (req.url ?? '').includes(`/t/${tenant.slug}/mcp`));
    gateway.app.server.on('request', seeGet);
    const reader = await connect(tenant.slug, agents.reader.key);
    let toolChanges = 0;
    reader.setNotificationHandler(ToolListChangedNotificationSchema, () => void (toolChanges += 1));
    // Its standalone stream is open (the SDK client opens it once initialized) before the policy changes.
    await waitFor(() => listening, { timeoutMs: 5_000 });
    gateway.app.server.off('request', seeGet);
    await reader.listTools();
    await expect(reader.callTool({ name: 'tickets__create_ticket', arguments: { title: 'a', body: 'b', priority: 'low' } })).rejects.toThrow(/denied/);
    const written = await writeActiveSnapshot(
      db,
      tenant.id,
      policy([
        {
          id: 'reader-creates',
          subjects: [{ type: 'agent_client', agentClientId: agents.reader.id }],
          targets: [{ kind: 'tool', upstream: 'tickets', name: 'create_ticket' }],
          effect: 'allow',
        },
      ]),
      { publish: redis },
    );
    await waitFor(() => gateway.dataPlane.policies.entry(tenant.id)?.version === written.version, { timeoutMs: 5_000 });
    // The agent listens on its standalone stream: it is told its tools changed, and need not poll.
    await waitFor(() => toolChanges > 0, { timeoutMs: 5_000 });
    const created = await reader.callTool({ name: 'tickets__create_ticket', arguments: { title: 'a', body: 'b', priority: 'low' } });
    expect(created.isError).not.toBe(true);
    expect(names((await reader.listTools()).tools)).toContain('tickets__create_ticket');
    await reader.close();
  });

  it('evaluates conditions on the agent\'s IP address as the gateway sees it', async () => {
    const reader = await connect(tenant.slug, agents.reader.key);
    const written = await writeActiveSnapshot(
      db,
      tenant.id,
      policy([
        {
          id: 'reader-creates-from-loopback',
          subjects: [{ type: 'agent_client', agentClientId: agents.reader.id }],
          targets: [{ kind: 'tool', upstream: 'tickets', name: 'create_ticket' }],
          effect: 'allow',
          condition: 'inCidr(request.ip, "127.0.0.0/8")',
        },
        {
          id: 'reader-triages-from-the-office',
          subjects: [{ type: 'agent_client', agentClientId: agents.reader.id }],
          targets: [{ kind: 'prompt', upstream: 'tickets', name: 'triage_ticket' }],
          effect: 'allow',
          condition: 'inCidr(request.ip, "10.0.0.0/8")',
        },
      ]),
      { publish: redis },
    );
    await waitFor(() => gateway.dataPlane.policies.entry(tenant.id)?.version === written.version, { timeoutMs: 5_000 });
    // The test agent connects from 127.0.0.1.
    const created = await reader.callTool({ name: 'tickets__create_ticket', arguments: { title: 'ip', body: 'from loopback', priority: 'low' } });
    expect(created.isError).not.toBe(true);
    const triage = await rpcError(reader.getPrompt({ name: 'tickets__triage_ticket', arguments: { id: '1' } }));
    expect(triage.code).toBe(GATEWAY_RPC.POLICY_DENIED);
    await reader.close();
    await enforce();
  });

  it('stops passing on updates of a subscribed resource once a new snapshot revokes it', async () => {
    const bot = await connect(tenant.slug, agents.bot.key);
    const updated: string[] = [];
    bot.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => void updated.push(notification.params.uri));
    await bot.subscribeResource({ uri: 'tickets://summary' });
    const create = () => bot.callTool({ name: 'tickets__create_ticket', arguments: { title: 'watched', body: 'b', priority: 'low' } });
    // The tickets server sends the update on the call's stream, before its result.
    await create();
    expect(updated).toEqual(['tickets://summary']);
    await enforce([{ id: 'bot-loses-resources', subjects: [{ type: 'agent_client', agentClientId: agents.bot.id }], targets: [{ kind: 'resource', upstream: 'tickets', uri: 'tickets://**' }], effect: 'deny' }]);
    expect((await create()).isError).not.toBe(true);
    expect(updated).toEqual(['tickets://summary']);
    await bot.close();
    await enforce();
  });

  it('completes a resource template only with values naming what the principal may see', async () => {
    const bot = await connect(tenant.slug, agents.bot.key);
    const complete = async () =>
      (await bot.complete({ ref: { type: 'ref/resource', uri: 'tickets://ticket/{id}' }, argument: { name: 'id', value: 'TCK' } })).completion.values;
    const all = await complete();
    expect(all).toEqual(expect.arrayContaining(['TCK-1001', 'TCK-1002']));
    await enforce([{ id: 'bot-not-1001', subjects: [{ type: 'agent_client', agentClientId: agents.bot.id }], targets: [{ kind: 'resource', upstream: 'tickets', uri: 'tickets://ticket/TCK-1001' }], effect: 'deny' }]);
    expect(await complete()).toEqual(all.filter((value) => value !== 'TCK-1001'));
    await bot.close();
    await enforce();
  });

  it('refuses a tampered snapshot and keeps enforcing the previous one', async () => {
    const before = gateway.dataPlane.policies.entry(tenant.id);
    expect(before).toBeDefined();
    const active = await db.policySnapshot.findFirstOrThrow({ where: { tenantId: tenant.id, active: true } });
    const ir = { ...(active.ir as Record<string, unknown>), defaultEffect: 'allow' };
    await db.$transaction([
      db.policySnapshot.updateMany({ where: { tenantId: tenant.id, active: true }, data: { active: false } }),
      db.policySnapshot.create({
        data: { tenantId: tenant.id, version: active.version + 1, irVersion: active.irVersion, checksum: active.checksum, ir: ir as Prisma.InputJsonValue, active: true },
      }),
    ]);
    await redis.publish(CHANGE_CHANNELS.snapshots, tenant.id);
    await waitFor(() => gateway.logs().includes('policy snapshot refused; keeping the previous one'), { timeoutMs: 5_000 });
    expect(gateway.dataPlane.policies.entry(tenant.id)?.version).toBe(before?.version);
    const reader = await connect(tenant.slug, agents.reader.key);
    // Under the tampered snapshot (default allow) the prompt would be served.
    const denied = await rpcError(reader.getPrompt({ name: 'tickets__triage_ticket', arguments: { id: '1' } }));
    expect(denied.data).toMatchObject({ snapshotVersion: before?.version });
    await reader.close();
    // A good snapshot afterwards is taken again.
    const next = await writeActiveSnapshot(db, tenant.id, policy(), { publish: redis });
    await waitFor(() => gateway.dataPlane.policies.entry(tenant.id)?.version === next.version, { timeoutMs: 5_000 });
  });
});

describe('without Redis', () => {
  it('polls Postgres for snapshot changes instead of waiting for notices', async () => {
    const isolated = await startTestGateway({
      systemDb: db,
      redisUrl: 'redis://127.0.0.1:1',
      env: { GATEWAY_POLICY_RECONCILE_MS: '600000', GATEWAY_POLICY_POLL_MS: '200' },
    });
    try {
      const held = isolated.dataPlane.policies.entry(tenant.id);
      expect(held).toBeDefined();
      expect(isolated.logs()).toContain('polling the database instead');
      // Written without a notice (there is no Redis to carry one): the poll must find it.
      const next = await writeActiveSnapshot(db, tenant.id, policy());
      await waitFor(() => isolated.dataPlane.policies.entry(tenant.id)?.version === next.version, { timeoutMs: 3_000, description: 'the polled snapshot' });
    } finally {
      await isolated.close();
    }
  });
});

describe('a tenant without a policy snapshot', () => {
  it('lists nothing and denies every call with a clear message (fail safe)', async () => {
    const client = await connect(bareTenant.slug, bareKey);
    expect((await client.listTools()).tools).toEqual([]);
    const denied = await rpcError(client.callTool({ name: 'ks__echo', arguments: { message: 'x' } }));
    expect(denied.code).toBe(GATEWAY_RPC.POLICY_DENIED);
    expect(denied.message).toMatch(/No access policy is in force for this tenant yet/);
    expect(denied.data).toMatchObject({ snapshotVersion: null });
    expect(await client.ping()).toEqual({});
    await client.close();
  });
});
