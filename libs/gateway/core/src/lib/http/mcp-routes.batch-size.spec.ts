import { createLogger } from '@portcullis/shared/util-logger';
import * as mcp from '@portcullis/gateway/mcp';
import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { afterAll, expect, it, vi } from 'vitest';
import type { Authenticator } from '../auth/authenticator';
import type { SessionEngine } from '../dispatch/session-engine';
import { registerMcpRoutes } from './mcp-routes';

vi.mock('@portcullis/gateway/mcp', async (importOriginal) => {
  const actual = await importOriginal<typeof import('@portcullis/gateway/mcp')>();
  return { ...actual, classify: vi.fn(actual.classify) };
});

const principal: mcp.Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1', credentialId: 'k1' };
const authenticator: Authenticator = { authenticate: () => ({ ok: true, principal, credentialId: 'k1' }), stillValid: () => true };
let app: FastifyInstance;
afterAll(() => app?.close());

// A batch past MAX_BATCH (100) was refused only after every element was classified and scanned for inexact numbers:
// a 4 MiB body (the default GATEWAY_BODY_LIMIT_BYTES) of `1e400` elements held the event loop about 1.4 s (found by a
// review, 2026-12-07).
it('refuses an oversized batch before classifying any of its elements', async () => {
  app = Fastify();
  const logger = createLogger({ service: 'spec', level: 'fatal' });
  await registerMcpRoutes(app, { authenticator, engine: {} as SessionEngine, logger, origin: { allowedHosts: new Set(), allowedOrigins: new Set() }, bodyLimitBytes: 4 * 1024 * 1024, keepAliveMs: 15_000 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  const body = `[${Array(699_000).fill('1e400').join(',')}]`;
  const classify = vi.mocked(mcp.classify);
  classify.mockClear();
  const res = await fetch(`http://127.0.0.1:${port}/t/acme/mcp`, {
    method: 'POST',
    headers: { authorization: 'Bearer x', accept: 'application/json, text/event-stream', 'content-type': 'application/json' },
    body,
  });
  expect(res.status).toBe(400);
  expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/at most 100 messages/);
  expect(classify).not.toHaveBeenCalled();
  // A batch within the bound is still classified element by element (refused here for its elements, not its size).
  const small = await fetch(`http://127.0.0.1:${port}/t/acme/mcp`, {
    method: 'POST',
    headers: { authorization: 'Bearer x', accept: 'application/json, text/event-stream', 'content-type': 'application/json' },
    body: '[1, 2]',
  });
  expect(small.status).toBe(400);
  expect(classify).toHaveBeenCalledTimes(2);
});
