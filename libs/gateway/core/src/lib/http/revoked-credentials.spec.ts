/**
 * Streams of a credential that is gone (a key revoked or expired, its tenant suspended): none opens, none goes on.
 * - A GET authenticated just before a revocation, still looking its session up when the reload's revalidation ran,
 *   was not among the streams closed, and nothing looked at its credential again until the next reload: it is checked
 *   again right before the stream opens.
 * - Once `revalidateStreams` ends the SSE stream a POST turned into, nothing more of its call reaches the agent: a
 *   server request its upstream makes afterwards is refused, not sent to the session's standalone stream (open under
 *   another key of the same agent client).
 * - A POST's stream whose key expires ends at the expiry, as standalone and legacy streams do, not at the next reload
 *   (never, while the database is out of reach).
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

const logger = createLogger({ service: 'spec', level: 'silent' });
const apps: FastifyInstance[] = [];
const engines: SessionEngine[] = [];
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  await Promise.all(apps.splice(0).map((app) => app.close()));
  await Promise.all(engines.splice(0).map((engine) => engine.shutdown()));
});

const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1', credentialId: 'k1' };

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

const who = (credentialId: string): Principal => ({ tenantId: 't1', kind: 'agent_client', id: 'a1', credentialId });

/** Two keys of one agent client (a rotation): `old` can be revoked. */
class TwoKeys implements Authenticator {
  revoked = false;
  authenticate(authorization: string | string[] | undefined): AuthOutcome {
    if (authorization === 'Bearer old' && !this.revoked) return { ok: true, principal: who('old'), credentialId: 'old' };
    if (authorization === 'Bearer new') return { ok: true, principal: who('new'), credentialId: 'new' };
    return { ok: false, reason: 'unauthenticated' };
  }
  stillValid(credentialId: string): boolean {
    return credentialId === 'new' || !this.revoked;
  }
}


