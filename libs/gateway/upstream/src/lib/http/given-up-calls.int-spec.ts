import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { UpstreamConnector } from '@portcullis/gateway/mcp';
import { identity, rawServer, upstreamConfig, waitFor, type RawServer } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

type Message = { id?: number; method?: string; params?: { requestId?: number; name?: string } };
const readJson = (req: IncomingMessage): Promise<Message> =>
  new Promise((resolve) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => resolve(text === '' ? {} : JSON.parse(text)));
  });

const legacyInitializeResult = { protocolVersion: '2024-11-05', capabilities: { tools: {} }, serverInfo: { name: 'raw-sse', version: '1' } };

/**
 * Calls given up before their upstream answered (a timeout, the agent's cancel, the session closing).
 *
 * Legacy HTTP+SSE: each message is a POST of its own, bounded by the upstream's call timeout. A call that gives up
 * sooner (its own timeout, the agent's cancel, the session closing) lets go of the POST that carried it: one the
 * upstream never answers held its pooled socket until the call timeout (up to an hour), and the tenant's later calls
 * to that origin queued behind it.
 */
describe('legacy SSE: a POST the upstream never answers', () => {
  const servers: RawServer[] = [];
  const connectors: UpstreamConnector[] = [];
  afterEach(async () => {
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
    await Promise.allSettled(servers.splice(0).map((s) => s.close()));
  });

  it('lets go of its socket once the call it carried gave up, so the next call is not queued behind it', async () => {
    const streams: ServerResponse[] = [];
    const held: string[] = [];
    const server = await rawServer((req, res) => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('event: endpoint\ndata: /messages\n\n');
        streams.push(res);
        return;
      }
      void readJson(req).then((message) => {
        // A slow-loris upstream for tools/call: the POST is read and never answered (not even 202).
        if (message.method === 'tools/call') return void held.push(message.method);
        res.writeHead(202).end();
        if (message.id === undefined) return;
        const result = message.method === 'initialize' ? legacyInitializeResult : { tools: [] };
        streams.at(-1)?.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result })}\n\n`);
      });
    });
    servers.push(server);
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true, maxSocketsPerOrigin: 1 });
    connectors.push(connector);
    const session = await connector.connect(upstreamConfig('sse', { url: `${server.url}/sse`, callTimeoutMs: 30_000 }), identity);

    const call = session.request('tools/call', { name: 'slow', arguments: {} }, { timeoutMs: 300 });
    await expect(call).rejects.toMatchObject({ reason: 'timeout' });
    expect(held).toEqual(['tools/call']);
    // The call is over; its POST still holds the origin's one socket until callTimeoutMs (30 s) passes.
    await expect(session.request('tools/list', {}, { timeoutMs: 2_000 })).resolves.toEqual({ tools: [] });
  });
});

/**
 * Streamable HTTP. MCP 2025-11-25 (basic/utilities/cancellation): cancellation notifications MUST only reference
 * requests that were issued. A call given up while its POST still waits in the origin's pool queue (every socket busy)
 * never reaches the upstream: no `notifications/cancelled` goes for it (it went, adding a POST to the full queue).
 */
describe('a call given up before its POST left the pool queue', () => {
  const servers: RawServer[] = [];
  const connectors: UpstreamConnector[] = [];
  afterEach(async () => {
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
    await Promise.allSettled(servers.splice(0).map((s) => s.close()));
  });

  it('is not cancelled upstream: the upstream never received it', async () => {
    const requested: number[] = [];
    const cancelled: number[] = [];
    let release: (() => void) | undefined;
    const server = await rawServer((req, res: ServerResponse) => {
      if (req.method !== 'POST') return void res.writeHead(req.method === 'DELETE' ? 200 : 405).end();
      void readJson(req).then((message) => {
        if (message.method === 'notifications/cancelled') cancelled.push(message.params?.requestId ?? -1);
        if (message.id === undefined) return void res.writeHead(202).end();
        requested.push(message.id);
        const answer = (result: unknown) => {
          res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'q-1' });
          res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
        };
        if (message.method === 'initialize') answer({ protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'q', version: '1' } });
        else if (message.params?.name === 'busy') release = () => answer({ content: [] }); // holds the one socket
        else answer({ content: [] });
      });
    });
    servers.push(server);
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true, maxSocketsPerOrigin: 1 });
    connectors.push(connector);
    const session = await connector.connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp` }), identity);

    const busy = session.request('tools/call', { name: 'busy', arguments: {} });
    await waitFor(() => release !== undefined || undefined);
    const controller = new AbortController();
    const queued = session.request('tools/call', { name: 'queued', arguments: {} }, { signal: controller.signal }).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort(); // the agent cancels while the call still waits for a socket
    await queued;
    release?.();
    await busy;
    await expect(session.request('tools/list', {})).resolves.toBeDefined(); // everything queued before it has gone out
    await new Promise((resolve) => setTimeout(resolve, 100));
    const neverReceived = cancelled.filter((id) => !requested.includes(id));
    expect(neverReceived).toEqual([]);
  });
});
