import { generateApiKey, hashApiKey } from '@portcullis/auth/api-keys';
import { createLogger } from '@portcullis/shared/util-logger';
import Fastify, { type FastifyInstance } from 'fastify';
import { connect, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiKeyIndex } from '../auth/api-key-index';
import { ApiKeyAuthenticator } from '../auth/authenticator';
import { TenantIndex } from '../auth/tenant-index';
import { SessionEngine } from '../dispatch/session-engine';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { registerMcpRoutes } from './mcp-routes';

/**
 * The DNS-rebinding check (GATEWAY_ALLOWED_HOSTS) of a request in absolute-form (`POST http://host/t/acme/mcp`) looks
 * at the host its target names, which RFC 9112 §3.2.2 has an origin server use in place of the Host header. Before, it
 * looked at the Host header only: a request for a host never allowed was served if its Host header was allowed.
 */
const logger = createLogger({ service: 'spec', level: 'fatal' });
const key = generateApiKey();
const apps: FastifyInstance[] = [];
const engines: SessionEngine[] = [];
const routeSets: { closeStreams(): void }[] = [];
afterEach(async () => {
  for (const routes of routeSets.splice(0)) routes.closeStreams();
  await Promise.all(apps.splice(0).map((app) => app.close()));
  await Promise.all(engines.splice(0).map((engine) => engine.shutdown()));
});

async function serve(rawFastPath: boolean): Promise<number> {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'docs')], () => undefined);
  const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
  const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), logger, options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 1_000 } });
  engines.push(engine);
  const keys = new ApiKeyIndex();
  keys.replace([[hashApiKey(key), { apiKeyId: 'k1', tenantId: 't1', agentClientId: 'a1', userId: null, expiresAt: null, revoked: false }]]);
  const tenants = new TenantIndex();
  tenants.replace([{ id: 't1', slug: 'acme', active: true }]);
  const app = Fastify();
  apps.push(app);
  routeSets.push(
    await registerMcpRoutes(app, {
      authenticator: new ApiKeyAuthenticator(keys, tenants),
      engine,
      logger,
      origin: { allowedHosts: new Set(['gw.example:3000']), allowedOrigins: new Set() },
      bodyLimitBytes: 64 * 1024,
      keepAliveMs: 15_000,
      rawFastPath,
    }),
  );
  await app.listen({ port: 0, host: '127.0.0.1' });
  return (app.server.address() as AddressInfo).port;
}

/** The status line of the answer to `request`, sent as is on a new connection. */
function statusOf(port: number, request: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(received.split('\r\n')[0] ?? '');
    };
    const timer = setTimeout(done, 2_000);
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      if (received.includes('\r\n')) done();
    });
    socket.on('error', done);
    socket.write(request);
  });
}

const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
const post = (target: string, host: string) =>
  `POST ${target} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${key}\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(init)}\r\nConnection: close\r\n\r\n${init}`;

describe.each([
  ['with the raw fast path', true],
  ['through the Fastify route', false],
])('Host validation of an absolute-form request (%s)', (_label, rawFastPath) => {
  it('checks the authority of the request-target, not the Host header the RFC says to ignore', async () => {
    const port = await serve(rawFastPath);
    // Baseline: the allowed host in origin-form is served, another Host refused.
    expect(await statusOf(port, post('/t/acme/mcp', 'gw.example:3000'))).toBe('HTTP/1.1 200 OK');
    expect(await statusOf(port, post('/t/acme/mcp', 'rebound.evil:3000'))).toBe('HTTP/1.1 403 Forbidden');
    // The request names rebound.evil as its target: the effective host is not allowed, whatever Host says.
    expect(await statusOf(port, post('http://rebound.evil:3000/t/acme/mcp', 'gw.example:3000'))).toBe('HTTP/1.1 403 Forbidden');
    // And the other way round: the target names the allowed host, the Host header another.
    expect(await statusOf(port, post('http://gw.example:3000/t/acme/mcp', 'rebound.evil:3000'))).toBe('HTTP/1.1 200 OK');
  });
});
