/**
 * The public reference server `@modelcontextprotocol/server-everything` (pinned in devDependencies) as a
 * stdio upstream, driven through the gateway by the official SDK client: listings, tools (echo, sum, a
 * long-running operation with progress, sampling), prompts with completion, and resources.
 *
 * The gateway spawns whatever stdio command an upstream row names; which commands may be configured is
 * the control plane's stdio allowlist (CONTROL_PLANE_STDIO_COMMAND_ALLOWLIST), not involved here because
 * the test writes the row itself.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;

// The package is ESM-only with no `main`: find its directory through its package.json.
const everythingMain = path.join(
  path.dirname(createRequire(__filename).resolve('@modelcontextprotocol/server-everything/package.json')),
  'dist',
  'index.js',
);

function text(result: unknown): string {
  const content = (result as { content?: { text?: string }[] }).content ?? [];
  return content.map((item) => item.text ?? '').join('');
}

async function connect(): Promise<Client> {
  const client = new Client(
    { name: 'everything-spec', version: '1.0.0' },
    { capabilities: { sampling: {} } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
    role: 'assistant',
    content: {
      type: 'text',
      text: `sampled: ${JSON.stringify(request.params.messages[0]?.content).slice(0, 80)}`,
    },
    model: 'everything-spec-model',
  }));
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${key}` } },
    }),
  );
  return client;
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({
    data: {
      tenantId: tenant.id,
      name: 'everything',
      toolPrefix: 'ev',
      transport: 'stdio',
      command: process.execPath,
      args: [everythingMain, 'stdio'],
      connectTimeoutMs: 15_000,
      callTimeoutMs: 15_000,
    } as never,
  });
  ({ key } = await createAgentWithKey(db, tenant.id, 'everything-agent'));
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await db?.$disconnect();
});

describe('@modelcontextprotocol/server-everything over stdio behind the gateway', () => {
  it('lists its tools, prompts and resources with the upstream prefix', async () => {
    const client = await connect();
    expect(client.getServerCapabilities()).toMatchObject({ tools: {}, prompts: {}, resources: {} });
    const tools = (await client.listTools()).tools.map((tool) => tool.name);
    expect(tools).toEqual(
      expect.arrayContaining([
        'ev__echo',
        'ev__get-sum',
        'ev__trigger-long-running-operation',
        'ev__trigger-sampling-request',
      ]),
    );
    expect(tools.every((name) => name.startsWith('ev__'))).toBe(true);
    const prompts = (await client.listPrompts()).prompts.map((prompt) => prompt.name);
    expect(prompts).toEqual(expect.arrayContaining(['ev__simple-prompt', 'ev__completable-prompt']));
    const { resources } = await client.listResources();
    expect(resources.length).toBeGreaterThan(0);
    const first = resources[0];
    const read = await client.readResource({ uri: first?.uri ?? '' });
    expect(read.contents[0]?.uri).toBe(first?.uri);
    await client.close();
  });

  it('calls echo, get-sum, a long-running operation with progress, and a sampling round trip', async () => {
    const client = await connect();
    expect(
      text(await client.callTool({ name: 'ev__echo', arguments: { message: 'through the gateway' } })),
    ).toBe('Echo: through the gateway');
    expect(text(await client.callTool({ name: 'ev__get-sum', arguments: { a: 19, b: 23 } }))).toBe(
      'The sum of 19 and 23 is 42.',
    );
    const progress: number[] = [];
    const long = await client.callTool(
      { name: 'ev__trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } },
      undefined,
      {
        onprogress: (p) => progress.push(p.progress),
      },
    );
    expect(text(long)).toContain('Long running operation completed');
    expect(progress).toEqual([1, 2, 3]);
    const sampled = await client.callTool({
      name: 'ev__trigger-sampling-request',
      arguments: { prompt: 'Say hi', maxTokens: 20 },
    });
    expect(text(sampled)).toContain('sampled:');
    expect(text(sampled)).toContain('everything-spec-model');
    await client.close();
  });

  it('gets prompts and completes their arguments', async () => {
    const client = await connect();
    const simple = await client.getPrompt({ name: 'ev__simple-prompt' });
    expect(JSON.stringify(simple.messages)).toContain('simple prompt without arguments');
    const completion = await client.complete({
      ref: { type: 'ref/prompt', name: 'ev__completable-prompt' },
      argument: { name: 'department', value: 'Eng' },
    });
    expect(completion.completion.values).toEqual(['Engineering']);
    const prompt = await client.getPrompt({
      name: 'ev__completable-prompt',
      arguments: { department: 'Sales', name: 'Eve' },
    });
    expect(JSON.stringify(prompt.messages)).toContain('promote Eve to the head of the Sales team');
    expect(await client.ping()).toEqual({});
    await client.close();
  });
});
