/**
 * Calls given up before their upstream answered (a timeout, the agent's cancel, the session closing), and what they
 * leave behind.
 *
 * Legacy HTTP+SSE: each message is a POST of its own, bounded by the upstream's call timeout. A call that gives up
 * sooner lets go of the POST that carried it (one the upstream never answers held its pooled socket for the call
 * timeout, up to an hour, and the tenant's later calls to that origin queued behind it); so does a call answered on the
 * stream whose POST the upstream never ends. Cancellations go as the session's other quiet POSTs do (at most
 * MAX_QUIET_POSTS under way).
 *
 * Both HTTP transports (MCP 2025-11-25, cancellation: only requests that were issued are cancelled): a call given up
 * while its POST still waited for a socket never reached the upstream, and no `notifications/cancelled` goes for it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { UpstreamConnector, UpstreamSession } from '@portcullis/gateway/mcp';
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

const servers: RawServer[] = [];
const connectors: UpstreamConnector[] = [];
afterEach(async () => {
  await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
  await Promise.allSettled(servers.splice(0).map((s) => s.close()));
});

/** A session on `server` through a connector of its own, with `maxSocketsPerOrigin` sockets to it. */
async function sessionOn(server: RawServer, transport: 'sse' | 'streamable_http', maxSocketsPerOrigin = 1): Promise<UpstreamSession> {
  servers.push(server);
  const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true, maxSocketsPerOrigin });
  connectors.push(connector);
  const url = transport === 'sse' ? `${server.url}/sse` : `${server.url}/mcp`;
  return connector.connect(upstreamConfig(transport, { url, callTimeoutMs: 60_000 }), identity);
}

/**
 * A legacy SSE upstream: a GET opens its stream and names `/messages`; each POST goes to `onPost`, whose `reply` writes
 * the request's answer on the stream (initialize's, an empty tool list, or an empty result) and `accept` its 202.
 */
function legacyServer(onPost: (message: Message, reply: () => void, accept: () => void) => void): Promise<RawServer> {
  const streams: ServerResponse[] = [];
  return rawServer((req, res) => {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event: endpoint\ndata: /messages\n\n');
      streams.push(res);
      return;
    }
    void readJson(req).then((message) => {
      const reply = (): void => {
        if (message.id === undefined) return;
        const result =
          message.method === 'initialize'
            ? { protocolVersion: '2024-11-05', capabilities: { tools: {} }, serverInfo: { name: 'raw-sse', version: '1' } }
            : message.method === 'tools/list'
              ? { tools: [] }
              : { content: [] };
        streams.at(-1)?.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result })}\n\n`);
      };
      onPost(message, reply, () => void res.writeHead(202).end());
    });
  });
}

describe('legacy SSE: POSTs of calls that are over', () => {
  it('lets go of a POST the upstream never answers once its call gave up, so the next call is not queued behind it', async () => {
    const held: string[] = [];
    const session = await sessionOn(
      await legacyServer((message, reply, accept) => {
        // A slow-loris upstream for tools/call: the POST is read and never answered (not even 202).
        if (message.method === 'tools/call') return void held.push(message.method);
        accept();
        reply();
      }),
      'sse',
    );
    await expect(session.request('tools/call', { name: 'slow', arguments: {} }, { timeoutMs: 300 })).rejects.toMatchObject({ reason: 'timeout' });
    expect(held).toEqual(['tools/call']);
    // Before, the POST held the origin's one socket until the call timeout (60 s) passed.
    await expect(session.request('tools/list', {}, { timeoutMs: 2_000 })).resolves.toEqual({ tools: [] });
  });

  it('lets go of the POST of a call answered on the stream that the upstream never ends', async () => {
    const session = await sessionOn(
      await legacyServer((message, reply, accept) => {
        reply();
        // tools/call: answered on the stream, its POST left hanging (no 202, ever).
        if (message.method !== 'tools/call') accept();
      }),
      'sse',
    );
    await expect(session.request('tools/call', { name: 'x', arguments: {} }, { timeoutMs: 2_000 })).resolves.toEqual({ content: [] });
    await expect(session.request('tools/list', {}, { timeoutMs: 3_000 })).resolves.toEqual({ tools: [] });
  });

  it('bounds the cancellations under way as the other quiet POSTs are', async () => {
    const calls = new Set<number>();
    let heldCancellations = 0;
    const session = await sessionOn(
      await legacyServer((message, reply, accept) => {
        if (message.method === 'notifications/cancelled') return void (heldCancellations += 1); // never taken
        accept();
        if (message.method === 'initialize') reply();
        else if (message.method === 'tools/call' && message.id !== undefined) calls.add(message.id); // runs, no answer yet
      }),
      'sse',
      256,
    );
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

describe('a call given up before its POST left the pool queue', () => {
  /**
   * The agent cancels a call while its POST waits for the origin's one socket (held by a `busy` call): the upstream
   * must not be told to cancel a request it never received. Returns the ids it was asked to cancel and never got.
   */
  async function cancelledUnsent(server: (record: { requested: number[]; cancelled: number[]; hold: (release: () => void) => void }) => Promise<RawServer>, transport: 'sse' | 'streamable_http') {
    const requested: number[] = [];
    const cancelled: number[] = [];
    let release: (() => void) | undefined;
    const session = await sessionOn(await server({ requested, cancelled, hold: (then) => (release = then) }), transport);
    const busy = session.request('tools/call', { name: 'busy', arguments: {} });
    await waitFor(() => release !== undefined || undefined);
    const controller = new AbortController();
    const queued = session.request('tools/call', { name: 'queued', arguments: {} }, { signal: controller.signal }).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort();
    await queued;
    release?.();
    await busy;
    // Everything queued before it has gone out.
    await expect(session.request('tools/list', {})).resolves.toBeDefined();
    await new Promise((resolve) => setTimeout(resolve, 100));
    return cancelled.filter((id) => !requested.includes(id));
  }

  it('is not cancelled upstream on Streamable HTTP', async () => {
    const unsent = await cancelledUnsent(
      ({ requested, cancelled, hold }) =>
        rawServer((req, res) => {
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
            else if (message.params?.name === 'busy') hold(() => answer({ content: [] })); // holds the one socket
            else answer(message.method === 'tools/list' ? { tools: [] } : { content: [] });
          });
        }),
      'streamable_http',
    );
    expect(unsent).toEqual([]);
  });

  it('is not cancelled upstream on legacy SSE', async () => {
    const unsent = await cancelledUnsent(
      ({ requested, cancelled, hold }) =>
        legacyServer((message, reply, accept) => {
          if (message.method === 'notifications/cancelled') cancelled.push(message.params?.requestId ?? -1);
          if (message.id !== undefined) requested.push(message.id);
          const answer = () => {
            accept();
            reply();
          };
          if (message.params?.name === 'busy') hold(answer); // holds the origin's one socket
          else answer();
        }),
      'sse',
    );
    expect(unsent).toEqual([]);
  });
});
