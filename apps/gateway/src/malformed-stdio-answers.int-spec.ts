/**
 * A stdio upstream that answers a call with a message JSON-RPC forbids (both `result` and `error`; neither) has
 * answered that call all the same: the gateway knows which call it is (the id), and ends it at once with a protocol
 * error, as a Streamable HTTP upstream's same answer does. Before (found by review), the message was dropped and the
 * agent waited out the whole call timeout, counted as a timeout and followed by a cancellation the upstream did not
 * expect.
 */
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, messageOf, postInitialize, postInSession, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;

const MALFORMED_STDIO = `process.stdin.on('data', (d) => { for (const l of String(d).split('\\n').filter(Boolean)) { const m = JSON.parse(l); if (m.id === undefined || m.method === undefined) continue;
  let out;
  if (m.method === 'initialize') out = { jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'm', version: '1' } } };
  else if (m.method === 'tools/list') out = { jsonrpc: '2.0', id: m.id, result: { tools: [{ name: 'both', inputSchema: { type: 'object' } }, { name: 'neither', inputSchema: { type: 'object' } }] } };
  else if (m.params.name === 'both') out = { jsonrpc: '2.0', id: m.id, result: { content: [] }, error: { code: -32000, message: 'both' } };
  else out = { jsonrpc: '2.0', id: m.id };
  process.stdout.write(JSON.stringify(out) + '\\n'); } });`;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  ({ key } = await createAgentWithKey(db, tenant.id, 'malformed-agent'));
  await db.upstream.create({ data: { tenantId: tenant.id, name: 'mal', toolPrefix: 'mal', transport: 'stdio', command: process.execPath, args: ['-e', MALFORMED_STDIO], connectTimeoutMs: 5_000, callTimeoutMs: 20_000 } as never });
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await db?.$disconnect();
});

describe('a stdio upstream answering a call with an invalid JSON-RPC response', () => {
  it.each(['both', 'neither'])('fails that call promptly rather than at the call timeout (%s)', async (tool) => {
    const sessionId = (await postInitialize(gateway, tenant.slug, key)).headers.get('mcp-session-id') ?? '';
    await postInSession(gateway, tenant.slug, key, sessionId, { method: 'notifications/initialized' });
    const started = Date.now();
    const called = await messageOf(await postInSession(gateway, tenant.slug, key, sessionId, { id: 2, method: 'tools/call', params: { name: `mal__${tool}`, arguments: {} } }));
    const tookMs = Date.now() - started;
    expect(called).toMatchObject({ id: 2, error: { code: -32050, message: 'The upstream is unavailable' } });
    // The call timeout is 20 s: generous for a spawn and an initialize under load.
    expect(tookMs).toBeLessThan(10_000);
  }, 40_000);
});
