/**
 * The public reference server `@modelcontextprotocol/server-everything` (pinned in devDependencies) as a
 * stdio upstream, driven through the gateway by the official SDK client: listings, tools (echo, sum, a
 * long-running operation with progress, sampling), prompts with completion, and resources. A second one over
 * Streamable HTTP (on 127.0.0.1) runs its task tool as a task (MCP 2025-11-25), which the gateway offers only for
 * Streamable HTTP upstreams.
 *
 * The gateway spawns whatever stdio command an upstream row names; which commands may be configured is
 * the control plane's stdio allowlist (CONTROL_PLANE_STDIO_COMMAND_ALLOWLIST), not involved here because
 * the test writes the row itself.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { GATEWAY_RPC } from '@portcullis/gateway/core';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, freePort, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;
let otherKey: string;
let everythingHttp: ChildProcess | undefined;

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

async function connect(apiKey = key): Promise<Client> {
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
      requestInit: { headers: { authorization: `Bearer ${apiKey}` } },
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
  // The same server over Streamable HTTP, in a process of its own (it listens on PORT).
  const port = await freePort();
  everythingHttp = spawn(process.execPath, [everythingMain, 'streamableHttp'], {
    env: { PATH: process.env['PATH'] ?? '', PORT: String(port) },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  const deadline = Date.now() + 15_000;
  for (;;) {
    const up = await fetch(`http://127.0.0.1:${port}/mcp`, { method: 'GET' }).then(
      () => true,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline || everythingHttp.exitCode !== null) throw new Error('server-everything over Streamable HTTP did not start');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await db.upstream.create({
    data: {
      tenantId: tenant.id,
      name: 'everything-http',
      toolPrefix: 'evh',
      transport: 'streamable_http',
      url: `http://127.0.0.1:${port}/mcp`,
      connectTimeoutMs: 15_000,
      callTimeoutMs: 15_000,
    } as never,
  });
  ({ key } = await createAgentWithKey(db, tenant.id, 'everything-agent'));
  ({ key: otherKey } = await createAgentWithKey(db, tenant.id, 'everything-other-agent'));
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  everythingHttp?.kill('SIGTERM');
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
    expect(tools.every((name) => name.startsWith('ev__') || name.startsWith('evh__'))).toBe(true);
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

  it('runs a task-augmented tool call as a task under an id of the gateway, bound to the session that created it', async () => {
    const client = await connect();
    // server-everything runs tool calls as tasks and cancels them; the gateway offers both (for the Streamable HTTP
    // one), never tasks/list.
    expect(client.getServerCapabilities()?.tasks).toEqual({ cancel: {}, requests: { tools: { call: {} } } });
    const research = (await client.listTools()).tools.find((tool) => tool.name === 'evh__simulate-research-query');
    expect(research?.execution).toEqual({ taskSupport: 'required' });

    const seen: string[] = [];
    let taskId = '';
    let result: unknown;
    for await (const message of client.experimental.tasks.callToolStream({ name: 'evh__simulate-research-query', arguments: { topic: 'gateways' } })) {
      seen.push(message.type);
      if (message.type === 'taskCreated') taskId = message.task.taskId;
      if (message.type === 'result') result = message.result;
      if (message.type === 'error') throw message.error;
    }
    expect(seen[0]).toBe('taskCreated');
    expect(seen.at(-1)).toBe('result');
    // 128 random bits of the gateway's, not the upstream's own id.
    expect(taskId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(text(result)).toContain('gateways');
    const status = await client.experimental.tasks.getTask(taskId);
    expect(status).toMatchObject({ taskId, status: 'completed' });
    // A completed task cannot be cancelled: the upstream's Invalid params comes through.
    await expect(client.experimental.tasks.cancelTask(taskId)).rejects.toMatchObject({ code: -32602 });
    // No listing: the gateway does not advertise tasks/list.
    await expect(client.request({ method: 'tasks/list', params: {} }, z.object({}).passthrough())).rejects.toMatchObject({ code: -32601 });

    // Another agent, and another session of the same agent, get "not found" for it.
    for (const other of [await connect(otherKey), await connect()]) {
      await expect(other.experimental.tasks.getTask(taskId)).rejects.toMatchObject({ code: -32602, message: expect.stringContaining('Task not found') });
      await expect(other.experimental.tasks.getTaskResult(taskId)).rejects.toMatchObject({ code: -32602 });
      await other.close();
    }
    await client.close();
  }, 30_000);

  it("decides again, before a task is read, whether its tool is still the agent's to use; cancelling it is never refused", async () => {
    const redis: Redis = createRedisClient({ url: ctx.redisUrl, connectionName: 'everything-int-spec' });
    const client = await connect();
    try {
      const created = await client.request(
        { method: 'tools/call', params: { name: 'evh__simulate-research-query', arguments: { topic: 'revoked' }, task: { ttl: 60_000 } } },
        z.object({ task: z.object({ taskId: z.string(), status: z.string() }).passthrough() }).passthrough(),
      );
      const { taskId } = created.task;
      expect((await client.experimental.tasks.getTask(taskId)).status).toBe('working');
      const revoked = await writeActiveSnapshot(
        db,
        tenant.id,
        {
          defaultEffect: 'allow',
          rules: [{ id: 'no-research', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'everything-http', name: 'simulate-research-query' }], effect: 'deny' }],
        },
        { publish: redis },
      );
      await waitFor(() => gateway.dataPlane.policies.entry(tenant.id)?.version === revoked.version, { timeoutMs: 5_000 });
      const denied = { code: GATEWAY_RPC.POLICY_DENIED, message: expect.stringContaining('is no longer allowed for you, so the task its call started cannot be read') };
      await expect(client.experimental.tasks.getTask(taskId)).rejects.toMatchObject(denied);
      await expect(client.experimental.tasks.getTaskResult(taskId)).rejects.toMatchObject(denied);
      expect(await client.experimental.tasks.cancelTask(taskId)).toMatchObject({ taskId, status: 'cancelled' });
    } finally {
      const restored = await writeActiveSnapshot(db, tenant.id, ALLOW_ALL, { publish: redis });
      await waitFor(() => gateway.dataPlane.policies.entry(tenant.id)?.version === restored.version, { timeoutMs: 5_000 });
      redis.disconnect();
      await client.close();
    }
  }, 30_000);

  it('cancels a task under way, and answers a session of an older protocol without tasks', async () => {
    const client = await connect();
    const created = await client.request(
      { method: 'tools/call', params: { name: 'evh__simulate-research-query', arguments: { topic: 'cancelling' }, task: { ttl: 60_000 } } },
      z.object({ task: z.object({ taskId: z.string(), status: z.string() }).passthrough() }).passthrough(),
    );
    expect(created.task.status).toBe('working');
    const cancelled = await client.experimental.tasks.cancelTask(created.task.taskId);
    expect(cancelled).toMatchObject({ taskId: created.task.taskId, status: 'cancelled' });
    // The stdio one is not offered tasks (its tasks could not be routed safely): the augmentation is dropped, and the
    // server refuses the plain call to a tool that needs a task instead of starting one.
    const stdio = await client.request(
      { method: 'tools/call', params: { name: 'ev__simulate-research-query', arguments: { topic: 'stdio' }, task: {} } },
      z.object({ isError: z.boolean().optional(), content: z.array(z.object({ text: z.string() }).passthrough()) }).passthrough(),
    );
    expect(stdio.isError).toBe(true);
    expect(stdio.content[0]?.text).toContain('requires task augmentation');
    await client.close();

    // A session of 2025-06-18 (no tasks in that version): nothing advertised, and a task augmentation sent all the
    // same is dropped (MCP: a receiver that did not offer tasks runs the call as a plain one), so this upstream
    // refuses the plain call to a tool that needs a task instead of starting one; and the task methods are unknown.
    const post = (body: unknown, sessionId?: string) =>
      fetch(`${gateway.url}/t/${tenant.slug}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...(sessionId ? { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' } : {}),
        },
        body: JSON.stringify(body),
      });
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'old', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    const initialized = (await init.json()) as { result: { protocolVersion: string; capabilities: Record<string, unknown> } };
    expect(initialized.result.protocolVersion).toBe('2025-06-18');
    expect(initialized.result.capabilities['tools']).toBeDefined();
    expect(initialized.result.capabilities['tasks']).toBeUndefined();
    expect((await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, sessionId)).status).toBe(202);
    const plain = (await (
      await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'evh__simulate-research-query', arguments: { topic: 'old' }, task: {} } }, sessionId)
    ).json()) as { result?: { isError?: boolean; content: { text: string }[] } };
    // The SDK's server reports it as a tool error: the call ran as a plain one, no task was started.
    expect(plain.result?.isError).toBe(true);
    expect(plain.result?.content[0]?.text).toContain('requires task augmentation');
    const get = (await (await post({ jsonrpc: '2.0', id: 3, method: 'tasks/get', params: { taskId: created.task.taskId } }, sessionId)).json()) as { error?: { code: number } };
    expect(get.error?.code).toBe(-32601);
  }, 30_000);
});
