/**
 * What a Streamable HTTP upstream writes on a call's own SSE stream ends the call at once when it can only be about
 * that call, however long the upstream keeps the stream open afterwards (the gateway lingers for such servers):
 * - an answer that carries the call's id but is invalid JSON-RPC (a result that is no object, result and error both,
 *   an error without a numeric code) fails it as a protocol error, as stdio and legacy SSE fail one;
 * - an error with a null id (the server could not read the request, JSON-RPC 2.0 §5) is its answer.
 * Before, both were dropped: the call waited out its whole callTimeoutMs, counted against the upstream's circuit.
 * And a request that cannot be written at all (nested too deeply), made while the session's first standalone GET is
 * awaited, is rejected as it is when sent at once (it was left on a promise nothing settled, the error unhandled).
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

describe('Streamable HTTP: what ends a call on a stream the upstream keeps open', () => {
  for (const [what, answer, outcome] of [
    ['a result that is no object', (id: number) => ({ jsonrpc: '2.0', id, result: 'not an object' }), { reason: 'protocol_error' }],
    ['result and error both', (id: number) => ({ jsonrpc: '2.0', id, result: {}, error: { code: -32000, message: 'x' } }), { reason: 'protocol_error' }],
    ['an error without a numeric code', (id: number) => ({ jsonrpc: '2.0', id, error: { code: 'E_FAIL', message: 'x' } }), { reason: 'protocol_error' }],
    ['a parse error with a null id', () => ({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } }), { code: -32700, message: 'Parse error' }],
    ['an internal error with a null id', () => ({ jsonrpc: '2.0', id: null, error: { code: -32603, message: 'Internal error' } }), { code: -32603 }],
  ] as const) {
    it(`ends at once on ${what}, not at its timeout`, async () => {
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
        expect(error).toMatchObject(outcome);
        expect(tookMs).toBeLessThan(1_000);
      } finally {
        await connector.shutdown();
      }
    }, 15_000);
  }
});

describe('Streamable HTTP: a request that cannot be written, made while the first standalone GET is awaited', () => {
  it('is rejected, not left waiting on a promise nothing settles', async () => {
    const server = await rawServer((req, res) => {
      if (req.method === 'GET') {
        // The standalone stream is refused, a little late: requests made meanwhile wait for that answer.
        setTimeout(() => res.writeHead(405).end(), 300);
        return;
      }
      void readJson(req).then((message) => {
        if (message.method === 'initialize') {
          res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's1' });
          res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: initializeResult }));
        } else if (message.id === undefined) res.writeHead(202).end();
        else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: {} }));
      });
    });
    servers.push(server);
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true });
    try {
      const session = await connector.connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp`, callTimeoutMs: 10_000 }), identity);
      session.listen?.(true);
      // Nested past what JSON.stringify's recursion takes (a gateway answers the agent -32602 for it).
      let deep: unknown = 1;
      for (let i = 0; i < 200_000; i++) deep = [deep];
      const outcome = await Promise.race([
        session.request('tools/call', { name: 'x', arguments: { a: deep } }).then(
          () => 'answered',
          (error: unknown) => (error instanceof RangeError ? 'refused' : `failed: ${String(error)}`),
        ),
        new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), 3_000).unref()),
      ]);
      expect(outcome).toBe('refused');
    } finally {
      await connector.shutdown();
    }
  }, 15_000);
});
