/**
 * The order of the request hooks as the real data plane wires them, for a tenant with both a published policy and
 * tool pins (docs/adr/0013-tool-pinning.md, `pinningAroundPolicy`): pinning's listing filter, then the policy, then
 * pinning's checks. The official MCP SDK client → the gateway (in-process, real Postgres snapshots and pins) → the
 * built demo kitchen-sink server. Needs `npx nx build demo-upstreams`.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, type Tool } from '@modelcontextprotocol/sdk/types.js';
import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { definitionHash, INSTRUCTIONS_NAME, relayedInstructions } from '@portcullis/contracts/tool-pins';
import { createSystemPrismaClient, type Prisma, type SystemPrismaClient } from '@portcullis/data/db';
import { GATEWAY_RPC } from '@portcullis/gateway/core';
import { createTestTenant, present, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentWithKey, startDemoUpstreams, startTestGateway, type DemoUpstreams, type TestGateway } from './testing/gateway-harness';
import { writeActiveSnapshot, type FixturePolicy } from './testing/policy-fixtures';

/** The tenant's own name for the upstream (what its policy rules name); agents know it by its prefix only. */
const INTERNAL_NAME = 'kitchen-sink-internal-prod';
const PREFIX = 'ks';
const POLICY_REFUSAL = "This request is not permitted by the tenant's policy.";

/**
 * How a tool is pinned: `approved` (the definition it lists is the approved one), `changed` (approved before, lists
 * another since), `blocked`, `pending` (never approved), `rug_pulled` (the last test connection stored and approved an
 * older definition: only a listing shows that it changed).
 */
type PinState = 'approved' | 'changed' | 'blocked' | 'pending' | 'rug_pulled';

const ctx = testContext();
const clients: Client[] = [];
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let gateway: TestGateway;
/** What the kitchen-sink server lists, by tool name, read from it directly (not through the gateway). */
let advertised: ReadonlyMap<string, Tool>;
/** The instructions its initialize answer carries, read the same way. */
let advertisedInstructions: string;

/** The definition an administrator approved before the upstream changed it. */
function olderDefinition(name: string): Tool {
  const tool = present(advertised.get(name), `the kitchen-sink tool ${name}`);
  return { ...tool, description: `${tool.description ?? ''} (as approved last month)` };
}

function pinRow(tenantId: string, upstreamId: string, name: string, state: PinState): Prisma.UpstreamToolUncheckedCreateInput {
  const listed = present(advertised.get(name), `the kitchen-sink tool ${name}`);
  const definition = state === 'rug_pulled' ? olderDefinition(name) : listed;
  const contentHash = definitionHash('tool', definition);
  const approvedDefinition = state === 'changed' ? olderDefinition(name) : definition;
  const approved = state !== 'pending';
  return {
    tenantId,
    upstreamId,
    kind: 'tool',
    name,
    definition: definition as unknown as Prisma.InputJsonValue,
    contentHash,
    status: state === 'blocked' ? 'blocked' : approved ? 'approved' : 'pending',
    ...(approved
      ? { approvedHash: definitionHash('tool', approvedDefinition), approvedDefinition: approvedDefinition as unknown as Prisma.InputJsonValue, approvedAt: new Date() }
      : {}),
  };
}

/**
 * A fresh tenant with the kitchen-sink server as its one upstream, agents with API keys, the tool pins and the
 * policy `policyOf(agentIds)`, all in force on the gateway when this returns.
 */
async function pinnedTenant<A extends string>(
  agentNames: readonly A[],
  pins: Readonly<Record<string, PinState>>,
  policyOf: (agentIds: Readonly<Record<A, string>>) => FixturePolicy,
): Promise<{ tenant: TestTenant; keys: Readonly<Record<A, string>> }> {
  const tenant = await createTestTenant(db);
  const upstream = await db.upstream.create({
    data: { tenantId: tenant.id, name: INTERNAL_NAME, toolPrefix: PREFIX, transport: 'streamable_http', url: `${demo.url}/kitchen-sink/mcp` },
    select: { id: true },
  });
  await db.upstreamTool.createMany({ data: Object.entries(pins).map(([name, state]) => pinRow(tenant.id, upstream.id, name, state)) });
  const ids = {} as Record<A, string>;
  const keys = {} as Record<A, string>;
  for (const name of agentNames) {
    const { agentId, key } = await createAgentWithKey(db, tenant.id, name);
    ids[name] = agentId;
    keys[name] = key;
  }
  await writeActiveSnapshot(db, tenant.id, policyOf(ids));
  await gateway.dataPlane.refreshAll();
  return { tenant, keys };
}

