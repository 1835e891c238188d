/**
 * A call's answer that is meant as the answer (it carries the call's id) but is invalid JSON-RPC (a result that is no
 * object, result and error both, an error without a numeric code) must end the call at once with a protocol error, as
 * it does over stdio and legacy SSE (commit 0d2ac12d). Over Streamable HTTP it is only noticed when the call's SSE
 * stream ends: an upstream that keeps the stream open after answering (the gateway lingers for exactly such servers)
 * leaves the call waiting out its whole callTimeoutMs, and the timeout counts against the upstream's circuit.
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

describe('Streamable HTTP: an invalid answer on a call stream the upstream keeps open', () => {
  for (const [what, answer] of [
    ['a result that is no object', (id: number) => ({ jsonrpc: '2.0', id, result: 'not an object' })],
    ['result and error both', (id: number) => ({ jsonrpc: '2.0', id, result: {}, error: { code: -32000, message: 'x' } })],
    ['an error without a numeric code', (id: number) => ({ jsonrpc: '2.0', id, error: { code: 'E_FAIL', message: 'x' } })],
  ] as const) {
    it(`ends the call at once as protocol_error (${what}), not at its timeout`, async () => {
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
        expect(error).toMatchObject({ reason: 'protocol_error' });
        expect(tookMs).toBeLessThan(1_000);
      } finally {
        await connector.shutdown();
      }
    }, 15_000);
  }
});
