/**
 * A Streamable HTTP upstream's standalone GET stream, toward the start of its session and for answers put on it.
 *
 * An SDK server sends a request that relates to no request of the client's (`server.request(...)`: the conformance
 * suite's client scenario `elicitation-sep1034-client-defaults` elicits so during a tool call) on the session's GET
 * stream, and drops it when that stream is not open yet. The gateway opens the GET right after the upstream's
 * handshake, on a new connection, while the agent's first call goes on a pooled socket: under load the call overtook
 * the GET, the elicitation was lost and the call waited out its timeout (the scenario failed so once under the full
 * suite's load). Here the upstream takes its GETs 150 ms late, so every round would overtake without the gateway
 * waiting for the first GET. And an upstream that answers a call on the GET stream (its call's stream gone) has the
 * call answered, not left to time out.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server as McpServer } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ElicitRequestSchema, ElicitResultSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
const GET_DELAY_MS = 150;
const CALL_TIMEOUT_MS = 4_000;

let db: SystemPrismaClient;
let gateway: TestGateway;
const servers: Server[] = [];

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => resolve(text === '' ? undefined : JSON.parse(text)));
  });
}

async function listen(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/mcp`;
}

/** An SDK server (stateful) whose tool elicits with `server.request`, and takes each GET GET_DELAY_MS late. */
function startElicitingUpstream(): Promise<string> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const makeServer = () => {
    const server = new McpServer({ name: 'elicits-on-its-stream', version: '1.0.0' }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [{ name: 'ask', inputSchema: { type: 'object', properties: {} } }] }));
    server.setRequestHandler(CallToolRequestSchema, async () => {
      const answer = await server.request(
        { method: 'elicitation/create', params: { message: 'Your name?', requestedSchema: { type: 'object', properties: { name: { type: 'string', default: 'Ada' } } } } },
        ElicitResultSchema,
        { timeout: 30_000 },
      );
      return { content: [{ type: 'text', text: `answered ${answer.action} ${JSON.stringify(answer.content ?? {})}` }] };
    });
    return server;
  };
  const http = createServer((req, res) => {
    void (async () => {
      const sessionId = req.headers['mcp-session-id'];
      if (req.method === 'GET') await new Promise((resolve) => setTimeout(resolve, GET_DELAY_MS));
      const body = req.method === 'POST' ? await readBody(req) : undefined;
      let transport = typeof sessionId === 'string' ? transports.get(sessionId) : undefined;
      if (transport === undefined && (body as { method?: string } | undefined)?.method === 'initialize') {
        const created: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => void transports.set(id, created),
        });
        await makeServer().connect(created);
        transport = created;
      }
      if (transport === undefined) return void res.writeHead(404).end();
      await transport.handleRequest(req, res, body);
    })();
  });
  return listen(http);
}

/**
 * A hand-written upstream that answers `tools/call` on the standalone GET stream. Tool `run`: the call's own stream is
 * closed after a priming event whose `retry` (10 s) is past the call's timeout, and a resuming GET is never answered;
 * tool `hold`: the call's own stream stays open, silent.
 */
function startAnswersOnItsStreamUpstream(): Promise<string> {
  let standalone: ServerResponse | undefined;
  const http = createServer((req, res) => {
    void (async () => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.flushHeaders();
        if (req.headers['last-event-id'] === undefined) standalone = res;
        return;
      }
      if (req.method !== 'POST') return void res.writeHead(405).end();
      const message = (await readBody(req)) as { id?: number; method?: string; params?: Record<string, unknown> };
      if (message.id === undefined || message.method === undefined) return void res.writeHead(202).end();
      const json = (result: Record<string, unknown>) =>
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'answers-elsewhere' }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
      if (message.method === 'initialize') json({ protocolVersion: message.params?.['protocolVersion'], capabilities: { tools: {} }, serverInfo: { name: 'elsewhere', version: '1' } });
      else if (message.method === 'tools/list') json({ tools: ['run', 'hold'].map((name) => ({ name, inputSchema: { type: 'object' } })) });
      else if (message.method === 'tools/call') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': 'answers-elsewhere' });
        if (message.params?.['name'] === 'run') res.end('id: primed-1\nretry: 10000\ndata: \n\n');
        else res.flushHeaders();
        standalone?.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { content: [{ type: 'text', text: 'answered on the GET stream' }] } })}\n\n`);
      } else json({});
    })();
  });
  return listen(http);
}

async function tenantWith(url: string): Promise<{ tenant: TestTenant; key: string }> {
  const tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'up', toolPrefix: 'up', transport: 'streamable_http', url, connectTimeoutMs: 10_000, callTimeoutMs: CALL_TIMEOUT_MS } as never });
  const { key } = await createAgentWithKey(db, tenant.id, 'agent');
  return { tenant, key };
}

async function agent(tenant: TestTenant, key: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'agent', version: '1.0.0' }, { capabilities: { elicitation: { form: { applyDefaults: true } } } });
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: {} }));
  const transport = new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } });
  await client.connect(transport);
  return { client, transport };
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  for (const server of servers) {
    server.closeAllConnections();
    server.close();
  }
  await db?.$disconnect();
});

describe("a Streamable HTTP upstream's standalone stream", () => {
  it('is open before the first call goes out: what the upstream sends on it during that call arrives (three new sessions)', async () => {
    const { tenant, key } = await tenantWith(await startElicitingUpstream());
    await gateway.dataPlane.refreshAll();
    for (let round = 0; round < 3; round += 1) {
      const { client, transport } = await agent(tenant, key);
      try {
        const result = await client.callTool({ name: 'up__ask', arguments: {} });
        expect(result).toMatchObject({ content: [{ type: 'text', text: 'answered accept {"name":"Ada"}' }] });
      } finally {
        await transport.terminateSession().catch(() => undefined);
        await client.close();
      }
    }
  }, 60_000);

  it("answers a call whose answer the upstream put on it (its stream closed, or open), instead of waiting out the call's timeout", async () => {
    const { tenant, key } = await tenantWith(await startAnswersOnItsStreamUpstream());
    await gateway.dataPlane.refreshAll();
    const { client } = await agent(tenant, key);
    try {
      const started = Date.now();
      for (const name of ['up__run', 'up__hold']) {
        const result = await client.callTool({ name, arguments: {} });
        expect(result).toMatchObject({ content: [{ type: 'text', text: 'answered on the GET stream' }] });
      }
      expect(Date.now() - started).toBeLessThan(CALL_TIMEOUT_MS);
    } finally {
      await client.close();
    }
  }, 30_000);
});