const denyTools = (names: readonly string[], subjects: PolicyRuleSource['subjects'] = [{ type: 'authenticated' }]): PolicyRuleSource => ({
  id: 'deny-tools',
  subjects,
  targets: names.map((name) => ({ kind: 'tool' as const, upstream: INTERNAL_NAME, name })),
  effect: 'deny',
});

async function connect(tenant: TestTenant, key: string): Promise<Client> {
  const client = new Client({ name: 'hook-order-int-spec', version: '1.0.0' }, { capabilities: {} });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  clients.push(client);
  return client;
}

/** The JSON-RPC error a call ends with (the test fails if it succeeds). */
async function refusal(client: Client, name: string, args: Record<string, unknown> = {}): Promise<McpError> {
  const error = await client.callTool({ name: `${PREFIX}__${name}`, arguments: args }).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof McpError)) throw new Error(`expected ${name} to be refused with an McpError, got ${String(error)}`);
  return error;
}

async function echo(client: Client, message: string): Promise<string> {
  const result = await client.callTool({ name: `${PREFIX}__echo`, arguments: { message } });
  expect(result.isError).not.toBe(true);
  return JSON.stringify(result.content);
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  const direct = new Client({ name: 'hook-order-int-spec-direct', version: '1.0.0' }, { capabilities: {} });
  await direct.connect(new StreamableHTTPClientTransport(new URL(`${demo.url}/kitchen-sink/mcp`)));
  advertised = new Map((await direct.listTools()).tools.map((tool) => [tool.name, tool]));
  advertisedInstructions = present(direct.getInstructions(), 'the kitchen-sink instructions');
  await direct.close();
  // Snapshots, keys and pins are loaded by `refreshAll` as each test's tenant is made, not by timers or notices.
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_POLICY_RECONCILE_MS: '60000' } });
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((client) => client.close().catch(() => undefined)));
  await gateway?.close();
  await demo?.stop();
  await db?.$disconnect();
});

describe('a tenant with a policy and tool pins: pinning listing filter, then policy, then pinning checks', () => {
  it('refuses a tool the policy denies with the policy refusal whatever its pin, so pinning tells nothing of it', async () => {
    const denied: Readonly<Record<string, PinState>> = { observed_events: 'changed', add_tool: 'blocked', slow_count: 'pending', summarize_with_llm: 'approved' };
    const { tenant, keys } = await pinnedTenant(['agent'], denied, () => ({
      defaultEffect: 'allow',
      rules: [denyTools([...Object.keys(denied), 'no_such_tool'])],
    }));
    const agent = await connect(tenant, keys.agent);
    // A pinned tool the policy denies is refused exactly as a denied tool that is not pinned, or does not exist.
    for (const name of [...Object.keys(denied), 'no_such_tool']) {
      const error = await refusal(agent, name);
      expect(error.code, name).toBe(GATEWAY_RPC.POLICY_DENIED);
      expect(error.message, name).toBe(`MCP error ${GATEWAY_RPC.POLICY_DENIED}: Tool "${name}" on "${PREFIX}" was denied. ${POLICY_REFUSAL}`);
      expect(Object.keys(error.data as object).sort(), name).toEqual(['snapshotVersion', 'traceId']);
    }
  });

  it("refuses a tool the policy allows with pinning's refusal, naming the upstream by its prefix; runs the approved one", async () => {
    const { tenant, keys } = await pinnedTenant(
      ['agent'],
      { echo: 'approved', log_message: 'changed', increment_counter: 'blocked', list_roots: 'pending', observed_events: 'changed' },
      () => ({ defaultEffect: 'allow', rules: [denyTools(['observed_events'])] }),
    );
    const agent = await connect(tenant, keys.agent);
    const reasons: Record<string, string> = { log_message: 'tool_pin_changed', increment_counter: 'tool_pin_blocked', list_roots: 'tool_pin_not_approved' };
    for (const [name, reason] of Object.entries(reasons)) {
      const error = await refusal(agent, name);
      expect(error.code, name).toBe(GATEWAY_RPC.FORBIDDEN);
      expect(error.data, name).toMatchObject({ reason });
      expect(error.message, name).toContain(`Tool "${name}" of upstream "${PREFIX}" is unavailable: `);
      expect(error.message, name).not.toContain(INTERNAL_NAME);
    }
    expect(await echo(agent, 'pinned and allowed')).toContain('pinned and allowed');
    // Listed: what both let through (echo as approved, the unpinned tools under trust on first use); pinning hides the
    // tools it holds though the policy allows them, the policy hides the one it denies.
    const hidden = new Set([...Object.keys(reasons), 'observed_events']);
    const expected = [...advertised.keys()].filter((name) => !hidden.has(name)).map((name) => `${PREFIX}__${name}`);
    expect(expected).toContain(`${PREFIX}__echo`);
    expect((await agent.listTools()).tools.map((tool) => tool.name).sort()).toEqual(expected.sort());
    expect(await echo(agent, 'still callable after listing')).toContain('still callable after listing');
  });

  it('hashes a listing before the policy hides items from it: a changed tool one agent may not see is refused to another', async () => {
    const { tenant, keys } = await pinnedTenant(['reader', 'bot'], { echo: 'rug_pulled' }, (ids) => ({
      defaultEffect: 'allow',
      agentClientIds: [ids.reader, ids.bot],
      rules: [denyTools(['echo'], [{ type: 'agent_client', agentClientId: ids.reader }])],
    }));
    const bot = await connect(tenant, keys.bot);
    // No listing has passed through this replica: the call is judged by the stored (approved) definition.
    expect(await echo(bot, 'before any listing')).toContain('before any listing');
    const reader = await connect(tenant, keys.reader);
    expect((await reader.listTools()).tools.map((tool) => tool.name)).not.toContain(`${PREFIX}__echo`);
    // The reader's listing showed pinning what echo is now, though the policy hid echo from the reader.
    const error = await refusal(bot, 'echo', { message: 'after the rug pull' });
    expect(error.code).toBe(GATEWAY_RPC.FORBIDDEN);
    expect(error.data).toMatchObject({ reason: 'tool_pin_changed' });
  });
});

