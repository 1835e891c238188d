import type { IncomingMessage } from 'node:http';
import { createGzip, gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import type { UpstreamConnector } from '@portcullis/gateway/mcp';
import { identity, rawServer, upstreamConfig, type RawServer } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

const readJson = (req: IncomingMessage): Promise<{ id?: number; method?: string }> =>
  new Promise((resolve) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => resolve(text === '' ? {} : JSON.parse(text)));
  });

/**
 * The upstream clients read answers as they come (undici's low-level dispatch, node:http), in no content coding. A
 * configured `Accept-Encoding` (refused by the API since; rows from before may hold one) is not sent: an upstream
 * honouring it (any compression middleware) would have every answer read as garbage, while the control plane's test
 * connection, which asks for identity, passed.
 */
describe('a configured Accept-Encoding header', () => {
  const servers: RawServer[] = [];
  const connectors: UpstreamConnector[] = [];
  afterEach(async () => {
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
    await Promise.allSettled(servers.splice(0).map((s) => s.close()));
  });

  it('does not make the gateway ask for a coding it cannot read (Streamable HTTP)', async () => {
    const encodings: (string | undefined)[] = [];
    const server = await rawServer((req, res) => {
      encodings.push(req.headers['accept-encoding']);
      if (req.method !== 'POST') {
        res.writeHead(req.method === 'DELETE' ? 200 : 405).end();
        return;
      }
      void readJson(req).then((message) => {
        if (message.id === undefined) {
          res.writeHead(202).end();
          return;
        }
        const result =
          message.method === 'initialize'
            ? { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'gz', version: '1' } }
            : { tools: [] };
        const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
        // As compression middleware does: compress when the client says it takes gzip.
        const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
        res.writeHead(200, {
          'content-type': 'application/json',
          'mcp-session-id': 'gz-1',
          ...(gzip ? { 'content-encoding': 'gzip' } : {}),
        });
        res.end(gzip ? gzipSync(body) : body);
      });
    });
    servers.push(server);
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true });
    connectors.push(connector);
    const config = upstreamConfig('streamable_http', { url: `${server.url}/mcp`, headers: { 'Accept-Encoding': 'gzip, deflate, br' } });
    const session = await connector.connect(config, identity);
    await expect(session.request('tools/list', {})).resolves.toEqual({ tools: [] });
  });
  it('does not make the gateway ask for a coding it cannot read (legacy HTTP+SSE stream)', async () => {
    let send: ((text: string) => void) | undefined;
    const server = await rawServer((req, res) => {
      if (req.method === 'GET') {
        // As compression middleware does: the event stream gzipped (flushed per event) when the client takes gzip.
        const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
        res.writeHead(200, { 'content-type': 'text/event-stream', ...(gzip ? { 'content-encoding': 'gzip' } : {}) });
        if (gzip) {
          const gz = createGzip();
          gz.pipe(res);
          send = (text) => { gz.write(text); gz.flush(); };
        } else send = (text) => void res.write(text);
        send('event: endpoint\ndata: /messages\n\n');
        return;
      }
      void readJson(req).then((message) => {
        res.writeHead(202).end();
        if (message.id === undefined) return;
        const result = message.method === 'initialize'
          ? { protocolVersion: '2024-11-05', capabilities: { tools: {} }, serverInfo: { name: 'gz-sse', version: '1' } }
          : { tools: [] };
        send?.(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result })}\n\n`);
      });
    });
    servers.push(server);
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true });
    connectors.push(connector);
    const config = upstreamConfig('sse', { url: `${server.url}/sse`, connectTimeoutMs: 1_000, headers: { 'Accept-Encoding': 'gzip' } });
    const session = await connector.connect(config, identity);
    await expect(session.request('tools/list', {})).resolves.toEqual({ tools: [] });
  });
});
