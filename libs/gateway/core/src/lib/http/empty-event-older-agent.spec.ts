import type { Principal } from '@portcullis/gateway/mcp';
import { createLogger } from '@portcullis/shared/util-logger';
import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import type { Authenticator } from '../auth/authenticator';
import type { ReplayEntry, ReplayLog } from '../dispatch/replay-log';
import { SessionEngine } from '../dispatch/session-engine';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { registerMcpRoutes, type McpRoutes } from './mcp-routes';

/**
 * MCP 2025-11-25 introduced SSE events with an id and empty data (SEP-1699 priming); the gateway primes only 2025-11-25
 * agents (`primesStreams`), as older clients parse every event's data as a JSON-RPC message. A resumed POST stream
 * whose call was then cancelled ended with an empty-data event for every version (the log's empty end marker): a
 * 2025-06-18 agent got an event it reads as a malformed message (found by review). It now gets the id alone.
 */
const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1', credentialId: 'k1' };
const authenticator: Authenticator = { authenticate: () => ({ ok: true, principal, credentialId: 'k1' }), stillValid: () => true };
const logger = createLogger({ service: 'spec', level: 'fatal' });

const apps: FastifyInstance[] = [];
const engines: SessionEngine[] = [];
const routeSets: McpRoutes[] = [];
afterEach(async () => {
  for (const routes of routeSets.splice(0)) void routes.closeStreams();
  await Promise.all(apps.splice(0).map((app) => app.close()));
  await Promise.all(engines.splice(0).map((engine) => engine.shutdown()));
});

/** A replay log in memory (as mcp-routes.spec.ts's). */
function memoryReplay(): ReplayLog {
  const streams = new Map<string, ReplayEntry[]>();
  return {
    open: (_session, streamId) => {
      const entries = streams.get(streamId) ?? [];
      streams.set(streamId, entries);
      return { append: (seq, data, final) => void entries.push({ seq, data, final }), keep: () => undefined };
    },
    read: async (_session, streamId, afterSeq) => streams.get(streamId)?.filter((entry) => entry.seq > afterSeq),
    finished: async (_session, streamId) => {
      const entries = streams.get(streamId);
      return entries === undefined || (entries.at(-1)?.final ?? false);
    },
    follow: async (_session, streamId, afterSeq, onEntry, signal) => {
      let last = afterSeq;
      while (!signal.aborted) {
        const entries = streams.get(streamId);
        if (entries === undefined) return 'gone';
        for (const entry of entries.filter((one) => one.seq > last)) {
          last = entry.seq;
          onEntry(entry);
          if (entry.final) return 'final';
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return 'aborted';
    },
    pendingRequests: async () => undefined,
  };
}

it('sends no empty-data SSE event to a 2025-06-18 agent whose resumed call is cancelled', async () => {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'docs')], () => undefined);
  const connector = new FakeConnector({
    u1: {
      capabilities: { tools: {} },
      handle: (method, params, options) =>
        method === 'tools/list'
          ? Promise.resolve({ tools: [{ name: 'echo', inputSchema: { type: 'object' } }] })
          : new Promise((resolve) => {
              // One progress message (the POST becomes a stream with an event id), then work until cancelled.
              const token = (params?.['_meta'] as Record<string, unknown> | undefined)?.['progressToken'];
              options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: 1 } });
              options?.signal?.addEventListener('abort', () => resolve({ content: [] }));
            }),
    },
  });
  const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), logger, options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 1_000 } });
  engines.push(engine);
  const app = Fastify();
  apps.push(app);
  routeSets.push(
    await registerMcpRoutes(app, { authenticator, engine, logger, origin: { allowedHosts: new Set(), allowedOrigins: new Set() }, bodyLimitBytes: 64 * 1024, keepAliveMs: 15_000, replay: memoryReplay() }),
  );
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/t/acme/mcp`;
  const base = { authorization: 'Bearer x', accept: 'application/json, text/event-stream', 'content-type': 'application/json' };
  const post = (body: unknown, headers: Record<string, string> = {}) => fetch(url, { method: 'POST', headers: { ...base, ...headers }, body: JSON.stringify(body) });

  const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } });
  expect(init.status).toBe(200);
  const session = { 'mcp-session-id': init.headers.get('mcp-session-id') ?? '', 'mcp-protocol-version': '2025-06-18' };

  const call = await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__echo', arguments: {}, _meta: { progressToken: 'p1' } } }, session);
  expect(call.headers.get('content-type')).toBe('text/event-stream');
  const reader = call.body?.getReader() as ReadableStreamDefaultReader<Uint8Array>;
  const first = new TextDecoder().decode((await reader.read()).value);
  const lastEventId = /^id: (\S+)$/m.exec(first)?.[1] ?? '';
  expect(lastEventId).not.toBe('');
  // The connection drops; the agent resumes the stream, then cancels the call.
  await reader.cancel();
  const resumed = await fetch(url, { headers: { authorization: 'Bearer x', accept: 'text/event-stream', ...session, 'last-event-id': lastEventId } });
  expect(resumed.status).toBe(200);
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect((await post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 2 } }, session)).status).toBe(202);

  const events = (await resumed.text()).split('\n\n').filter((event) => event.trim() !== '' && !event.startsWith(':'));
  // Every event a 2025-06-18 agent gets that is dispatched (has data lines) carries a JSON-RPC message: none with empty
  // data. The stream's end is an id alone (nothing dispatched).
  for (const event of events) {
    const lines = event.split('\n').filter((line) => line.startsWith('data:'));
    if (lines.length === 0) continue;
    const data = lines.map((line) => line.slice(5).trimStart()).join('\n');
    expect(data, `event ${JSON.stringify(event)}`).not.toBe('');
  }
  expect(events.at(-1)).toMatch(/^id: \S+$/);
});
