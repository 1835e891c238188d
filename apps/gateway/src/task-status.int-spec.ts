/**
 * A task's status sent on the upstream session's own stream as the task is created (the official SDK's task helpers
 * send every status there, with no related request, before the CreateTaskResult naming the task is back): it reaches
 * the agent under the gateway's id for the task, in order with the later ones, as it reaches an agent connected
 * directly. Before, the gateway did not know the task yet and dropped it.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server as HttpServer } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, GetTaskRequestSchema, ListToolsRequestSchema, TaskStatusNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentWithKey, startTestGateway, type TestGateway } from './testing/gateway-harness';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;
let upstream: { url: string; http: HttpServer };

/**
 * An SDK server whose one tool `slowtask`, called as a task, sends the task's status `created` on the session's stream
 * as it makes the task, answers 300 ms later, and sends `working` and `done` statuses 100 ms and 300 ms after that.
 */
async function startTaskUpstream(): Promise<{ url: string; http: HttpServer }> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const http = createServer((req, res) => {
    const id = req.headers['mcp-session-id'];
    const existing = typeof id === 'string' ? transports.get(id) : undefined;
    if (existing) return void existing.handleRequest(req, res);
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (sessionId) => void transports.set(sessionId, transport),
    });
    const server = new Server({ name: 'tasker', version: '1.0.0' }, { capabilities: { tools: {}, tasks: { cancel: {}, requests: { tools: { call: {} } } } } });
    const tasks = new Map<string, Record<string, unknown>>();
    server.setRequestHandler(GetTaskRequestSchema, (request) => (tasks.get(request.params.taskId) ?? {}) as never);
    server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: 'slowtask', inputSchema: { type: 'object' as const }, execution: { taskSupport: 'optional' as const } }] }));
    server.setRequestHandler(CallToolRequestSchema, async () => {
      const now = new Date().toISOString();
      const task = { taskId: `up-${randomUUID()}`, status: 'working' as const, ttl: 60_000, createdAt: now, lastUpdatedAt: now, statusMessage: 'created' };
      tasks.set(task.taskId, task);
      const status = (statusMessage: string) => server.notification({ method: 'notifications/tasks/status', params: { ...task, statusMessage } } as never).catch(() => undefined);
      await status('created');
      await new Promise((resolve) => setTimeout(resolve, 300));
      setTimeout(() => void status('working'), 100);
      setTimeout(() => void status('done'), 300);
      return { task } as never;
    });
    void server.connect(transport).then(() => transport.handleRequest(req, res));
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const address = http.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return { url: `http://127.0.0.1:${address.port}/mcp`, http };
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  upstream = await startTaskUpstream();
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'tasker', toolPrefix: 'tk', transport: 'streamable_http', url: upstream.url, connectTimeoutMs: 5_000, callTimeoutMs: 10_000 } as never });
  ({ key } = await createAgentWithKey(db, tenant.id, 'task-status-agent'));
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  upstream?.http.close();
  await db?.$disconnect();
});

const created = z.object({ task: z.object({ taskId: z.string() }).passthrough() }).passthrough();

async function statusesOf(url: string, tool: string, headers: Record<string, string> = {}): Promise<{ taskId: string; statuses: string[][] }> {
  const client = new Client({ name: 'task-status', version: '1' }, { capabilities: {} });
  const statuses: string[][] = [];
  client.setNotificationHandler(TaskStatusNotificationSchema, (n) => void statuses.push([n.params.taskId, n.params.statusMessage ?? '']));
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  try {
    // The SDK client opens its standalone GET stream right after initialize: a moment for it to be up.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const { task } = await client.request({ method: 'tools/call', params: { name: tool, arguments: {}, task: { ttl: 60_000 } } }, created);
    await waitFor(() => statuses.some(([, message]) => message === 'done'), { timeoutMs: 5_000, description: 'the last status' });
    return { taskId: task.taskId, statuses };
  } finally {
    await client.close();
  }
}

describe('notifications/tasks/status sent as the task is created', () => {
  it('reaches an agent connected directly (the upstream as it is)', async () => {
    const { taskId, statuses } = await statusesOf(upstream.url, 'slowtask');
    expect(statuses).toEqual([[taskId, 'created'], [taskId, 'working'], [taskId, 'done']]);
  });

  it('reaches the agent through the gateway under the id the gateway gave the task, in order', async () => {
    const { taskId, statuses } = await statusesOf(`${gateway.url}/t/${tenant.slug}/mcp`, 'tk__slowtask', { authorization: `Bearer ${key}` });
    expect(taskId).not.toMatch(/^up-/);
    expect(statuses).toEqual([[taskId, 'created'], [taskId, 'working'], [taskId, 'done']]);
  });
});
