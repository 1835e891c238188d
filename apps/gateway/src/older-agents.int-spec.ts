/**
 * Agents on older protocol versions, through the gateway, to an upstream that speaks only MCP 2025-11-25 (it answers
 * every initialize with that version, as an upstream may): the SDK client, with the version it offers rewritten, is
 * listed and sent only what its version defines, and the upstream hears why when something cannot be sent.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
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
let upstream: Server;
/** Answers the agent gave to the upstream's requests, by request id. */
const answers = new Map<string, (message: Record<string, unknown>) => void>();

const sse = (res: ServerResponse) => {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  return (message: unknown) => res.write(`data: ${JSON.stringify(message)}\n\n`);
};

/** Asks the agent `request` (through the gateway) on the call's stream and waits for the answer. */
function ask(
  send: (message: unknown) => void,
  id: string,
  method: string,
  params: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    answers.set(id, resolve);
    send({ jsonrpc: '2.0', id, method, params });
  });
}

async function handleUpstream(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method === 'DELETE') return void res.writeHead(200).end();
  if (req.method !== 'POST') return void res.writeHead(405).end();
  let body = '';
  for await (const chunk of req) body += chunk;
  const message = JSON.parse(body) as Record<string, unknown>;
  const id = message['id'];
  const params = (message['params'] ?? {}) as Record<string, unknown>;
  if (message['method'] === undefined) {
    // An answer to one of our requests.
    answers.get(String(id))?.(message);
    return void res.writeHead(202).end();
  }
  if (id === undefined) return void res.writeHead(202).end();
  const json = (result: unknown): void =>
    void res
      .writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'up-1' })
      .end(JSON.stringify({ jsonrpc: '2.0', id, result }));
  switch (message['method']) {
    case 'initialize':
      return json({
        protocolVersion: '2025-11-25',
        capabilities: { tools: {}, prompts: {}, tasks: { cancel: {}, requests: { tools: { call: {} } } } },
        serverInfo: { name: 'new-only', version: '1' },
      });
    case 'tools/list':
      return json({
        tools: [
          { name: 'ask_form', inputSchema: { type: 'object' } },
          { name: 'sample', inputSchema: { type: 'object' } },
          { name: 'report', inputSchema: { type: 'object' }, execution: { taskSupport: 'required' } },
        ],
      });
    case 'tools/call': {
      const name = params['name'];
      if (name === 'report' && params['task'] === undefined) {
        // As the SDK's McpServer answers a plain call of a tool that requires a task.
        return void res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(
            JSON.stringify({
              jsonrpc: '2.0',
              id,
              error: {
                code: -32601,
                message: "Tool report requires task augmentation (taskSupport: 'required')",
              },
            }),
          );
      }
      if (name !== 'ask_form' && name !== 'sample') return json({ content: [{ type: 'text', text: 'ok' }] });
      const send = sse(res);
      let answer: Record<string, unknown>;
      if (name === 'ask_form') {
        const field =
          (params['arguments'] as { field?: string } | undefined)?.field === 'titled'
            ? {
                type: 'string',
                oneOf: [
                  { const: 'r', title: 'Red' },
                  { const: 'b', title: 'Blue' },
                ],
              }
            : (params['arguments'] as { field?: string } | undefined)?.field === 'plain'
              ? { type: 'string' }
              : { type: 'array', items: { type: 'string', enum: ['red', 'blue'] } };
        answer = await ask(send, `f-${Date.now()}`, 'elicitation/create', {
          mode: 'form',
          message: 'pick',
          requestedSchema: { type: 'object', properties: { colours: field } },
        });
      } else {
        const second =
          (params['arguments'] as { audio?: boolean } | undefined)?.audio === true
            ? { type: 'audio', data: 'AAAA', mimeType: 'audio/wav' }
            : { type: 'image', data: 'iVBORw0KGgo=', mimeType: 'image/png' };
        answer = await ask(send, `s-${Date.now()}`, 'sampling/createMessage', {
          messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, second] }],
          maxTokens: 10,
        });
      }
      send({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: JSON.stringify(answer) }] } });
      return void res.end();
    }
    default:
      return json({});
  }
}

/** An SDK client of the gateway that offers `version` at initialize; `seen` collects every message it receives. */
async function agent(
  version: string,
  capabilities: Record<string, unknown>,
  seen: JSONRPCMessage[],
): Promise<Client> {
  const client = new Client({ name: `agent-${version}`, version: '1' }, { capabilities });
  const transport = new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
  });
  const send = transport.send.bind(transport);
  transport.send = (message, options) => {
    const m = message as { method?: string; params?: Record<string, unknown> };
    if (m.method === 'initialize') m.params = { ...m.params, protocolVersion: version };
    return send(message, options);
  };
  const wrap = () => {
    const onmessage = transport.onmessage;
    transport.onmessage = (message) => {
      seen.push(message);
      onmessage?.(message);
    };
  };
  const start = transport.start.bind(transport);
  transport.start = async () => {
    wrap();
    return start();
  };
  if (capabilities['sampling'] !== undefined) {
    client.setRequestHandler(CreateMessageRequestSchema, async () => ({
      role: 'assistant',
      content: { type: 'text', text: 'sampled' },
      model: 'm',
    }));
  }
  if (capabilities['elicitation'] !== undefined) {
    client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'decline' }));
  }
  await client.connect(transport);
  return client;
}

