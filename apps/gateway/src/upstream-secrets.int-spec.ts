/**
 * An upstream that quotes the credentials the gateway injected (in a JSON-RPC error's message or data, in its
 * instructions, in what its listing says of a tool) must show them neither to the agent nor in the gateway's log: over
 * Streamable HTTP (headers) and stdio (env and credential flags).
 */
import type { Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { parseKeyring, sealJson, upstreamSecretContext } from '@portcullis/auth/secrets';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, initializeResult, startJsonUpstream, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
const KEYRING = `k1:${randomBytes(32).toString('base64')}`;
const TOKEN = `tok-${randomBytes(12).toString('hex')}`;
const HEADER_KEY = `hdr-${randomBytes(12).toString('hex')}`;
const ENV_SECRET = `env-${randomBytes(12).toString('hex')}`;
const ARG_SECRET = `arg-${randomBytes(12).toString('hex')}`;
const REFERENCED_SECRET = `ref-${randomBytes(12).toString('hex')}`;
const SECRETS = [TOKEN, HEADER_KEY, ENV_SECRET, ARG_SECRET, REFERENCED_SECRET];

let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;
let upstream: Server;

/** Answers initialize and tools/list; tools/call quotes the headers it came with: refused, failed, or in a result. */
function startQuotingUpstream() {
  return startJsonUpstream({
    sessionId: 'quoting-1',
    onRequest: (request) => {
      const { method, params } = request.message;
      const authorization = String(request.headers['authorization']);
      if (method === 'initialize') {
        request.answer({ result: initializeResult(request, 'quoting', { instructions: `Authenticate with ${authorization}` }) });
      } else if (method === 'tools/list') {
        const description = `Calls the API as ${authorization}`;
        const schema = { type: 'object', properties: { key: { type: 'string', description: `defaults to ${String(request.headers['x-upstream-key'])}` } } };
        request.answer({ result: { tools: [{ name: 'refuse', description, inputSchema: schema }, { name: 'fail', inputSchema: { type: 'object' } }] } });
      } else if (params?.['name'] === 'whoami') {
        // An ordinary result that says how the call was authenticated (a debug tool, a 401 reported as text).
        request.answer({ result: { content: [{ type: 'text', text: `API error 401 for ${authorization} (key ${String(request.headers['x-upstream-key'])})` }], structuredContent: { authorization } } });
      } else if (params?.['name'] === 'fail') {
        // What the SDKs make of an exception thrown in a tool: an error result, quoting here what the tool was sent.
        request.answer({ result: { content: [{ type: 'text', text: `upstream API said: bad credentials ${authorization}` }], isError: true } });
      } else {
        const seen = `${authorization} ${String(request.headers['x-upstream-key'])}`;
        request.answer({ error: { code: -32001, message: `refused: you sent ${seen}`, data: { headers: { authorization: request.headers['authorization'], key: request.headers['x-upstream-key'] } } } });
      }
    },
  });
}

/** A stdio server that answers every request with an error quoting its env and its argv (and whether UPSTREAM_VALUE is in it). */
const QUOTING_STDIO = `process.stdin.on('data', (d) => { for (const l of String(d).split('\\n').filter(Boolean)) { const m = JSON.parse(l); if (m.id === undefined) continue;
  const result = m.method === 'initialize' ? { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'q', version: '1' } }
    : m.method === 'tools/list' ? { tools: [{ name: 'refuse', inputSchema: { type: 'object' } }] } : undefined;
  const answer = result ? { result } : { error: { code: -32603, message: 'refused with ' + process.env.API_SECRET, data: { argv: process.argv.slice(1), valueInArgv: process.argv.includes(process.env.UPSTREAM_VALUE) } } };
  process.stdout.write(JSON.stringify({ jsonrpc: '2.0', id: m.id, ...answer }) + '\\n'); } });`;

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

beforeAll(async () => {
  const started = await startQuotingUpstream();
  upstream = started.server;
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  ({ key } = await createAgentWithKey(db, tenant.id, 'secrets-agent'));
  const keyring = parseKeyring(KEYRING);
  const create = async (name: string, data: Record<string, unknown>, secrets: { headers?: Record<string, string>; env?: Record<string, string> }) => {
    const row = await db.upstream.create({ data: { tenantId: tenant.id, name, toolPrefix: name, connectTimeoutMs: 5_000, callTimeoutMs: 5_000, ...data } as never });
    const id = (row as { id: string }).id;
    const sealed: Record<string, unknown> = { encryptionKeyId: keyring.activeKeyId };
    if (secrets.headers) sealed['headersCiphertext'] = sealJson(keyring, secrets.headers, upstreamSecretContext(tenant.id, id, 'headers')).ciphertext;
    if (secrets.env) sealed['envCiphertext'] = sealJson(keyring, secrets.env, upstreamSecretContext(tenant.id, id, 'env')).ciphertext;
    await db.upstream.update({ where: { id }, data: sealed as never });
  };
  await create('web', { transport: 'streamable_http', url: started.url }, { headers: { Authorization: `Bearer ${TOKEN}`, 'X-Upstream-Key': HEADER_KEY } });
  await create('local', { transport: 'stdio', command: process.execPath, args: ['-e', QUOTING_STDIO, '--', '--api-token', ARG_SECRET] }, { env: { API_SECRET: ENV_SECRET } });
  // The credential in the sealed env, the argument referencing it (as the control plane asks): an env name that is no
  // credential's, so only the resolved flag value tells the mask what to hide.
  await create('byref', { transport: 'stdio', command: process.execPath, args: ['-e', QUOTING_STDIO, '--', '--api-token', '${UPSTREAM_VALUE}'] }, { env: { UPSTREAM_VALUE: REFERENCED_SECRET } });
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_SECRETS_KEYRING: KEYRING } });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await db?.$disconnect();
  await new Promise((resolve) => upstream?.close(resolve));
});

