/**
 * A replica shut down gracefully ends the legacy HTTP+SSE sessions it holds (they live as long as their streams), and
 * with them their Streamable HTTP upstream sessions: DELETE reaches each upstream while the connector is still up.
 * Before, the session record went and the upstream session stayed open on its server, out of every replica's reach.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway | undefined;
let upstream: { url: string; opened: string[]; closed: string[]; server: Server };

/** An SDK Streamable HTTP server that records the sessions it opened and the ones a DELETE closed. */
async function recordingUpstream(): Promise<typeof upstream> {
  const opened: string[] = [];
  const closed: string[] = [];
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const server = createServer((req, res) => {
    const id = req.headers['mcp-session-id'];
    const existing = typeof id === 'string' ? transports.get(id) : undefined;
    if (existing) return void existing.handleRequest(req, res);
    if (typeof id === 'string') return void res.writeHead(404).end();
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (sessionId) => {
        opened.push(sessionId);
        transports.set(sessionId, transport);
      },
      onsessionclosed: (sessionId) => {
        closed.push(sessionId);
        transports.delete(sessionId);
      },
    });
    const mcp = new McpServer({ name: 'recording', version: '1' });
    mcp.registerTool('echo', { inputSchema: { message: z.string() } }, ({ message }) => ({ content: [{ type: 'text', text: message }] }));
    void mcp.connect(transport).then(() => transport.handleRequest(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/mcp`, opened, closed, server };
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  upstream = await recordingUpstream();
});

afterAll(async () => {
  await gateway?.app.close();
  upstream?.server.closeAllConnections();
  await new Promise((resolve) => upstream?.server.close(resolve));
  await db?.$disconnect();
});

describe('graceful shutdown with legacy SSE sessions open', () => {
  it('ends their upstream sessions (DELETE) before the connector goes down', async () => {
    const tenant = await createTestTenant(db);
    await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
    await db.upstream.create({
      data: { tenantId: tenant.id, name: 'recording', toolPrefix: 'rec', transport: 'streamable_http', url: upstream.url, connectTimeoutMs: 5_000, callTimeoutMs: 5_000 } as never,
    });
    const { key } = await createAgentWithKey(db, tenant.id, 'legacy-shutdown-agent');
    gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
    const headers = { authorization: `Bearer ${key}` };
    const client = new Client({ name: 'legacy', version: '1' });
    const transport = new SSEClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/sse`), {
      requestInit: { headers },
      eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...headers } }) },
    });
    await client.connect(transport);
    expect(await client.callTool({ name: 'rec__echo', arguments: { message: 'x' } })).toMatchObject({ content: [{ text: 'x' }] });
    expect(upstream.opened).toHaveLength(1);

    await gateway.dataPlane.close(0);
    await waitFor(() => upstream.closed.length === upstream.opened.length, { timeoutMs: 3_000, description: 'the upstream session was ended' });
    expect(upstream.closed).toEqual(upstream.opened);
    await client.close().catch(() => undefined);
  }, 30_000);
});
