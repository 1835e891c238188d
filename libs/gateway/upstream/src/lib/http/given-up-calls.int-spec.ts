import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { UpstreamConnector } from '@portcullis/gateway/mcp';
import { identity, rawServer, upstreamConfig, waitFor, type RawServer } from '../../test-fixtures/upstream-test-kit';
import { MAX_QUIET_POSTS } from '../core/wire';
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

/**
 * ec2f8d4 lets go of a POST whose call gave up, so a slow-loris upstream cannot hold the tenant's pooled sockets for
 * callTimeoutMs. A call the upstream ANSWERED (on the stream) while it never finishes the POST's response keeps that
 * POST, and its socket, until callTimeoutMs: the tenant's later calls queue behind it.
 */
describe('legacy SSE: a call answered on the stream while its POST is never answered', () => {
  const servers: RawServer[] = [];
  const connectors: UpstreamConnector[] = [];
  afterEach(async () => {
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
    await Promise.allSettled(servers.splice(0).map((s) => s.close()));
  });

  it('does not hold the pooled socket once the call is answered', async () => {
    const streams: ServerResponse[] = [];
    const server = await rawServer((req, res) => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('event: endpoint\ndata: /messages\n\n');
        streams.push(res);
        return;
      }
      void readJson(req).then((message) => {
        const result = message.method === 'initialize' ? legacyInitializeResult : message.method === 'tools/list' ? { tools: [] } : { content: [] };
        if (message.id !== undefined) streams.at(-1)?.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result })}\n\n`);
        // tools/call: answered on the stream, its POST left hanging (no 202, ever).
        if (message.method !== 'tools/call') res.writeHead(202).end();
      });
    });
    servers.push(server);
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true, maxSocketsPerOrigin: 1 });
    connectors.push(connector);
    const session = await connector.connect(upstreamConfig('sse', { url: `${server.url}/sse`, callTimeoutMs: 30_000 }), identity);

    await expect(session.request('tools/call', { name: 'x', arguments: {} }, { timeoutMs: 2_000 })).resolves.toEqual({ content: [] });
    // The call is over (answered); its POST still holds the origin's one socket until callTimeoutMs (30 s).
    await expect(session.request('tools/list', {}, { timeoutMs: 2_000 })).resolves.toEqual({ tools: [] });
  });
});

/**
 * MCP 2025-11-25 cancellation: notifications MUST only reference requests previously issued. Legacy SSE now aborts the
 * POST of a call given up while it still waits in the pool queue (it never reaches the upstream), yet the multiplexer
 * still POSTs notifications/cancelled for it (the same defect 3e0f2a5 fixed for streamable HTTP).
 */
describe('legacy SSE: a call given up before its POST left the pool queue', () => {
  const servers: RawServer[] = [];
  const connectors: UpstreamConnector[] = [];
  afterEach(async () => {
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
    await Promise.allSettled(servers.splice(0).map((s) => s.close()));
  });

  it('is not cancelled upstream: the upstream never received it', async () => {
    const streams: ServerResponse[] = [];
    const requested: number[] = [];
    const cancelled: number[] = [];
    let release: (() => void) | undefined;
    const server = await rawServer((req, res) => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('event: endpoint\ndata: /messages\n\n');
        streams.push(res);
        return;
      }
      void readJson(req).then((message) => {
        if (message.method === 'notifications/cancelled') cancelled.push(message.params?.requestId ?? -1);
        if (message.id !== undefined) requested.push(message.id);
        const answer = () => {
          res.writeHead(202).end();
          if (message.id === undefined) return;
          const result = message.method === 'initialize' ? legacyInitializeResult : message.method === 'tools/list' ? { tools: [] } : { content: [] };
          streams.at(-1)?.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result })}\n\n`);
        };
        if (message.params?.name === 'busy') release = answer; // holds the origin's one socket
        else answer();
      });
    });
    servers.push(server);
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true, maxSocketsPerOrigin: 1 });
    connectors.push(connector);
    const session = await connector.connect(upstreamConfig('sse', { url: `${server.url}/sse`, callTimeoutMs: 30_000 }), identity);

    const busy = session.request('tools/call', { name: 'busy', arguments: {} });
    await waitFor(() => release !== undefined || undefined);
    const controller = new AbortController();
    const queued = session.request('tools/call', { name: 'queued', arguments: {} }, { signal: controller.signal }).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort(); // the agent cancels while the call's POST still waits for a socket
    await queued;
    release?.();
    await busy;
    await expect(session.request('tools/list', {})).resolves.toEqual({ tools: [] });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(cancelled.filter((id) => !requested.includes(id))).toEqual([]);
  });
});

/**
 * QuietPosts (wire.ts): what a session POSTs of its own accord, answers to the upstream's requests AND cancellations,
 * is at most MAX_QUIET_POSTS under way at once (Streamable HTTP's cancellations go through `sendQuietly`). Legacy SSE's
 * cancellations (the multiplexer's `quiet` writes) get the quiet timeout but not the bound: an agent calling and
 * cancelling in a loop piles up cancellation POSTs (each a pooled request and a 30 s timer) without limit.
 */
describe('legacy SSE: cancellations the upstream is slow to take', () => {
  const servers: RawServer[] = [];
  const connectors: UpstreamConnector[] = [];
  afterEach(async () => {
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
    await Promise.allSettled(servers.splice(0).map((s) => s.close()));
  });

  it('are bounded as the other quiet POSTs are', async () => {
    const streams: ServerResponse[] = [];
    const calls = new Set<number>();
    let heldCancellations = 0;
    const server = await rawServer((req, res) => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('event: endpoint\ndata: /messages\n\n');
        streams.push(res);
        return;
      }
      void readJson(req).then((message) => {
        if (message.method === 'notifications/cancelled') return void (heldCancellations += 1); // never taken
        res.writeHead(202).end();
        if (message.method === 'initialize') streams.at(-1)?.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result: legacyInitializeResult })}\n\n`);
        else if (message.method === 'tools/call' && message.id !== undefined) calls.add(message.id); // runs, no answer yet
      });
    });
    servers.push(server);
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true, maxSocketsPerOrigin: 256 });
    connectors.push(connector);
    const session = await connector.connect(upstreamConfig('sse', { url: `${server.url}/sse`, callTimeoutMs: 60_000 }), identity);

    const total = MAX_QUIET_POSTS * 2;
    const controllers = Array.from({ length: total }, () => new AbortController());
    const pending = controllers.map((controller, index) =>
      session.request('tools/call', { name: `t${index}`, arguments: {} }, { signal: controller.signal }).catch(() => undefined),
    );
    // Every call reached the upstream (202): cancelling them is legitimate.
    await waitFor(() => calls.size === total || undefined);
    for (const controller of controllers) controller.abort();
    await Promise.all(pending);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(heldCancellations).toBeLessThanOrEqual(MAX_QUIET_POSTS);
  }, 30_000);
});