describe('upstream instructions: the policy, then their pin', () => {
  it('relays the approved text to a principal who may use the upstream, none to one the policy keeps off it, none once changed', async () => {
    const { tenant, keys } = await pinnedTenant(['reader', 'bot'], { echo: 'approved' }, (ids) => ({
      defaultEffect: 'allow',
      agentClientIds: [ids.reader, ids.bot],
      rules: [
        {
          id: 'reader-off-ks',
          subjects: [{ type: 'agent_client', agentClientId: ids.reader }],
          targets: [
            { kind: 'tool', upstream: INTERNAL_NAME, name: '*' },
            { kind: 'prompt', upstream: INTERNAL_NAME, name: '*' },
            { kind: 'resource', upstream: INTERNAL_NAME, uri: '**' },
          ],
          effect: 'deny',
        },
      ],
    }));
    const upstream = await db.upstream.findFirstOrThrow({ where: { tenantId: tenant.id }, select: { id: true } });
    const text = relayedInstructions(advertisedInstructions);
    const hashOf = (instructions: string) => definitionHash('instructions', { instructions });
    const pin = await db.upstreamTool.create({
      data: {
        tenantId: tenant.id,
        upstreamId: upstream.id,
        kind: 'instructions',
        name: INSTRUCTIONS_NAME,
        definition: { instructions: text },
        contentHash: hashOf(text),
        status: 'approved',
        approvedHash: hashOf(text),
        approvedDefinition: { instructions: text },
        approvedAt: new Date(),
      },
      select: { id: true },
    });
    await gateway.dataPlane.refreshAll();
    expect((await connect(tenant, keys.bot)).getInstructions()).toBe(`${PREFIX}: ${text}`);
    expect((await connect(tenant, keys.reader)).getInstructions()).toBeUndefined();
    // An administrator approved other text than the upstream now sends: held back (its tools still serve).
    const approvedEarlier = 'Use the echo tool only.';
    await db.upstreamTool.update({ where: { id: pin.id }, data: { approvedHash: hashOf(approvedEarlier), approvedDefinition: { instructions: approvedEarlier } } });
    await gateway.dataPlane.refreshAll();
    const bot = await connect(tenant, keys.bot);
    expect(bot.getInstructions()).toBeUndefined();
    expect(await echo(bot, 'tools still served')).toContain('tools still served');
  });
});
