/**
 * An upstream's JSON-RPC error whose code is not an integer (1.5; 1e400, which JSON.parse reads as Infinity and
 * JSON.stringify writes as null) reaches the agent as -32603 with the upstream's message: JSON-RPC 2.0 §5.1 requires an
 * integer, and the SDK client's schema refuses the whole message otherwise (an SSE answer dropped, the call left to
 * its timeout). A raw HTTP upstream here, to send the number text no JSON.stringify would.
 */
import type { Server } from 'node:http';
import { JSONRPCMessageSchema } from '@modelcontextprotocol/sdk/types.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, initializeResult, startJsonUpstream, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;
let upstream: Server;

/** tools/call `frac` is refused with code 1.5, `inf` with code 1e400 (raw JSON text). */
function startUpstream() {
  return startJsonUpstream({
    sessionId: 'codes-1',
    onRequest: (request) => {
      const { id, method, params } = request.message;
      if (method === 'initialize') request.answer({ result: initializeResult(request, 'codes') });
      else if (method === 'tools/list') request.answer({ result: { tools: [{ name: 'frac', inputSchema: { type: 'object' } }, { name: 'inf', inputSchema: { type: 'object' } }] } });
      else request.answerText(`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"error":{"code":${params?.['name'] === 'frac' ? '1.5' : '1e400'},"message":"nope"}}`);
    },
  });
}

async function rpc(sessionId: string | undefined, body: unknown): Promise<{ headers: Headers; text: string }> {
  const response = await fetch(`${gateway.url}/t/${tenant.slug}/mcp`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(sessionId ? { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' } : {}),
    },
    body: JSON.stringify(body),
  });
  return { headers: response.headers, text: await response.text() };
}

const messageOf = (text: string): unknown => JSON.parse(text.startsWith('{') ? text : (/^data: (\{.*)$/m.exec(text)?.[1] ?? '{}'));

beforeAll(async () => {
  const started = await startUpstream();
  upstream = started.server;
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  ({ key } = await createAgentWithKey(db, tenant.id, 'codes-agent'));
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'codes', toolPrefix: 'codes', transport: 'streamable_http', url: started.url, connectTimeoutMs: 5_000, callTimeoutMs: 5_000 } as never });
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await db?.$disconnect();
  await new Promise((resolve) => upstream?.close(resolve));
});

describe('an upstream JSON-RPC error whose code is not an integer', () => {
  it.each(['frac', 'inf'])('reaches the agent as a valid JSON-RPC error (%s)', async (tool) => {
    const init = await rpc(undefined, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? undefined;
    await rpc(sessionId, { jsonrpc: '2.0', method: 'notifications/initialized' });
    const answer = messageOf((await rpc(sessionId, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: `codes__${tool}`, arguments: {} } })).text) as { error?: { code?: unknown; message?: unknown } };
    expect(answer.error).toMatchObject({ code: -32603, message: 'nope' });
    // What the official SDK client makes of it: a message it can read, not one its transport throws away.
    expect(JSONRPCMessageSchema.safeParse(answer).success).toBe(true);
  });
});
