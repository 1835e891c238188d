import type { Principal } from '@portcullis/gateway/mcp';
import { createLogger } from '@portcullis/shared/util-logger';
import Fastify, { type FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import type { Authenticator } from '../auth/authenticator';
import { newStreamId, RedisReplayLog } from '../dispatch/replay-log';
import { SessionEngine } from '../dispatch/session-engine';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { registerMcpRoutes, type McpRoutes } from './mcp-routes';

/**
 * The GET route answers a POST-stream resume 503 ("try again") when the replay log cannot be read, and 405 ("nothing
 * left to resume", on which the SDK client stops resuming for good) only when the log says so. ioredis settles a
 * pipeline whose commands failed (a command timeout during a Redis stall, LOADING after a restart) with [error, null]
 * pairs rather than rejecting, and RedisReplayLog.read took such a Redis for "no such log": 405, and the agent never
 * got its call's answer (found by review).
 */
const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1', credentialId: 'k1' };
const authenticator: Authenticator = { authenticate: () => ({ ok: true, principal, credentialId: 'k1' }), stillValid: () => true };
const logger = createLogger({ service: 'spec', level: 'fatal' });

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('answers a resume 503 (try again), not 405, while Redis does not answer the replay log read', async () => {
  // A Redis that accepts connections and stops answering (a stall or partition): each command hits the client's
  // command timeout, as the gateway's own client does after REDIS_COMMAND_TIMEOUT_MS.
  const stalled: Server = createServer((socket) => socket.on('data', () => undefined));
  await new Promise<void>((resolve) => stalled.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => stalled.close(resolve)));
  const redis = new Redis({ host: '127.0.0.1', port: (stalled.address() as AddressInfo).port, enableReadyCheck: false, maxRetriesPerRequest: 0, commandTimeout: 200 });
  redis.on('error', () => undefined);
  cleanups.push(() => redis.disconnect());
  const replay = new RedisReplayLog(redis, { ttlMs: 60_000, leaseMs: 10_000, maxEntries: 1_000, maxBytes: 1_000_000, maxFollowers: 4 }, logger);

  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'docs')], () => undefined);
  const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
  const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), logger, options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 1_000 } });
  cleanups.push(() => engine.shutdown());
  const app: FastifyInstance = Fastify();
  const routes: McpRoutes = await registerMcpRoutes(app, { authenticator, engine, logger, origin: { allowedHosts: new Set(), allowedOrigins: new Set() }, bodyLimitBytes: 64 * 1024, keepAliveMs: 15_000, replay });
  cleanups.push(() => app.close());
  cleanups.push(() => routes.closeStreams());
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/t/acme/mcp`;

  const init = await fetch(url, {
    method: 'POST',
    headers: { authorization: 'Bearer x', accept: 'application/json, text/event-stream', 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } }),
  });
  expect(init.status).toBe(200);
  const sessionId = init.headers.get('mcp-session-id') ?? '';

  // The agent resumes a POST stream of its session (an id the gateway minted) while Redis is stalled.
  const resume = await fetch(url, {
    headers: { authorization: 'Bearer x', accept: 'text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25', 'last-event-id': `${newStreamId('p')}_3` },
  });
  const body = await resume.text();
  expect(resume.status, body).toBe(503);
});