beforeAll(async () => {
  upstream = createServer((req, res) => void handleUpstream(req, res).catch(() => res.destroy()));
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const address = upstream.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({
    data: {
      tenantId: tenant.id,
      name: 'new-only',
      toolPrefix: 'nw',
      transport: 'streamable_http',
      url: `http://127.0.0.1:${address.port}/mcp`,
      connectTimeoutMs: 5_000,
      callTimeoutMs: 10_000,
    } as never,
  });
  ({ key } = await createAgentWithKey(db, tenant.id, 'versions-agent'));
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await db?.$disconnect();
  upstream?.close();
});

/** The server→client requests of `method` an agent received. */
const requestsOf = (seen: readonly JSONRPCMessage[], method: string) =>
  seen.filter(
    (m): m is JSONRPCMessage & { method: string; params: Record<string, unknown> } =>
      'method' in m && 'id' in m && m.method === method,
  );

/** What the agent answered the upstream's request with, as the upstream's tool result reports it. */
const answerIn = (result: Awaited<ReturnType<Client['callTool']>>) =>
  JSON.parse((result.content as { text: string }[])[0]?.text ?? 'null') as Record<string, unknown>;

describe('server→client requests relayed from a 2025-11-25 upstream to older agents', () => {
  it('sends a 2025-06-18 agent a sampling message of several blocks as one message per block', async () => {
    const seen: JSONRPCMessage[] = [];
    const client = await agent('2025-06-18', { sampling: {} }, seen);
    const answer = answerIn(await client.callTool({ name: 'nw__sample', arguments: {} }));
    await client.close();
    expect(answer).toMatchObject({ result: { content: { type: 'text', text: 'sampled' } } });
    expect(requestsOf(seen, 'sampling/createMessage').map((m) => m.params['messages'])).toEqual([
      [
        { role: 'user', content: { type: 'text', text: 'hi' } },
        { role: 'user', content: { type: 'image', data: 'iVBORw0KGgo=', mimeType: 'image/png' } },
      ],
    ]);
  });

  it('refuses to the upstream, with the reason, a sampling request with audio for a 2024-11-05 agent, which never sees it', async () => {
    const seen: JSONRPCMessage[] = [];
    const client = await agent('2024-11-05', { sampling: {} }, seen);
    const answer = answerIn(await client.callTool({ name: 'nw__sample', arguments: { audio: true } }));
    await client.close();
    expect(answer).toMatchObject({
      error: { code: -32602, message: expect.stringContaining("type 'audio'") },
    });
    expect(requestsOf(seen, 'sampling/createMessage')).toEqual([]);
  });

  it('sends a 2025-06-18 agent a titled single-select as enum and enumNames, and refuses a multi-select form to the upstream', async () => {
    const seen: JSONRPCMessage[] = [];
    const client = await agent('2025-06-18', { elicitation: {} }, seen);
    expect(
      answerIn(await client.callTool({ name: 'nw__ask_form', arguments: { field: 'titled' } })),
    ).toMatchObject({ result: { action: 'decline' } });
    expect(
      answerIn(await client.callTool({ name: 'nw__ask_form', arguments: { field: 'multi' } })),
    ).toMatchObject({
      error: { code: -32602, message: expect.stringContaining("multi-select field ('colours')") },
    });
    await client.close();
    expect(requestsOf(seen, 'elicitation/create').map((m) => m.params['requestedSchema'])).toEqual([
      {
        type: 'object',
        properties: { colours: { type: 'string', enum: ['r', 'b'], enumNames: ['Red', 'Blue'] } },
      },
    ]);
    // `mode` is 2025-11-25's.
    expect(requestsOf(seen, 'elicitation/create').map((m) => 'mode' in m.params)).toEqual([false]);
  });

  // Found by review: the relay looked at the capabilities object only, and the SDK's client declares what its
  // application registered whatever version it speaks.
  it.each(['2025-03-26', '2024-11-05'])('refuses elicitation to the upstream (-32601) for a %s agent that names it, which never sees the request', async (version) => {
    const seen: JSONRPCMessage[] = [];
    const client = await agent(version, { elicitation: {} }, seen);
    const answer = answerIn(await client.callTool({ name: 'nw__ask_form', arguments: { field: 'plain' } }));
    await client.close();
    expect(answer).toMatchObject({ error: { code: -32601 } });
    expect(requestsOf(seen, 'elicitation/create')).toEqual([]);
  });
});

describe('tools that require tasks, to an agent whose version has no tasks', () => {
  it('are listed to a 2025-11-25 agent with their taskSupport, and not at all to a 2025-06-18 agent (it could never call them)', async () => {
    const newer = await agent('2025-11-25', {}, []);
    expect((await newer.listTools()).tools.map((tool) => [tool.name, tool.execution?.taskSupport])).toEqual([
      ['nw__ask_form', undefined],
      ['nw__sample', undefined],
      ['nw__report', 'required'],
    ]);
    await newer.close();
    const older = await agent('2025-06-18', {}, []);
    expect((await older.listTools()).tools.map((tool) => tool.name)).toEqual(['nw__ask_form', 'nw__sample']);
    await older.close();
  });
});
