/**
 * Every downstream/upstream transport pair the data plane supports, driven by the official MCP SDK client
 * through the gateway to the demo kitchen-sink server (the built demo upstreams: Streamable HTTP, legacy
 * SSE and stdio). One tenant per upstream transport, so each pair exercises exactly one path:
 *
 *   Streamable HTTP → Streamable HTTP · Streamable HTTP → stdio · Streamable HTTP → SSE · SSE → Streamable HTTP
 *
 * The same suite runs for each pair: tools, prompts, completion, resources with subscriptions, logging,
 * ping, progress, sampling, elicitation, roots (both directions), cancellation as the upstream saw it, and
 * a `tools/list_changed` the upstream announces on its session-wide channel. Needs `npx nx build demo-upstreams`.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import {
  createAgentWithKey,
  demoUpstreamTarget,
  startDemoUpstreams,
  startTestGateway,
  type DemoTransport,
  type DemoUpstreams,
  type TestGateway,
} from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let gateway: TestGateway;

type UpstreamTransport = DemoTransport;
const tenants = new Map<UpstreamTransport, { tenant: TestTenant; key: string }>();

interface Pair {
  readonly name: string;
  readonly downstream: 'streamable_http' | 'sse';
  readonly upstream: UpstreamTransport;
}

const PAIRS: readonly Pair[] = [
  { name: 'Streamable HTTP → Streamable HTTP', downstream: 'streamable_http', upstream: 'streamable_http' },
  { name: 'Streamable HTTP → stdio', downstream: 'streamable_http', upstream: 'stdio' },
  { name: 'Streamable HTTP → SSE', downstream: 'streamable_http', upstream: 'sse' },
  { name: 'SSE → Streamable HTTP', downstream: 'sse', upstream: 'streamable_http' },
];

const ROOTS = [{ uri: 'file:///work/project', name: 'project' }];

function text(result: unknown): string {
  const content = (result as { content?: { text?: string }[] }).content ?? [];
  return content.map((item) => item.text ?? '').join('');
}

async function tenantWith(transport: UpstreamTransport): Promise<{ tenant: TestTenant; key: string }> {
  const tenant = await createTestTenant(db);
  // About transports, not policy: the tenant allows everything.
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  const common = {
    tenantId: tenant.id,
    name: 'kitchen-sink',
    toolPrefix: 'ks',
    connectTimeoutMs: 10_000,
    callTimeoutMs: 15_000,
  };
  await db.upstream.create({ data: { ...common, ...demoUpstreamTarget(demo, 'kitchen-sink', transport) } as never });
  const { key } = await createAgentWithKey(db, tenant.id, 'pairs-agent');
  return { tenant, key };
}

/** An SDK client that answers sampling, elicitation and roots, and records the notifications it gets. */
async function connect(pair: Pair) {
  const entry = tenants.get(pair.upstream);
  if (!entry) throw new Error('tenant missing');
  const client = new Client(
    { name: `pairs-${pair.downstream}`, version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
  );
  const seen = { logs: [] as unknown[], updated: [] as string[], toolsChanged: 0 };
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
    role: 'assistant',
    content: { type: 'text', text: `Summary of ${request.params.messages.length} message(s).` },
    model: 'pairs-model',
  }));
  client.setRequestHandler(ElicitRequestSchema, async () => ({
    action: 'accept',
    content: { confirm: true, note: 'ok' },
  }));
  client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: ROOTS }));
  client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
    seen.logs.push(notification.params.data);
  });
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
    seen.updated.push(notification.params.uri);
  });
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    seen.toolsChanged += 1;
  });
  const headers = { authorization: `Bearer ${entry.key}` };
  const base = `${gateway.url}/t/${entry.tenant.slug}`;
  const transport =
    pair.downstream === 'streamable_http'
      ? new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers } })
      : new SSEClientTransport(new URL(`${base}/sse`), {
          requestInit: { headers },
          eventSourceInit: {
            fetch: (url, init) =>
              fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...headers } }),
          },
        });
  await client.connect(transport);
  return { client, seen };
}

async function counterValue(client: Client): Promise<{ value: number }> {
  const [content] = (await client.readResource({ uri: 'demo://counter' })).contents;
  return JSON.parse(content && 'text' in content ? content.text : '{}') as { value: number };
}

async function observed(
  client: Client,
): Promise<{ cancelled: { label: string; step: number }[]; rootsListChanged: number }> {
  const result = await client.callTool({ name: 'ks__observed_events', arguments: {} });
  return JSON.parse(text(result)) as {
    cancelled: { label: string; step: number }[];
    rootsListChanged: number;
  };
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  for (const transport of ['streamable_http', 'stdio', 'sse'] as const)
    tenants.set(transport, await tenantWith(transport));
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await demo?.stop();
  await db?.$disconnect();
});

