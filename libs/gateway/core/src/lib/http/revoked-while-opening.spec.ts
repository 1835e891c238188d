/**
 * A key revoked while its GET is being served. `revalidateStreams` (run on every reload of keys or tenants) ends the
 * open SSE streams of credentials that are gone; a GET authenticated just before the revocation, still looking its
 * session up when the reload's revalidation ran, was not in the set yet, and once attached nothing looked at its
 * credential again until the next reload. The credential is now checked again right before the stream opens.
 */
import type { Principal } from '@portcullis/gateway/mcp';
import { createLogger } from '@portcullis/shared/util-logger';
import { waitFor } from '@portcullis/shared/util-testing';
import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuthOutcome, Authenticator } from '../auth/authenticator';
import { SessionEngine } from '../dispatch/session-engine';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { registerMcpRoutes } from './mcp-routes';

const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1', credentialId: 'k1' };
const logger = createLogger({ service: 'spec', level: 'silent' });

/** An API-key-like authenticator (answers at once) whose one key can be revoked. */
class RevocableKey implements Authenticator {
  revoked = false;
  authenticate(authorization: string | string[] | undefined): AuthOutcome {
    if (this.revoked || authorization !== 'Bearer good') return { ok: false, reason: 'unauthenticated' };
    return { ok: true, principal, credentialId: 'k1' };
  }
  stillValid(): boolean {
    return !this.revoked;
  }
}

const apps: FastifyInstance[] = [];
const engines: SessionEngine[] = [];
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  await Promise.all(apps.splice(0).map((app) => app.close()));
  await Promise.all(engines.splice(0).map((engine) => engine.shutdown()));
});

describe('a key revoked while its standalone GET is being opened', () => {
  it('does not leave the revoked key with an open stream', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'docs')], () => undefined);
    const connector = new FakeConnector({ u1: { capabilities: { tools: {} }, handle: async () => ({ tools: [] }) } });
    const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), logger, options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 1_000 } });
    engines.push(engine);
    const authenticator = new RevocableKey();
    const app = Fastify();
    apps.push(app);
    const routes = await registerMcpRoutes(app, {
      authenticator,
      engine,
      logger,
      origin: { allowedHosts: new Set(), allowedOrigins: new Set() },
      bodyLimitBytes: 64 * 1024,
      keepAliveMs: 15_000,
    });
    closers.push(() => routes.closeStreams());
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/t/acme/mcp`;

    const init = await fetch(url, {
      method: 'POST',
      headers: { authorization: 'Bearer good', accept: 'application/json, text/event-stream', 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } }),
    });
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id') ?? '';

    // The session lookup of the GET takes a Redis round trip; the revocation's reload lands during it.
    let lookups = 0;
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const lookup = engine.session.bind(engine);
    engine.session = async (id, who) => {
      lookups += 1;
      await held;
      return lookup(id, who);
    };
    const controller = new AbortController();
    const opening = fetch(url, {
      headers: { authorization: 'Bearer good', accept: 'text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' },
      signal: controller.signal,
    });
    await waitFor(() => lookups === 1, { timeoutMs: 2_000, description: 'the GET is looking its session up' });
    authenticator.revoked = true;
    expect(routes.revalidateStreams()).toBe(0); // the reload that followed the revocation: nothing open yet
    release();
    const stream = await opening;
    // Refused (401), or opened and ended at once: either way the revoked key holds no stream.
    if (stream.status === 200) {
      const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
      const ended = (async () => {
        for (;;) if ((await reader.read()).done) return 'ended';
      })().catch(() => 'ended');
      const outcome = await Promise.race([ended, new Promise((resolve) => setTimeout(() => resolve('still open'), 1_000))]);
      controller.abort();
      expect(outcome).toBe('ended');
    } else {
      expect(stream.status).toBe(401);
    }
    expect(routes.openStreams).toBe(0);
  });
});