describe('a stdio upstream whose arguments reference its env as ${NAME}', () => {
  it('is spawned with the value, and the value is masked where the server quotes its arguments', async () => {
    const init = await rpc(undefined, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? undefined;
    await rpc(sessionId, { jsonrpc: '2.0', method: 'notifications/initialized' });
    const called = await rpc(sessionId, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'byref__refuse', arguments: {} } });
    const { argv, valueInArgv } = JSON.parse(called.text).error.data as { argv: string[]; valueInArgv: boolean };
    expect(valueInArgv).toBe(true);
    // Not the reference as written: the resolved value, masked as a credential flag's value is.
    expect(argv.slice(-2)).toEqual(['--api-token', '[redacted]']);
    expect(called.text).not.toContain(REFERENCED_SECRET);
    expect(gateway.logs()).not.toContain(REFERENCED_SECRET);
  }, 30_000);
});

describe('an upstream quoting the credentials the gateway gave it', () => {
  it('has them masked in the error the agent gets and in the log', async () => {
    const init = await rpc(undefined, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? undefined;
    expect(sessionId).toBeDefined();
    await rpc(sessionId, { jsonrpc: '2.0', method: 'notifications/initialized' });
    const web = await rpc(sessionId, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'web__refuse', arguments: {} } });
    const local = await rpc(sessionId, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'local__refuse', arguments: {} } });
    const failed = await rpc(sessionId, { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'web__fail', arguments: {} } });
    expect(JSON.parse(failed.text)).toMatchObject({ result: { isError: true, content: [{ type: 'text', text: 'upstream API said: bad credentials [redacted]' }] } });
    // The upstream's error still reaches the agent, its code and its words, with the credentials masked.
    expect(JSON.parse(web.text)).toMatchObject({ error: { code: -32001, message: 'refused: you sent [redacted] [redacted]', data: { headers: { authorization: '[redacted]', key: '[redacted]' } } } });
    expect(JSON.parse(local.text)).toMatchObject({ error: { code: -32603, message: 'refused with [redacted]' } });
    expect(JSON.stringify(JSON.parse(local.text).error.data.argv)).toContain('"--api-token","[redacted]"');
    for (const secret of SECRETS) {
      expect(web.text + local.text + failed.text).not.toContain(secret);
      expect(gateway.logs()).not.toContain(secret);
    }
  }, 30_000);

  it('has them masked in an ordinary result that quotes them, what else it says kept', async () => {
    const init = await rpc(undefined, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? undefined;
    await rpc(sessionId, { jsonrpc: '2.0', method: 'notifications/initialized' });
    const called = await rpc(sessionId, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'web__whoami', arguments: {} } });
    expect(JSON.parse(called.text)).toEqual({
      jsonrpc: '2.0',
      id: 2,
      result: { content: [{ type: 'text', text: 'API error 401 for [redacted] (key [redacted])' }], structuredContent: { authorization: '[redacted]' } },
    });
    for (const secret of SECRETS) expect(called.text).not.toContain(secret);
  }, 30_000);

  it('has them masked in its instructions and in what it lists, its tools still called by their names', async () => {
    const init = await rpc(undefined, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    const sessionId = init.headers.get('mcp-session-id') ?? undefined;
    await rpc(sessionId, { jsonrpc: '2.0', method: 'notifications/initialized' });
    expect(JSON.parse(init.text).result.instructions).toContain('web: Authenticate with [redacted]');
    const listed = await rpc(sessionId, { jsonrpc: '2.0', id: 2, method: 'tools/list' });
    type Listed = { name: string; description?: string; inputSchema: { properties?: { key?: { description?: string } } } };
    const refuse = (JSON.parse(listed.text).result.tools as Listed[]).find((tool) => tool.name === 'web__refuse');
    expect(refuse?.description).toBe('Calls the API as [redacted]');
    expect(refuse?.inputSchema.properties?.key?.description).toBe('defaults to [redacted]');
    const called = await rpc(sessionId, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'web__refuse', arguments: {} } });
    expect(JSON.parse(called.text)).toMatchObject({ error: { code: -32001 } });
    for (const secret of SECRETS) expect(init.text + listed.text).not.toContain(secret);
  }, 30_000);
});