describe.each(PAIRS)('$name', (pair) => {
  it('tools/call, prompts/get, completion/complete and ping reach the upstream with the original names', async () => {
    const { client } = await connect(pair);
    expect(client.getServerCapabilities()).toMatchObject({
      tools: { listChanged: true },
      prompts: {},
      resources: { subscribe: true },
      logging: {},
      completions: {},
    });
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(
      expect.arrayContaining(['ks__echo', 'ks__slow_count', 'ks__observed_events']),
    );
    expect(
      text(await client.callTool({ name: 'ks__echo', arguments: { message: `hello ${pair.name}` } })),
    ).toBe(`hello ${pair.name}`);
    const prompt = await client.getPrompt({
      name: 'ks__greeting',
      arguments: { name: 'Ada', language: 'german' },
    });
    expect(JSON.stringify(prompt.messages)).toContain('Guten Tag, Ada!');
    const completion = await client.complete({
      ref: { type: 'ref/prompt', name: 'ks__greeting' },
      argument: { name: 'language', value: 'sp' },
    });
    expect(completion.completion.values).toEqual(['spanish']);
    expect(await client.ping()).toEqual({});
    await client.close();
  });

  it('resources/read, and subscribe/unsubscribe govern resources/updated notifications', async () => {
    const { client, seen } = await connect(pair);
    const { resources } = await client.listResources();
    expect(resources.map((resource) => resource.uri)).toContain('demo://counter');
    await client.callTool({ name: 'ks__increment_counter', arguments: { by: 2 } });
    expect(seen.updated).toEqual([]);
    const before = await counterValue(client);
    await client.subscribeResource({ uri: 'demo://counter' });
    await client.callTool({ name: 'ks__increment_counter', arguments: { by: 3 } });
    await waitFor(() => seen.updated.length === 1, { description: 'resources/updated' });
    expect(seen.updated).toEqual(['demo://counter']);
    const after = await counterValue(client);
    expect(after.value).toBe(before.value + 3);
    await client.unsubscribeResource({ uri: 'demo://counter' });
    await client.callTool({ name: 'ks__increment_counter', arguments: { by: 1 } });
    // The notification would travel with the tool call's own response; the call is done, so none came.
    expect(seen.updated).toEqual(['demo://counter']);
    await client.close();
  });

  it('logging/setLevel reaches the upstream and its log messages are forwarded', async () => {
    const { client, seen } = await connect(pair);
    await client.setLoggingLevel('warning');
    await client.callTool({ name: 'ks__log_message', arguments: { level: 'info', message: 'too quiet' } });
    await client.callTool({
      name: 'ks__log_message',
      arguments: { level: 'error', message: `loud ${pair.name}` },
    });
    await waitFor(() => seen.logs.length > 0, { description: 'a log message' });
    expect(JSON.stringify(seen.logs)).toContain(`loud ${pair.name}`);
    expect(JSON.stringify(seen.logs)).not.toContain('too quiet');
    await client.setLoggingLevel('debug');
    await client.callTool({ name: 'ks__log_message', arguments: { level: 'info', message: 'now audible' } });
    await waitFor(() => JSON.stringify(seen.logs).includes('now audible'), {
      description: 'the info message',
    });
    await client.close();
  });

  it('relays progress, and sampling and elicitation round trips', async () => {
    const { client } = await connect(pair);
    const progress: number[] = [];
    const counted = await client.callTool(
      { name: 'ks__slow_count', arguments: { steps: 3, interval_ms: 10 } },
      undefined,
      {
        onprogress: (p) => progress.push(p.progress),
      },
    );
    expect(text(counted)).toBe('Counted to 3.');
    if (pair.downstream === 'streamable_http') expect(progress).toEqual([1, 2, 3]);
    // The SDK's SSEClientTransport dispatches one network chunk's events synchronously and its Protocol
    // handles notifications a microtask later than responses, so the progress events arriving in the same
    // chunk as the result (the last one or two, when the steps are 10 ms apart) can be dropped by the client.
    // What arrived is in order, and the first one always comes before the result.
    else
      expect([
        [1],
        [1, 2],
        [1, 2, 3],
      ]).toContainEqual(progress);
    expect(
      text(await client.callTool({ name: 'ks__summarize_with_llm', arguments: { text: 'long text' } })),
    ).toBe('Summary of 1 message(s).');
    expect(text(await client.callTool({ name: 'ks__confirm_action', arguments: { action: 'deploy' } }))).toBe(
      'The user confirmed: deploy (ok)',
    );
    await client.close();
  });

  it('relays roots/list to the agent and notifications/roots/list_changed to the upstream', async () => {
    const { client } = await connect(pair);
    expect(text(await client.callTool({ name: 'ks__list_roots', arguments: {} }))).toBe(
      'project: file:///work/project',
    );
    const before = (await observed(client)).rootsListChanged;
    await client.sendRootsListChanged();
    await waitFor(async () => (await observed(client)).rootsListChanged > before, {
      description: 'roots/list_changed upstream',
    });
    await client.close();
  });

  it('a cancelled call is cancelled at the upstream, is not answered, and the session keeps working', async () => {
    const { client } = await connect(pair);
    // MCP: no answer to a cancelled request. The SDK client reports one that comes as a message for an unknown id.
    const errors: string[] = [];
    client.onerror = (error) => errors.push(String(error));
    const label = `cancel-${pair.downstream}-${pair.upstream}-${Date.now()}`;
    const controller = new AbortController();
    const progress: number[] = [];
    const call = client.callTool(
      { name: 'ks__slow_count', arguments: { steps: 100, interval_ms: 50, label } },
      undefined,
      {
        signal: controller.signal,
        onprogress: (p) => progress.push(p.progress),
      },
    );
    await waitFor(() => progress.length >= 2, { description: 'two progress steps' });
    controller.abort('enough');
    await expect(call).rejects.toThrow();
    const seen = await waitFor(
      async () => (await observed(client)).cancelled.find((entry) => entry.label === label),
      {
        description: 'the upstream to record the cancellation',
      },
    );
    expect(seen.step).toBeGreaterThanOrEqual(2);
    expect(seen.step).toBeLessThan(100);
    expect(await client.ping()).toEqual({});
    // The gateway's answer to the cancelled call would have come with the upstream's, long before this ping's.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(errors.filter((error) => error.includes('unknown message ID'))).toEqual([]);
    await client.close();
  });

  it("a call cancelled while its elicitation waits on the agent: the agent is told the elicitation is cancelled too", async () => {
    const { client } = await connect(pair);
    let asked = false;
    let elicitationAborted = false;
    // The person never answers; the handler only notes that it was asked, and when the gateway calls the question off.
    client.setRequestHandler(ElicitRequestSchema, (_request, extra) => {
      asked = true;
      return new Promise((_resolve, reject) => {
        extra.signal.addEventListener('abort', () => {
          elicitationAborted = true;
          reject(new Error('called off'));
        });
      });
    });
    const controller = new AbortController();
    const call = client.callTool({ name: 'ks__confirm_action', arguments: { action: 'drop the table' } }, undefined, {
      signal: controller.signal,
    });
    await waitFor(() => asked, { description: 'the elicitation to reach the agent' });
    const started = Date.now();
    controller.abort('changed my mind');
    await expect(call).rejects.toThrow();
    // Well before the upstream's own 60 s wait for the answer, or the call timeout (15 s).
    await waitFor(() => elicitationAborted, { description: 'notifications/cancelled for the elicitation', timeoutMs: 10_000 });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await client.ping()).toEqual({});
    await client.close();
  });

  it('tools/list_changed announced by the upstream reaches the agent, and the new tool is listed', async () => {
    const { client, seen } = await connect(pair);
    // The gateway opens its session-wide channel to the upstream at initialize, but the agent's GET stream
    // (Streamable HTTP) may attach a little later, and a notice sent before that is not delivered to it. So
    // while none has arrived, the upstream is made to announce again (each add_tool adds one more tool).
    const add = async () => {
      const added = await client.callTool({ name: 'ks__add_tool', arguments: {} });
      return `ks__${(added.structuredContent as { name: string }).name}`;
    };
    const name = await add();
    let lastAdded = Date.now();
    await waitFor(
      async () => {
        if (seen.toolsChanged > 0) return true;
        if (Date.now() - lastAdded >= 500) {
          await add();
          lastAdded = Date.now();
        }
        return false;
      },
      { timeoutMs: 15_000, description: 'notifications/tools/list_changed' },
    );
    // The first tool added is listed (and callable) like any other.
    expect((await client.listTools()).tools.map((tool) => tool.name)).toContain(name);
    expect(text(await client.callTool({ name, arguments: { message: 'fresh' } }))).toBe('fresh');
    await client.close();
  });
});
