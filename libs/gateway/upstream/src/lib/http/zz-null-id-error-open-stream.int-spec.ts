/**
 * JSON-RPC: an error response whose id is null is the server's answer to a request it could not read (parse error,
 * invalid request). On a call's own SSE stream (scoped to that one POSTed request) it can only be about that call, yet
 * the connector matches answers by id alone: the error is dropped, and if the upstream keeps the stream open the call
 * waits out its whole callTimeoutMs (counted against the circuit) instead of failing at once with the upstream's error.
 */
import type { IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { identity, rawServer, upstreamConfig, type RawServer } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

const servers: RawServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const initializeResult = { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'raw', version: '1' } };

function readJson(req: IncomingMessage): Promise<{ id?: number; method?: string }> {
  return new Promise((resolve) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => resolve(text === '' ? {} : (JSON.parse(text) as { id?: number; method?: string })));
  });
}

describe('Streamable HTTP: an error answer with a null id on a call stream the upstream keeps open', () => {
  for (const [what, answer] of [
    ['a parse error (id null)', (_id: number) => ({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } })],
    ['an internal error (id null)', (_id: number) => ({ jsonrpc: '2.0', id: null, error: { code: -32603, message: 'Internal error' } })],
  ] as const) {
    it(`ends the call at once (${what}), not at its timeout`, async () => {
      const server = await rawServer((req, res) => {
        if (req.method !== 'POST') {
          res.writeHead(405).end();
          return;
        }
        void readJson(req).then((message) => {
          if (message.method === 'initialize') {
            res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's1' });
            res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: initializeResult }));
          } else if (message.id === undefined) res.writeHead(202).end();
          else {
            // The answer (invalid), then the stream stays open (a keep-alive comment now and then).
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            res.write(`event: message\ndata: ${JSON.stringify(answer(message.id))}\n\n`);
            const ping = setInterval(() => res.write(': ping\n\n'), 200);
            res.on('close', () => clearInterval(ping));
          }
        });
      });
      servers.push(server);
      const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true });
      try {
        const session = await connector.connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp`, callTimeoutMs: 4_000 }), identity);
        const started = Date.now();
        const error = await session.request('tools/call', { name: 'x', arguments: {} }).catch((e: unknown) => e);
        const tookMs = Date.now() - started;
        expect((error as { reason?: string }).reason).not.toBe('timeout');
        expect(tookMs).toBeLessThan(1_000);
      } finally {
        await connector.shutdown();
      }
    }, 15_000);
  }
});
