/**
 * An agent's malformed answer to a request the gateway relayed to it (an elicitation) is refused with 400, and the
 * upstream's request ends then with an error, as the upstream side ends a call on a malformed answer: it is not left
 * waiting for an answer that can no longer come, up to the call's timeout. (Batches and the legacy transport share
 * `endRelayedWith` with this path.)
 */
import type { Principal } from '@portcullis/gateway/mcp';
import { createLogger } from '@portcullis/shared/util-logger';
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

class Admit implements Authenticator {
  authenticate(): AuthOutcome {
    return { ok: true, principal, credentialId: 'k1' } as AuthOutcome;
  }
  stillValid(): boolean {
    return true;
  }
}

const apps: FastifyInstance[] = [];
const engines: SessionEngine[] = [];
const routeSets: { closeStreams(): void }[] = [];
afterEach(async () => {
  // The engine first: the relayed request it still holds is dropped, so the call (and its POST stream) ends.
  await Promise.all(engines.splice(0).map((engine) => engine.shutdown()));
  for (const routes of routeSets.splice(0)) routes.closeStreams();
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

describe('an agent answers a relayed elicitation with a malformed message', () => {
  it.each([
    ['an error whose code is not a number', (id: string) => ({ jsonrpc: '2.0', id, error: { code: 'declined', message: 'no' } })],
    ['a result that is not an object', (id: string) => ({ jsonrpc: '2.0', id, result: 'accept' })],
  ])('%s: the upstream request ends at once instead of waiting out the call timeout', async (_label, answer) => {
    const registry = new UpstreamRegistry('__');
    registry.replace([{ ...fakeConfig('u1', 'docs'), callTimeoutMs: 20_000 }], () => undefined);
    let upstreamOutcome: string | undefined;
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: {} },
        handle: async (method, _params, options) => {
          if (method === 'tools/list') return { tools: [{ name: 'confirm', inputSchema: { type: 'object' } }] };
          const asked = options?.onServerRequest?.(
            { jsonrpc: '2.0', id: 7, method: 'elicitation/create', params: { message: 'Sure?', requestedSchema: { type: 'object', properties: {} } } },
            new AbortController().signal,
          );
          if (asked === undefined) throw new Error('no relay');
          try {
            await asked;
            upstreamOutcome = 'answered';
          } catch (error) {
            upstreamOutcome = `refused: ${(error as Error).message}`;
          }
          return { content: [{ type: 'text', text: upstreamOutcome }] };
        },
      },
    });
    const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), logger, options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 1_000 } });
    engines.push(engine);
    const app = Fastify();
    apps.push(app);
    const routes = await registerMcpRoutes(app, {
      authenticator: new Admit(),
      engine,
      logger,
      origin: { allowedHosts: new Set(), allowedOrigins: new Set() },
      bodyLimitBytes: 64 * 1024,
      keepAliveMs: 15_000,
      rawFastPath: true,
    });
    routeSets.push(routes);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/t/acme/mcp`;
    const post = (body: unknown, headers: Record<string, string> = {}) =>
      fetch(url, {
        method: 'POST',
        headers: { authorization: 'Bearer good', accept: 'application/json, text/event-stream', 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      });
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: { elicitation: {} }, clientInfo: { name: 'spec', version: '1' } } });
    expect(init.status).toBe(200);
    await init.text();
    const session = { 'mcp-session-id': init.headers.get('mcp-session-id') ?? '', 'mcp-protocol-version': '2025-11-25' };

    const call = await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__confirm', arguments: {} } }, session);
    const reader = (call.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    let relayedId: string | undefined;
    while (relayedId === undefined) {
      const read = await reader.read();
      if (read.done) throw new Error(`the call's stream ended before the elicitation: ${text}`);
      text += decoder.decode(read.value, { stream: true });
      relayedId = /"id":"(pcs\.[^"]+)","method":"elicitation\/create"/.exec(text)?.[1];
    }

    const answered = await post(answer(relayedId), session);
    // The agent is told its answer was malformed...
    expect(answered.status).toBe(400);
    await answered.text();
    // ...and the upstream, which can now never get an answer, is not left waiting until the call timeout (20 s).
    const started = Date.now();
    while (upstreamOutcome === undefined && Date.now() - started < 3_000) await new Promise((resolve) => setTimeout(resolve, 50));
    await reader.cancel().catch(() => undefined);
    expect(upstreamOutcome ?? 'still waiting', 'the upstream elicitation 3 s after the agent answered it').toMatch(/^refused/);
  }, 15_000);
});
