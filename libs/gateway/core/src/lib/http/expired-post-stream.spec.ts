/**
 * A credential that expires is refused from that moment on without a reload, and the streams of it end then: the SSE
 * stream a POST turned into too (ended with credential_no_longer_valid, relaying no more of the call's progress), not
 * only at the next reload (never, while the database is out of reach).
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
const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1', credentialId: 'k1' };

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

const apps: FastifyInstance[] = [];
const engines: SessionEngine[] = [];
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  await Promise.all(apps.splice(0).map((app) => app.close()));
  await Promise.all(engines.splice(0).map((engine) => engine.shutdown()));
});

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
