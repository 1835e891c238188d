import type { Principal } from '@portcullis/gateway/mcp';
import { createLogger } from '@portcullis/shared/util-logger';
import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuthOutcome, Authenticator } from '../auth/authenticator';
import { SessionEngine } from '../dispatch/session-engine';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore } from '../testing/fake-upstreams';
import { registerMcpRoutes } from './mcp-routes';

const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1', credentialId: 'k1' };
let logs = '';
const logger = createLogger({ service: 'spec', level: 'info', destination: { write: (line: string) => void (logs += line) } });

type Mode = 'ok' | 'refused' | 'throws';

/** An authenticator that answers later (as an OAuth token check would): what the fast POST path leaves to handlePost. */
class SlowAuthenticator implements Authenticator {
  mode: Mode = 'ok';
  calls = 0;
  authenticate(authorization: string | string[] | undefined): Promise<AuthOutcome> {
    this.calls += 1;
    const mode = this.mode;
    return new Promise((resolve, reject) =>
      setTimeout(() => {
        if (mode === 'throws') reject(new Error('token introspection at http://10.1.2.3/introspect failed: secret=hunter2'));
        else if (mode === 'refused' || authorization !== 'Bearer good') resolve({ ok: false, reason: 'unauthenticated' });
        else resolve({ ok: true, principal, credentialId: 'k1' });
      }, 20),
    );
  }
  stillValid(): boolean {
    return true;
  }
}

const apps: FastifyInstance[] = [];
const engines: SessionEngine[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
  await Promise.all(engines.splice(0).map((engine) => engine.shutdown()));
});

async function serve(rawFastPath: boolean) {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'docs')], () => undefined);
  const connector = new FakeConnector({
    u1: {
      capabilities: { tools: {} },
      handle: async (method, params) =>
        method === 'tools/list' ? { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] } : { content: [{ type: 'text', text: JSON.stringify(params?.['arguments']) }] },
    },
  });
  const engine = new SessionEngine({
    registry,
    connector,
    sessions: new MemorySessionStore(),
    logger,
    options: { separator: '__', listTimeoutMs: 1_000, serverInfo: { name: 'portcullis', version: 'spec' }, localIdleMs: 60_000, replicaId: 'r1' },
  });
  engines.push(engine);
  const authenticator = new SlowAuthenticator();
  const app = Fastify();
  apps.push(app);
  // Which way a POST went: the raw fast path answers before Fastify sees the request.
  const viaFastify = { count: 0 };
  app.addHook('onRequest', async (request) => {
    if (request.method === 'POST') viaFastify.count += 1;
  });
  await registerMcpRoutes(app, {
    authenticator,
    engine,
    logger,
    origin: { allowedHosts: new Set(), allowedOrigins: new Set() },
    bodyLimitBytes: 64 * 1024,
    keepAliveMs: 15_000,
    rawFastPath,
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}/t/acme/mcp`;
  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(url, {
      method: 'POST',
      headers: { authorization: 'Bearer good', accept: 'application/json, text/event-stream', 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
  /** A session opened while the authenticator admits, and a tools/call on it. */
  const session = async () => {
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    expect(sessionId).not.toBe('');
    return (id: number) =>
      post({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'docs__echo', arguments: { said: 'hi' } } }, { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' });
  };
  const toolCalls = () => connector.calls.filter((c) => c.method === 'tools/call').length;
  return { authenticator, post, session, toolCalls, viaFastify };
}

describe.each([
  ['the raw fast path', true],
  ['the Fastify route', false],
])('MCP POST with an authenticator that must wait, through %s', (_label, rawFastPath) => {
  it('serves the request once the authenticator admits it', async () => {
    const { authenticator, session, toolCalls, viaFastify } = await serve(rawFastPath);
    const call = await (await session())(2);
    expect(call.status).toBe(200);
    expect(await call.json()).toMatchObject({ id: 2, result: { content: [{ type: 'text', text: '{"said":"hi"}' }] } });
    // Once per request: the fast path's pending answer is used, not asked for again.
    expect(authenticator.calls).toBe(2);
    expect(toolCalls()).toBe(1);
    expect(viaFastify.count).toBe(rawFastPath ? 0 : 2);
  });

  it('answers 401 with a Bearer challenge when the authenticator refuses, and nothing reaches an upstream', async () => {
    const { authenticator, session, toolCalls } = await serve(rawFastPath);
    const call = await session();
    authenticator.mode = 'refused';
    const res = await call(2);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
    expect(await res.json()).toMatchObject({ jsonrpc: '2.0', error: { message: 'Authentication required' } });
    expect(toolCalls()).toBe(0);
  });

  it('answers a failing authenticator with a 500 that names an error id and nothing of the failure', async () => {
    const { authenticator, session, toolCalls } = await serve(rawFastPath);
    const call = await session();
    authenticator.mode = 'throws';
    logs = '';
    const res = await call(2);
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toMatch(/10\.1\.2\.3|hunter2|introspect/);
    const body = JSON.parse(text) as { error: { data: { errorId: string } } };
    expect(body.error.data.errorId).toMatch(/^[0-9a-f]{16}$/);
    // The failure is in the log under that id, for the operator.
    expect(logs).toContain(body.error.data.errorId);
    expect(toolCalls()).toBe(0);
  });
});