describe('a POST stream ended for a revoked key', () => {
  it("relays none of its call's later server requests to the agent (not on the standalone stream either)", async () => {
    let go: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (go = resolve));
    const asked: string[] = [];
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'docs')], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: {} },
        handle: async (method, params, options) => {
          if (method === 'tools/list') return { tools: [{ name: 'slow', inputSchema: { type: 'object' } }] };
          if (method !== 'tools/call') return {};
          const token = (params?.['_meta'] as Record<string, unknown> | undefined)?.['progressToken'];
          options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: 1, message: 'working' } });
          await gate;
          const answer = options?.onServerRequest?.(
            { jsonrpc: '2.0', id: 'e1', method: 'elicitation/create', params: { message: 'Approve the transfer?', requestedSchema: { type: 'object', properties: {} } } },
            new AbortController().signal,
          );
          await answer?.then(
            () => asked.push('answered'),
            (error: unknown) => asked.push(`refused: ${String((error as Error).message)}`),
          );
          return { content: [{ type: 'text', text: 'done' }] };
        },
      },
    });
    const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), logger, options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 1_000 } });
    engines.push(engine);
    const authenticator = new TwoKeys();
    const app = Fastify();
    apps.push(app);
    const routes = await registerMcpRoutes(app, { authenticator, engine, logger, origin: { allowedHosts: new Set(), allowedOrigins: new Set() }, bodyLimitBytes: 64 * 1024, keepAliveMs: 15_000 });
    closers.push(() => routes.closeStreams());
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/t/acme/mcp`;
    const headers = (key: string) => ({ authorization: `Bearer ${key}`, accept: 'application/json, text/event-stream', 'content-type': 'application/json' });

    const init = await fetch(url, {
      method: 'POST',
      headers: headers('new'),
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: { elicitation: {} }, clientInfo: { name: 'spec', version: '1' } } }),
    });
    expect(init.status).toBe(200);
    await init.text();
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    const inSession = (key: string) => ({ ...headers(key), 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' });

    // The agent's standalone stream, opened with its new key.
    const controller = new AbortController();
    const get = await fetch(url, { headers: { ...inSession('new'), accept: 'text/event-stream' }, signal: controller.signal });
    expect(get.status).toBe(200);
    let standalone = '';
    const getReader = (get.body as ReadableStream<Uint8Array>).getReader();
    void (async () => {
      const decoder = new TextDecoder();
      for (let chunk = await getReader.read(); !chunk.done; chunk = await getReader.read()) standalone += decoder.decode(chunk.value, { stream: true });
    })().catch(() => undefined);

    // A slow call made with the old key: it streams its progress.
    const post = await fetch(url, {
      method: 'POST',
      headers: inSession('old'),
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__slow', arguments: {}, _meta: { progressToken: 'p1' } } }),
    });
    expect(post.headers.get('content-type')).toContain('text/event-stream');
    let posted = '';
    const postReader = (post.body as ReadableStream<Uint8Array>).getReader();
    const postDone = (async () => {
      const decoder = new TextDecoder();
      for (let chunk = await postReader.read(); !chunk.done; chunk = await postReader.read()) posted += decoder.decode(chunk.value, { stream: true });
    })().catch(() => undefined);
    await waitFor(() => posted.includes('working'), { timeoutMs: 2_000, description: 'progress streamed' });

    // The old key is revoked: its POST stream ends with the error.
    authenticator.revoked = true;
    routes.revalidateStreams();
    await postDone;
    expect(posted).toContain('credential_no_longer_valid');

    // The call goes on upstream and asks the agent something: it must not reach the agent any more.
    go();
    await new Promise((resolve) => setTimeout(resolve, 500));
    controller.abort();
    expect(standalone).not.toContain('elicitation/create');
  });
});

/** An API key that expires at `expiresAt` (as ApiKeyAuthenticator: refused from then on, no reload needed). */
class ExpiringKey implements Authenticator {
  constructor(readonly at: number) {}
  authenticate(authorization: string | string[] | undefined): AuthOutcome {
    if (authorization !== 'Bearer good' || Date.now() >= this.at) return { ok: false, reason: 'unauthenticated' };
    return { ok: true, principal, credentialId: 'k1' };
  }
  stillValid(): boolean {
    return Date.now() < this.at;
  }
  expiresAt(): number {
    return this.at;
  }
}


describe('a POST stream whose key expires mid-call (no reload meanwhile)', () => {
  it('ends at the expiry with credential_no_longer_valid, as the standalone stream does, relaying no more progress', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'docs')], () => undefined);
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: {} },
        handle: async (method, params, options) => {
          if (method === 'tools/list') return { tools: [{ name: 'tick', inputSchema: { type: 'object' } }] };
          if (method !== 'tools/call') return {};
          const token = (params?.['_meta'] as Record<string, unknown> | undefined)?.['progressToken'];
          for (let n = 1; n <= 25; n++) {
            options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: n, message: `tick-${n}` } });
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
          return { content: [{ type: 'text', text: 'ticked' }] };
        },
      },
    });
    const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), logger, options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 1_000 } });
    engines.push(engine);
    const authenticator = new ExpiringKey(Date.now() + 1_000);
    const app = Fastify();
    apps.push(app);
    const routes = await registerMcpRoutes(app, { authenticator, engine, logger, origin: { allowedHosts: new Set(), allowedOrigins: new Set() }, bodyLimitBytes: 64 * 1024, keepAliveMs: 15_000 });
    closers.push(() => routes.closeStreams());
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/t/acme/mcp`;
    const headers = { authorization: 'Bearer good', accept: 'application/json, text/event-stream', 'content-type': 'application/json' };
    const init = await fetch(url, {
      method: 'POST',
      headers,
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } }),
    });
    await init.text();
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    const post = await fetch(url, {
      method: 'POST',
      headers: { ...headers, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__tick', arguments: {}, _meta: { progressToken: 'p1' } } }),
    });
    expect(post.headers.get('content-type')).toContain('text/event-stream');
    let text = '';
    const afterExpiry: string[] = [];
    const reader = (post.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    const reading = (async () => {
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        const part = decoder.decode(chunk.value, { stream: true });
        text += part;
        if (Date.now() > authenticator.at + 500) afterExpiry.push(...(part.match(/tick-\d+/g) ?? []));
      }
    })();
    await waitFor(() => text.includes('tick-1'), { timeoutMs: 2_000, description: 'progress streamed' });
    await reading;
    expect(afterExpiry).toEqual([]);
    expect(text).toContain('credential_no_longer_valid');
  }, 10_000);
});
