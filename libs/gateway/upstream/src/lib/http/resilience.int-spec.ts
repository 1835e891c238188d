import type { IncomingMessage, ServerResponse } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { UpstreamUnavailableError, type JsonRpcNotification, type UpstreamConfig, type UpstreamConnector, type UpstreamSession } from '@portcullis/gateway/mcp';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  deadPort,
  identity,
  rawServer,
  recordingLogger,
  upstreamConfig,
  waitFor,
  type RawServer,
} from '../../test-fixtures/upstream-test-kit';
import { MAX_QUIET_POSTS } from '../core/wire';
import { createUpstreamConnector, type UpstreamConnectorOptions } from '../upstream-connector';

// Names under .unresolvable.test fail as the guarded lookup fails a name not resolved by its deadline (ETIMEOUT), at
// once rather than after 10 s; every other name resolves as usual.
vi.mock('node:dns', async (importOriginal) => {
  const dns = await importOriginal<typeof import('node:dns')>();
  const lookup = (hostname: string, options: object, callback: (error: NodeJS.ErrnoException | null, addresses: unknown) => void) => {
    if (!hostname.endsWith('.unresolvable.test')) return dns.lookup(hostname, options, callback);
    const timedOut: NodeJS.ErrnoException = Object.assign(new Error('the host name was not resolved in time'), { code: 'ETIMEOUT' });
    setImmediate(() => callback(timedOut, []));
  };
  return { ...dns, default: { ...dns, lookup }, lookup };
});

const initializeResult = {
  protocolVersion: '2025-11-25',
  capabilities: { tools: {} },
  serverInfo: { name: 'raw-upstream', version: '1.0.0' },
};

function readJson(req: import('node:http').IncomingMessage): Promise<{ id?: number; method?: string }> {
  return new Promise((resolve) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => resolve(text === '' ? {} : (JSON.parse(text) as { id?: number; method?: string })));
  });
}

const legacyInitializeResult = { protocolVersion: '2024-11-05', capabilities: { tools: {} }, serverInfo: { name: 'raw-sse', version: '1' } };

/** Answers a legacy SSE GET: the stream, opened with its endpoint event (POSTs go to /messages). */
function legacyStream(res: ServerResponse): ServerResponse {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write('event: endpoint\ndata: /messages\n\n');
  return res;
}

/** A JSON-RPC message as a legacy SSE `message` event. */
const messageEvent = (message: Record<string, unknown>) => `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', ...message })}\n\n`;

/**
 * A minimal legacy HTTP+SSE server: the endpoint event on each GET, then each POSTed request answered on the newest
 * stream (initialize, else `{ content: [] }`). `takes(message)` false: that POST is never answered (not even 202); a
 * number: the POST is refused with that status.
 */
async function legacySseServer(takes: (message: { id?: number; method?: string }) => boolean | number = () => true) {
  const streams: ServerResponse[] = [];
  const server = await rawServer((req, res) => {
    if (req.method === 'GET') {
      streams.push(legacyStream(res));
      return;
    }
    void readJson(req).then((message) => {
      const taken = takes(message);
      if (typeof taken === 'number') {
        res.writeHead(taken).end('refused');
        return;
      }
      if (!taken) return;
      res.writeHead(202).end();
      if (message.id === undefined) return;
      const result = message.method === 'initialize' ? legacyInitializeResult : { content: [] };
      streams.at(-1)?.write(messageEvent({ id: message.id, result }));
    });
  });
  return { server, streams };
}

type JsonMessage = { id?: number; method?: string; params?: Record<string, unknown> };

interface McpServerHandlers {
  /** Told of every request first. */
  readonly onRequest?: (req: IncomingMessage) => void;
  /** A GET (the standalone stream). Default: 405. */
  readonly get?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Told of each DELETE (answered 200). */
  readonly onDelete?: (req: IncomingMessage) => void;
  /** A POSTed request other than initialize. Default: answered `{ tools: [] }` as JSON. */
  readonly call?: (message: JsonMessage, res: ServerResponse) => void;
  /** A POSTed notification (answered 202). */
  readonly onNotification?: (message: JsonMessage) => void;
  /** A POSTed answer to one of the server's requests (no method). Default: 202. */
  readonly answer?: (message: JsonMessage, res: ServerResponse) => void;
}

/**
 * A Streamable HTTP server that answers initialize naming session `upstream-session-1`, takes notifications (202) and
 * DELETE (200); the rest goes to the handlers given.
 */
function mcpServer(handlers: McpServerHandlers = {}) {
  return rawServer((req, res) => {
    handlers.onRequest?.(req);
    if (req.method === 'GET') {
      if (handlers.get) handlers.get(req, res);
      else res.writeHead(405).end();
      return;
    }
    if (req.method === 'DELETE') {
      handlers.onDelete?.(req);
      res.writeHead(200).end();
      return;
    }
    void readJson(req).then((message: JsonMessage) => {
      if (message.method === undefined) {
        if (handlers.answer) handlers.answer(message, res);
        else res.writeHead(202).end();
      } else if (message.id === undefined) {
        handlers.onNotification?.(message);
        res.writeHead(202).end();
      } else if (message.method === 'initialize') {
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'upstream-session-1' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: initializeResult }));
      } else if (handlers.call) handlers.call(message, res);
      else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { tools: [] } }));
      }
    });
  });
}

/** `mcpServer` whose POSTed requests other than initialize go to `onCall`. */
const callServer = (onCall: (message: JsonMessage, res: ServerResponse) => void, onNotification?: (message: JsonMessage) => void) =>
  mcpServer({ call: onCall, onNotification });

/** `mcpServer` whose GETs go to `onGet`. */
const streamableServer = (onGet: (req: IncomingMessage, res: ServerResponse) => void) => mcpServer({ get: onGet });

describe('connector resilience and network policy', () => {
  const servers: RawServer[] = [];
  const connectors: UpstreamConnector[] = [];
  const connector = (options: Partial<UpstreamConnectorOptions> = {}) => {
    const created = createUpstreamConnector({
      maxStdioProcessesPerUpstream: 1,
      stdioIdleMs: 60_000,
      allowPrivateNetworks: true,
      ...options,
    });
    connectors.push(created);
    return created;
  };
  /**
   * A Streamable HTTP session with a fresh connector (`options`) on `server`, configured with `config` (closed with the
   * others after the test).
   */
  const sessionOn = (server: RawServer, options: Partial<UpstreamConnectorOptions> = {}, config: Partial<UpstreamConfig> = {}) => {
    servers.push(server);
    return connector(options).connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp`, ...config }), identity);
  };
  /** Has `session` listen on its standalone stream, its notifications going to `onNotification` (dropped unless given). */
  const listenOn = (session: UpstreamSession, onNotification: (notification: JsonRpcNotification) => void = () => undefined) => {
    session.listen?.(true);
    session.onNotification(onNotification);
  };
  /**
   * Waits for the answers to the upstream's pings that reach it, and a while more: no more than MAX_QUIET_POSTS came,
   * and the dropping of the others was logged once.
   */
  const expectQuietPostsBounded = async (arrived: () => number, logger: ReturnType<typeof recordingLogger>) => {
    await waitFor(() => arrived() >= MAX_QUIET_POSTS);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(arrived()).toBe(MAX_QUIET_POSTS);
    expect(logger.entries.filter((entry) => entry.message.includes('dropping answers'))).toHaveLength(1);
  };
  afterEach(async () => {
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
    await Promise.allSettled(servers.splice(0).map((s) => s.close()));
  });

  it('injects configured headers on every request, adds session and protocol headers after initialize, and accepts 405 for GET', async () => {
    const seen: { method: string; headers: IncomingHttpHeaders }[] = [];
    const server = await mcpServer({ onRequest: (req) => seen.push({ method: req.method ?? '', headers: req.headers }) });
    servers.push(server);
    const config = upstreamConfig('streamable_http', {
      url: `${server.url}/mcp`,
      headers: { Authorization: 'Bearer upstream-secret', 'X-Tenant-Key': 'k1', 'Mcp-Session-Id': 'forged' },
    });
    const session = await connector().connect(config, identity);
    session.onNotification(() => undefined);
    session.listen?.(true); // asks for the standalone stream: 405 is fine
    // The stream has its own socket (outside the call pool), so it may land after the next call: wait for it.
    await waitFor(() => (seen.some((s) => s.method === 'GET') ? true : undefined));
    await expect(session.request('tools/list', {})).resolves.toEqual({ tools: [] });
    await session.close();
    expect(seen.map((s) => s.method)).toEqual(['POST', 'POST', 'GET', 'POST', 'DELETE']);
    for (const { headers } of seen) {
      expect(headers['authorization']).toBe('Bearer upstream-secret');
      expect(headers['x-tenant-key']).toBe('k1');
    }
    const [init, initialized, , list] = seen.map((s) => s.headers);
    expect(init?.['accept']).toBe('application/json, text/event-stream');
    expect(init?.['content-type']).toBe('application/json');
    expect(init?.['mcp-session-id']).toBeUndefined();
    expect(initialized?.['mcp-session-id']).toBe('upstream-session-1');
    expect(list?.['mcp-session-id']).toBe('upstream-session-1');
    expect(list?.['mcp-protocol-version']).toBe('2025-11-25');
  });

  it('sends calls over at most maxSocketsPerOrigin keep-alive sockets, queueing the rest', async () => {
    const sockets = new Set<unknown>();
    let running = 0;
    let mostRunning = 0;
    const server = await rawServer((req, res) => {
      sockets.add(req.socket);
      void readJson(req).then((message) => {
        if (message.id === undefined) {
          res.writeHead(202).end();
          return;
        }
        running += 1;
        mostRunning = Math.max(mostRunning, running);
        const result = message.method === 'initialize' ? initializeResult : { tools: [] };
        setTimeout(() => {
          running -= 1;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
        }, 20);
      });
    });
    servers.push(server);
    const session = await connector({ maxSocketsPerOrigin: 2 }).connect(
      upstreamConfig('streamable_http', { url: `${server.url}/mcp` }),
      identity,
    );
    const calls = Array.from({ length: 8 }, () => session.request('tools/list', {}));
    await expect(Promise.all(calls)).resolves.toHaveLength(8);
    expect(mostRunning).toBe(2);
    expect(sockets.size).toBeLessThanOrEqual(2);
  });

  it('gives each tenant its own sockets to one origin: a tenant\'s long calls do not queue another tenant\'s', async () => {
    const server = await rawServer((req, res) => {
      void readJson(req).then((message) => {
        if (message.id === undefined) {
          res.writeHead(202).end();
          return;
        }
        if (message.method === 'tools/call') return; // a call that runs for ever: it holds its socket
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: message.method === 'initialize' ? initializeResult : { tools: [] } }));
      });
    });
    servers.push(server);
    const c = connector({ maxSocketsPerOrigin: 1 });
    const url = `${server.url}/mcp`;
    const busy = await c.connect(upstreamConfig('streamable_http', { url, tenantId: 'tenant-a' }), identity);
    const other = await c.connect(upstreamConfig('streamable_http', { url, tenantId: 'tenant-b' }), identity);
    const stuck = busy.request('tools/call', { name: 'slow', arguments: {} }).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Before, both tenants shared one pool of the origin's sockets: this waited behind tenant A's call.
    await expect(other.request('tools/list', {}, { timeoutMs: 1_000 })).resolves.toEqual({ tools: [] });
    await busy.close();
    await other.close();
    await stuck;
  });

  describe('a call whose SSE stream the upstream closes before answering (SEP-1699)', () => {
    type Step = (res: ServerResponse, id: number) => void;
    /**
     * A Streamable HTTP server that answers initialize, then answers the first other POST and each GET after it with
     * the next step of `steps` (the last one repeats). Records each GET's headers.
     */
    async function resumingServer(post: Step, gets: readonly Step[], { sessionless = false } = {}) {
      const seenGets: IncomingHttpHeaders[] = [];
      let callId = 0;
      const server = await rawServer((req, res) => {
        if (req.method === 'GET') {
          // The session's standalone stream (nobody asked for it here) carries no last-event-id.
          if (req.headers['last-event-id'] === undefined) {
            res.writeHead(405).end();
            return;
          }
          seenGets.push(req.headers);
          (gets[Math.min(seenGets.length, gets.length) - 1] as Step)(res, callId);
          return;
        }
        void readJson(req).then((message) => {
          if (message.id === undefined) {
            res.writeHead(202).end();
            return;
          }
          if (message.method === 'initialize') {
            res.writeHead(200, { 'content-type': 'application/json', ...(sessionless ? {} : { 'mcp-session-id': 'upstream-session-1' }) });
            res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: initializeResult }));
            return;
          }
          callId = message.id;
          post(res, message.id);
        });
      });
      const session = await sessionOn(server);
      return { session, seenGets };
    }
    const sse = (res: ServerResponse, ...events: string[]) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(events.join(''));
    };
    const answer = (id: number) => `data: ${JSON.stringify({ jsonrpc: '2.0', id, result: { content: [], resumed: true } })}\n\n`;

    it('resumes it on a server without sessions too (the GET carries the event id and no session id)', async () => {
      const { session, seenGets } = await resumingServer(
        (res) => sse(res, 'id: p1\nretry: 60\ndata: \n\n'),
        [(res, id) => sse(res, answer(id))],
        { sessionless: true },
      );
      await expect(session.request('tools/call', { name: 'slow', arguments: {} })).resolves.toEqual({ content: [], resumed: true });
      expect(seenGets).toHaveLength(1);
      expect(seenGets[0]?.['last-event-id']).toBe('p1');
      expect(seenGets[0]?.['mcp-session-id']).toBeUndefined();
      await session.close();
    });

    it('resumes from an id with spaces inside or past 256 characters, sent back exactly (before: never resumed)', async () => {
      const long = `cursor:${'7'.repeat(400)}`;
      const { session, seenGets } = await resumingServer(
        (res) => sse(res, 'id: stream 4 / event 1\nretry: 20\ndata: \n\n'),
        [(res) => sse(res, `id: ${long}\nretry: 20\n\n`), (res, id) => sse(res, answer(id))],
      );
      await expect(session.request('tools/call', { name: 'slow', arguments: {} })).resolves.toEqual({ content: [], resumed: true });
      expect(seenGets.map((h) => h['last-event-id'])).toEqual(['stream 4 / event 1', long]);
      await session.close();
    });

    it('does not resume from an id a header would change (a space at its end) or cannot carry (past ASCII)', async () => {
      for (const id of ['ends with a space ', 'café']) {
        const { session, seenGets } = await resumingServer((res) => sse(res, `id: ${id}\nretry: 20\ndata: \n\n`), [(res, callId) => sse(res, answer(callId))]);
        await expect(session.request('tools/call', { name: 'slow', arguments: {} })).rejects.toMatchObject({ reason: 'protocol_error' });
        expect(seenGets).toEqual([]);
        await session.close();
      }
    });

    it('resumes it with a GET from the last event id, after the announced retry, as often as each stream brings something new', async () => {
      const progress = (id: string, value: number) =>
        `id: ${id}\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 't', progress: value } })}\n\n`;
      const { session, seenGets } = await resumingServer(
        // A priming event with no data line at all still gives the stream an id (EventSource's rules).
        (res) => sse(res, 'id: e1\nretry: 30\n\n'),
        [(res) => sse(res, progress('e2', 1)), (res) => sse(res, progress('e3', 2)), (res, id) => sse(res, `id: e4\n${answer(id)}`)],
      );
      const notes: unknown[] = [];
      const started = Date.now();
      await expect(
        session.request('tools/call', { name: 'slow' }, { onNotification: (n) => notes.push(n.params?.['progress']) }),
      ).resolves.toEqual({ content: [], resumed: true });
      // The first stream's retry (30 ms) holds for the streams after it, which name none (the default is 1 s).
      const took = Date.now() - started;
      expect(took).toBeGreaterThanOrEqual(3 * 25);
      expect(took).toBeLessThan(900);
      expect(notes).toEqual([1, 2]);
      expect(seenGets.map((h) => h['last-event-id'])).toEqual(['e1', 'e2', 'e3']);
      for (const headers of seenGets) {
        expect(headers['accept']).toBe('text/event-stream');
        expect(headers['content-type']).toBeUndefined();
        expect(headers['mcp-session-id']).toBe('upstream-session-1');
        expect(headers['mcp-protocol-version']).toBe('2025-11-25');
      }
    });

    it('gives up on a stream that keeps closing with nothing new, after three resumes without progress', async () => {
      const { session, seenGets } = await resumingServer((res) => sse(res, 'id: x1\nretry: 5\ndata: \n\n'), [(res) => sse(res, ': nothing\n\n')]);
      await expect(session.request('tools/call', { name: 'slow' })).rejects.toThrow(/ended without an answer/);
      expect(seenGets).toHaveLength(4);
    });

    it('does not resume a stream that closed before any event id, nor one the upstream refuses to resume', async () => {
      const unprimed = await resumingServer((res) => sse(res, ': no id\n\n'), [(res, id) => sse(res, answer(id))]);
      await expect(unprimed.session.request('tools/call', { name: 'slow' })).rejects.toThrow(/ended without an answer/);
      expect(unprimed.seenGets).toHaveLength(0);

      const refused = await resumingServer((res) => sse(res, 'id: r1\nretry: 5\ndata: \n\n'), [(res) => res.writeHead(405).end()]);
      await expect(refused.session.request('tools/call', { name: 'slow' })).rejects.toThrow(/HTTP 405/);
      expect(refused.seenGets).toHaveLength(1);
    });

    it('stops resuming when the call times out, or when the session is closed, settling the call at once', async () => {
      const timedOut = await resumingServer((res) => sse(res, 'id: t1\nretry: 150\ndata: \n\n'), [(res, id) => sse(res, answer(id))]);
      await expect(timedOut.session.request('tools/call', { name: 'slow' }, { timeoutMs: 100 })).rejects.toThrow(/did not answer in time/);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(timedOut.seenGets).toHaveLength(0);

      const closed = await resumingServer((res) => sse(res, 'id: c1\nretry: 2000\ndata: \n\n'), [(res, id) => sse(res, answer(id))]);
      const started = Date.now();
      const outcome = closed.session.request('tools/call', { name: 'slow' }, { timeoutMs: 10_000 }).then(
        () => 'answered',
        (error: Error) => error.message,
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      await closed.session.close();
      expect(await outcome).toMatch(/session is closed/);
      expect(Date.now() - started).toBeLessThan(1_500);
      expect(closed.seenGets).toHaveLength(0);
    });

    it('waits at least 50 ms between resumes, whatever the retry', async () => {
      let n = 0;
      const progressing: Step = (res) => sse(res, `id: z${++n}\nretry: 0\ndata: \n\n`);
      const { session, seenGets } = await resumingServer(progressing, [progressing]);
      await expect(session.request('tools/call', { name: 'slow' }, { timeoutMs: 500 })).rejects.toThrow(/did not answer in time/);
      // Each stream brings a new id (progress): only the floor bounds the rate. 500 ms / 50 ms = at most 10.
      expect(seenGets.length).toBeGreaterThanOrEqual(3);
      expect(seenGets.length).toBeLessThanOrEqual(10);
    });

    // session_expired tells the gateway the upstream ran nothing: it opens a new upstream session and sends the request
    // again (session-engine onUpstream). A call the upstream took (200) may have run: sent again, a tool ran twice.
    it('fails a call the upstream took as protocol_error, not session_expired, when the GET resuming it gets 404', async () => {
      let posts = 0;
      const { session, seenGets } = await resumingServer(
        (res) => {
          posts += 1;
          sse(res, 'id: p1\nretry: 20\ndata: \n\n');
        },
        [(res) => res.writeHead(404).end()],
      );
      const error = await session.request('tools/call', { name: 'charge_card' }).catch((e: unknown) => e);
      expect(error).toMatchObject({ reason: 'protocol_error' });
      expect(seenGets).toHaveLength(1);
      expect(posts).toBe(1);
      // The session is gone all the same: the next request is refused before it is sent, so the gateway renews it.
      await expect(session.request('tools/list', {})).rejects.toMatchObject({ reason: 'session_expired' });
      expect(posts).toBe(1);
    });

    it('fails a call waiting to resume as protocol_error when another request finds the session forgotten meanwhile', async () => {
      let posts = 0;
      const { session, seenGets } = await resumingServer(
        (res) => {
          posts += 1;
          // The call is taken and its stream closed; the next request (another call) finds the session gone.
          if (posts === 1) sse(res, 'id: p1\nretry: 300\ndata: \n\n');
          else res.writeHead(404).end();
        },
        [(res, id) => sse(res, answer(id))],
      );
      const taken = session.request('tools/call', { name: 'charge_card' }).catch((error: unknown) => error);
      // Until the call waits out its retry before resuming.
      await waitFor(() => ((session as unknown as { resuming: Set<unknown> }).resuming.size === 1 ? true : undefined));
      // Nothing ran for this one: session_expired is right.
      await expect(session.request('tools/list', {})).rejects.toMatchObject({ reason: 'session_expired' });
      expect(await taken).toMatchObject({ reason: 'protocol_error' });
      expect(seenGets).toHaveLength(0);
      expect(posts).toBe(2);
    });
  });

  it('answers a ping the upstream sends during the handshake, before any handler is set', async () => {
    const posted: { id?: unknown; method?: string; result?: unknown }[] = [];
    const server = await rawServer((req, res) => {
      if (req.method === 'GET') {
        res.writeHead(405).end();
        return;
      }
      void readJson(req).then((message) => {
        posted.push(message as { id?: unknown; method?: string; result?: unknown });
        if (message.method !== 'initialize') {
          res.writeHead(202).end();
          return;
        }
        // The initialize answer streams: first a ping to the client, then the result.
        res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': 'upstream-session-1' });
        res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', id: 'srv-ping', method: 'ping' })}\n\n`);
        setTimeout(() => res.end(`data: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result: initializeResult })}\n\n`), 50);
      });
    });
    const session = await sessionOn(server);
    await waitFor(() => posted.some((message) => message.id === 'srv-ping'));
    expect(posted.find((message) => message.id === 'srv-ping')).toEqual({ jsonrpc: '2.0', id: 'srv-ping', result: {} });
    await session.close();
  });

  it('keeps at most MAX_QUIET_POSTS answers to an upstream\'s pings under way: a flood it never takes answers for is dropped, said once', async () => {
    let answersArrived = 0;
    const server = await mcpServer({
      get: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (let id = 1; id <= 1_000; id++) res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', id, method: 'ping' })}\n\n`);
      },
      answer: () => void (answersArrived += 1), // an answer to a ping: never taken (no status, the connection held)
    });
    const logger = recordingLogger();
    // Sockets enough that every queued answer would reach the server: what arrives is what the session sent.
    const session = await sessionOn(server, { logger, maxSocketsPerOrigin: 256 });
    listenOn(session);
    await expectQuietPostsBounded(() => answersArrived, logger);
    await session.close();
  });

  it('bounds the answers to a legacy SSE upstream\'s pings under way the same way', async () => {
    let answersArrived = 0;
    let stream: ServerResponse | undefined;
    const server = await rawServer((req, res) => {
      if (req.method === 'GET') {
        stream = legacyStream(res);
        return;
      }
      void readJson(req).then((message) => {
        if (message.method === undefined) {
          answersArrived += 1; // never taken
          return;
        }
        res.writeHead(202).end();
        if (message.method !== 'initialize') return;
        stream?.write(messageEvent({ id: message.id, result: legacyInitializeResult }));
        for (let id = 1; id <= 1_000; id++) stream?.write(messageEvent({ id: `p${id}`, method: 'ping' }));
      });
    });
    servers.push(server);
    const logger = recordingLogger();
    const session = await connector({ logger, maxSocketsPerOrigin: 256 }).connect(upstreamConfig('sse', { url: `${server.url}/sse` }), identity);
    await expectQuietPostsBounded(() => answersArrived, logger);
    await session.close();
  });

  it('drops a response stream the upstream keeps open after answering, so the pooled socket serves the next call', async () => {
    let streamsClosed = 0;
    const server = await rawServer((req, res) => {
      void readJson(req).then((message) => {
        if (message.id === undefined) {
          res.writeHead(202).end();
          return;
        }
        if (message.method === 'initialize') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: initializeResult }));
          return;
        }
        // The answer, then the stream stays open with a comment every 100 ms, for good.
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { tools: [] } })}\n\n`);
        const ping = setInterval(() => res.write(': ping\n\n'), 100);
        res.on('close', () => {
          clearInterval(ping);
          streamsClosed += 1;
        });
      });
    });
    servers.push(server);
    const session = await connector({ maxSocketsPerOrigin: 1 }).connect(
      upstreamConfig('streamable_http', { url: `${server.url}/mcp` }),
      identity,
    );
    // One socket: each call after the first needs the stream before it dropped (LINGER_MS after its answer).
    const started = Date.now();
    for (let i = 0; i < 3; i++) await expect(session.request('tools/list', {}, { timeoutMs: 8_000 })).resolves.toEqual({ tools: [] });
    expect(Date.now() - started).toBeGreaterThanOrEqual(2 * 1_900);
    await waitFor(() => streamsClosed >= 2);
  }, 20_000);

  it('closes a refused standalone stream whose body never ends instead of draining it (each retry held a socket for good)', async () => {
    const gets: { closed: boolean }[] = [];
    const server = await streamableServer((req, res) => {
      const get = { closed: false };
      gets.push(get);
      req.socket.on('close', () => (get.closed = true));
      // First a 500 (retried), then a 405 (no standalone stream): neither's body is read.
      res.writeHead(gets.length === 1 ? 500 : 405, { 'content-type': 'text/html' });
      res.write('<p>working on it'); // and never ends
    });
    const session = await sessionOn(server);
    listenOn(session);
    await waitFor(() => gets[0]?.closed === true, 3_000);
    await waitFor(() => gets[1]?.closed === true, 5_000);
    await session.close();
  }, 10_000);

  it('backs off reconnecting a standalone stream the upstream accepts and closes at once', async () => {
    const gets: number[] = [];
    const server = await streamableServer((_req, res) => {
      gets.push(Date.now());
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end();
    });
    const session = await sessionOn(server);
    listenOn(session);
    await waitFor(() => gets.length >= 3, 8_000);
    // 1 s, then 2 s (doubling): a stream that closed at once does not reset the backoff (it used to: 1 s each time).
    expect((gets[2] as number) - (gets[1] as number)).toBeGreaterThanOrEqual(1_800);
    await session.close();
  }, 15_000);

  it('reopens a standalone stream the upstream closes after giving it an id and a retry at that retry, not backing off (SEP-1699 polling)', async () => {
    const gets: { at: number; lastEventId: string | undefined }[] = [];
    const server = await streamableServer((req, res) => {
      gets.push({ at: Date.now(), lastEventId: req.headers['last-event-id'] as string | undefined });
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const n = gets.length;
      res.end(`id: g${n}\nretry: 300\ndata: \n\nid: g${n}m\ndata: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n`);
    });
    const session = await sessionOn(server);
    let notified = 0;
    listenOn(session, () => (notified += 1));
    await waitFor(() => gets.length >= 5, 8_000);
    expect(gets.map((get) => get.lastEventId).slice(0, 5)).toEqual([undefined, 'g1m', 'g2m', 'g3m', 'g4m']);
    // 300 ms each time (a backoff would double from 1 s: 4 s by the fifth).
    const gaps = gets.slice(1, 5).map((get, i) => get.at - (gets[i] as { at: number }).at);
    for (const gap of gaps) {
      expect(gap).toBeGreaterThanOrEqual(250);
      expect(gap).toBeLessThan(900);
    }
    expect(notified).toBeGreaterThanOrEqual(4);
    await session.close();
  }, 15_000);

  describe('a standalone stream that keeps failing', () => {
    /** A session on `server` whose standalone stream is asked for again within 10–40 ms (`logger`: the connector's). */
    const fastSessionOn = (server: RawServer, options: { connectTimeoutMs?: number; logger?: UpstreamConnectorOptions['logger'] } = {}) => {
      servers.push(server);
      return connector({ ...(options.logger ? { logger: options.logger } : {}), standaloneBackoffMs: { initial: 10, max: 40 } }).connect(
        upstreamConfig('streamable_http', { url: `${server.url}/mcp`, connectTimeoutMs: options.connectTimeoutMs ?? 5_000 }),
        identity,
      );
    };

    it('is never given up for server errors: it opens once the upstream is back, and its messages arrive', async () => {
      let gets = 0;
      const server = await streamableServer((_req, res) => {
        gets += 1;
        // Twelve failures in a row (a rolling deploy): the stream used to be given up after six.
        if (gets <= 12) {
          res.writeHead(503).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n');
      });
      const session = await fastSessionOn(server);
      const seen: string[] = [];
      listenOn(session, (notification) => seen.push(notification.method));
      await waitFor(() => seen.length > 0, 5_000);
      expect(seen).toEqual(['notifications/tools/list_changed']);
      expect(gets).toBe(13);
      await session.close();
    }, 10_000);

    it('is asked for again while the upstream answers 409 (another holder of the session has its one stream), quietly, and opens once it is free', async () => {
      let gets = 0;
      const server = await streamableServer((_req, res) => {
        gets += 1;
        // The SDK server's answer while another GET of the session is open.
        if (gets <= 8) {
          res.writeHead(409, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","error":{"code":-32000,"message":"Conflict: Only one SSE stream is allowed per session"},"id":null}');
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"jsonrpc":"2.0","method":"notifications/resources/list_changed"}\n\n');
      });
      const logger = recordingLogger();
      const session = await fastSessionOn(server, { logger });
      const seen: string[] = [];
      listenOn(session, (notification) => seen.push(notification.method));
      await waitFor(() => seen.length > 0, 5_000);
      expect(seen).toEqual(['notifications/resources/list_changed']);
      expect(gets).toBe(9);
      expect(JSON.stringify(logger.entries)).not.toContain('standalone stream');
      await session.close();
    }, 10_000);

    it('is asked for again at once, not after the backoff, when told to listen while waiting out a 409', async () => {
      let free = false;
      let gets = 0;
      const server = await streamableServer((_req, res) => {
        gets += 1;
        if (!free) {
          res.writeHead(409, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","error":{"code":-32000,"message":"Conflict"},"id":null}');
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n');
      });
      // A backoff far longer than the test: only the second `listen(true)` can bring the stream.
      const session = await sessionOn(server, { standaloneBackoffMs: { initial: 60_000, max: 60_000 } });
      const seen: string[] = [];
      session.onNotification((notification) => seen.push(notification.method));
      session.listen?.(true);
      await waitFor(() => gets === 1, 5_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      free = true; // the replica that held the session's one stream let it go
      session.listen?.(true);
      await waitFor(() => seen.length > 0, 5_000);
      expect(gets).toBe(2);
      await session.close();
    }, 10_000);

    it('opens no second GET beside one under way when told to listen again, and leaves none open once nobody listens', async () => {
      let gets = 0;
      let open = 0;
      const server = await streamableServer((req, res) => {
        gets += 1;
        if (gets === 1) {
          res.writeHead(409, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","error":{"code":-32000,"message":"Conflict"},"id":null}');
          return;
        }
        // Answered a little later (an upstream under load), then held open.
        open += 1;
        req.on('close', () => (open -= 1));
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(': open\n\n');
        }, 300);
      });
      const session = await fastSessionOn(server);
      session.onNotification(() => undefined);
      session.listen?.(true);
      // The 409, then the reconnect after the backoff: a GET under way when the engine says again that someone listens.
      await waitFor(() => gets === 2, 5_000);
      session.listen?.(true);
      await new Promise((resolve) => setTimeout(resolve, 600));
      // A review caught a first version that sent a second GET here and lost the handle of the first (never closed).
      expect(gets).toBe(2);
      session.listen?.(false);
      await waitFor(() => open === 0, 5_000);
      await session.close();
    }, 10_000);

    it('is given up on a refusal that asking again will not change (401), said once', async () => {
      let gets = 0;
      const server = await streamableServer((_req, res) => {
        gets += 1;
        res.writeHead(401, { 'content-type': 'application/json' }).end('{}');
      });
      const logger = recordingLogger();
      const session = await fastSessionOn(server, { logger });
      listenOn(session);
      await waitFor(() => gets === 1, 3_000);
      // A retry would have come within 10–40 ms.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(gets).toBe(1);
      expect(JSON.stringify(logger.entries)).toContain('upstream refused the standalone stream');
      await session.close();
    }, 10_000);

    it('is not asked for again when the upstream answers the GET with a page that is no event stream (its landing page)', async () => {
      let gets = 0;
      const server = await streamableServer((_req, res) => {
        gets += 1;
        res.writeHead(200, { 'content-type': 'text/html' }).end('<h1>Welcome</h1>');
      });
      const session = await fastSessionOn(server);
      listenOn(session);
      await waitFor(() => gets === 1, 3_000);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(gets).toBe(1);
      await session.close();
    }, 10_000);

    it('is asked for again when the upstream takes the GET and never answers it, after connectTimeoutMs', async () => {
      const gets: number[] = [];
      const server = await streamableServer((_req, res) => {
        gets.push(Date.now());
        if (gets.length === 1) return; // never answered
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(': open\n\n');
      });
      const session = await fastSessionOn(server, { connectTimeoutMs: 300 });
      listenOn(session);
      await waitFor(() => gets.length >= 2, 5_000);
      expect((gets[1] as number) - (gets[0] as number)).toBeGreaterThanOrEqual(280);
      await session.close();
    }, 10_000);
  });

  it('holds the standalone stream only while someone listens: none before, closed when nobody does, reopened from its last id', async () => {
    const gets: (string | undefined)[] = [];
    const open = new Set<ServerResponse>();
    const server = await streamableServer((req, res) => {
      gets.push(req.headers['last-event-id'] as string | undefined);
      open.add(res);
      res.once('close', () => open.delete(res));
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`id: e${gets.length}\ndata: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n`);
    });
    const session = await sessionOn(server);
    const seen: string[] = [];
    session.onNotification((notification) => seen.push(notification.method));
    session.onServerRequest(async () => ({}));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(gets).toEqual([]);

    session.listen?.(true);
    await waitFor(() => seen.length === 1 && open.size === 1, 5_000);
    session.listen?.(false);
    await waitFor(() => open.size === 0, 5_000);
    // Not asked for again while nobody listens (a broken stream would be reopened within a second).
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    expect(gets).toEqual([undefined]);

    session.listen?.(true);
    session.listen?.(true);
    await waitFor(() => seen.length === 2 && open.size === 1, 5_000);
    expect(gets).toEqual([undefined, 'e1']);
    await session.close();
    await waitFor(() => open.size === 0, 5_000);
  }, 10_000);

  it('takes the id to reopen a standalone stream from a priming event with no data line too', async () => {
    const gets: (string | undefined)[] = [];
    const server = await streamableServer((req, res) => {
      gets.push(req.headers['last-event-id'] as string | undefined);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`id: p${gets.length}\nretry: 300\n\n`);
    });
    const session = await sessionOn(server);
    listenOn(session);
    await waitFor(() => gets.length >= 3, 5_000);
    expect(gets.slice(0, 3)).toEqual([undefined, 'p1', 'p2']);
    await session.close();
  }, 10_000);

  it('backs off reopening a standalone stream that broke (not a clean close), whatever id and retry it gave', async () => {
    const gets: number[] = [];
    const server = await streamableServer((_req, res) => {
      gets.push(Date.now());
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`id: r${gets.length}\nretry: 10\n\n`);
      // A reset, not the end of the response: a failure, not SEP-1699 polling.
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const session = await sessionOn(server);
    listenOn(session);
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    // Backoff: reopened after 1 s, then 2 s (polling would have reopened every 250 ms: about ten times).
    expect(gets.length).toBeGreaterThanOrEqual(2);
    expect(gets.length).toBeLessThanOrEqual(3);
    await session.close();
  }, 10_000);

  it('does not send back an event id no header can carry (it took the replica down), and resumes with one that can', async () => {
    const lastEventIds: (string | undefined)[] = [];
    const server = await streamableServer((req, res) => {
      lastEventIds.push(req.headers['last-event-id'] as string | undefined);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // First an id with a character above U+00FF, then a control character, then a good one; each stream then ends.
      const id = ['\u20ac1', 'a\u0001b', 'ok-3'][lastEventIds.length - 1] ?? 'ok-n';
      res.end(`id: ${id}\nevent: message\ndata: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n`);
    });
    const session = await sessionOn(server);
    const notified: string[] = [];
    listenOn(session, (notification) => notified.push(notification.method));
    await waitFor(() => lastEventIds.length >= 4, 12_000);
    expect(lastEventIds).toEqual([undefined, undefined, undefined, 'ok-3']);
    expect(notified.length).toBeGreaterThanOrEqual(3);
    await session.close();
  }, 20_000);

  it('drops a long-lived stream that holds part of an event for longer than the call timeout, then reconnects', async () => {
    const opened: number[] = [];
    const server = await streamableServer((_req, res) => {
      opened.push(Date.now());
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // A whole event, then most of another one, and then nothing more: its bytes would be held for the stream's life.
      res.write('event: message\ndata: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n');
      res.write(`event: message\ndata: ${'x'.repeat(64 * 1024)}`);
    });
    const session = await sessionOn(server, {}, { callTimeoutMs: 300 });
    const notified: string[] = [];
    listenOn(session, (notification) => notified.push(notification.method));
    await waitFor(() => opened.length >= 2, 5_000);
    // The first stream was ended 300 ms after the unfinished event began, and opened again after the backoff.
    expect(notified.length).toBeGreaterThanOrEqual(1);
    expect((opened[1] as number) - (opened[0] as number)).toBeGreaterThanOrEqual(300);
    await session.close();
  }, 10_000);

  it('drops a long-lived stream that holds only the id and event lines of an event for longer than the call timeout too', async () => {
    const opened: number[] = [];
    const server = await streamableServer((_req, res) => {
      opened.push(Date.now());
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // No data line and no blank line: these were held, uncounted and with no stall timer, for the stream's life.
      res.write(`id: ${'i'.repeat(1_000)}\nevent: ${'e'.repeat(64 * 1024)}\n`);
    });
    const session = await sessionOn(server, {}, { callTimeoutMs: 300 });
    listenOn(session);
    await waitFor(() => (opened.length >= 2 ? true : undefined), 5_000);
    expect((opened[1] as number) - (opened[0] as number)).toBeGreaterThanOrEqual(300);
    await session.close();
  }, 10_000);

  it('survives a notification handler that throws on a legacy SSE stream, and keeps serving the session', async () => {
    const { server, streams } = await legacySseServer();
    servers.push(server);
    const logger = recordingLogger();
    const session = await connector({ logger }).connect(upstreamConfig('sse', { url: `${server.url}/sse` }), identity);
    let seen = 0;
    session.listen?.(true);
    session.onNotification(() => {
      seen += 1;
      // What the gateway's handler did with a notification nested too deeply to serialise for the other replicas.
      throw new RangeError('Maximum call stack size exceeded');
    });
    streams.at(-1)?.write('event: message\ndata: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n');
    await waitFor(() => seen === 1, 5_000);
    expect(await session.request('tools/call', { name: 'x', arguments: {} })).toEqual({ content: [] });
    expect(logger.entries.some((entry) => entry.level === 'warn' && entry.message === 'notification handler threw')).toBe(true);
    await session.close();
  });

  it('lets go of a session the upstream forgot (404): reported once to its owner, and no longer held for shutdown', async () => {
    // Initialize answers; everything after it is 404, as from an upstream that restarted.
    const server = await callServer((_message, res) => res.writeHead(404).end());
    servers.push(server);
    const c = connector();
    const session = await c.connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp` }), identity);
    let closed = 0;
    session.onClosed?.(() => (closed += 1));
    await expect(session.request('tools/list', undefined)).rejects.toMatchObject({ reason: 'session_expired' });
    await expect(session.request('tools/list', undefined)).rejects.toMatchObject({ reason: 'session_expired' });
    expect(closed).toBe(1);
    // Out of the connector's registry: shutdown has nothing of it to end (before, every forgotten session stayed there).
    const dispose = vi.spyOn(session as unknown as { dispose(): void }, 'dispose');
    await c.shutdown();
    expect(dispose).not.toHaveBeenCalled();
  });

  it.each([
    ['an older SDK example server', 'Bad Request: No valid session ID provided'],
    ['an SDK server transport started afresh', 'Bad Request: Server not initialized'],
  ])('takes a 400 saying the session is unknown (%s) as a 404, and another 400 as the request\'s own', async (_server, message) => {
    let refusal = message;
    const server = await callServer((_message, res) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: refusal }, id: null }));
    });
    servers.push(server);
    const c = connector();
    try {
      const first = await c.connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp` }), identity);
      // Nothing ran: session_expired, on which the gateway starts a new upstream session and sends the request again.
      await expect(first.request('tools/call', { name: 'x', arguments: {} })).rejects.toMatchObject({ reason: 'session_expired' });
      refusal = 'Bad Request: Invalid JSON-RPC message';
      const second = await c.connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp` }), identity);
      await expect(second.request('tools/call', { name: 'x', arguments: {} })).rejects.toMatchObject({ reason: 'protocol_error' });
    } finally {
      await c.shutdown();
    }
  });

  it('fails a legacy SSE call whose POST is answered 404 as session_expired, and a call the upstream took as closed', async () => {
    const streams: ServerResponse[] = [];
    const taken: string[] = [];
    let forgotten = false;
    // Answers initialize on the stream and takes (202) other messages without answering; once it forgot the session, 404.
    const server = await rawServer((req, res) => {
      if (req.method === 'GET') {
        streams.push(legacyStream(res));
        return;
      }
      void readJson(req).then((message) => {
        if (forgotten) return void res.writeHead(404).end();
        res.writeHead(202).end();
        if (message.method === 'initialize') streams.at(-1)?.write(messageEvent({ id: message.id, result: legacyInitializeResult }));
        else if (message.method !== undefined) taken.push(message.method);
      });
    });
    servers.push(server);
    const session = await connector().connect(upstreamConfig('sse', { url: `${server.url}/sse` }), identity);
    let closed = 0;
    session.onClosed?.(() => (closed += 1));
    const running = session.request('tools/call', { name: 'x', arguments: {} }).catch((error: unknown) => error);
    await waitFor(() => taken.includes('tools/call'));
    forgotten = true;
    // Nothing ran for this one: session_expired (the gateway sends it again on a new session).
    await expect(session.request('tools/list', {})).rejects.toMatchObject({ reason: 'session_expired' });
    // This one may have run: closed.
    expect(await running).toMatchObject({ reason: 'closed' });
    expect(closed).toBe(1);
  });

  it('fails each of two legacy SSE calls refused with 404 as session_expired, though the first 404 ended the session', async () => {
    const streams: ServerResponse[] = [];
    let forgotten = false;
    let refusals = 0;
    // Once it forgot the session (it restarted), each call's POST is answered 404, the second a little after the first.
    const server = await rawServer((req, res) => {
      if (req.method === 'GET') {
        streams.push(legacyStream(res));
        return;
      }
      void readJson(req).then((message) => {
        if (forgotten && message.id !== undefined) {
          refusals += 1;
          setTimeout(() => res.writeHead(404).end('Could not find session'), refusals === 1 ? 0 : 150);
          return;
        }
        res.writeHead(202).end();
        if (message.method === 'initialize') streams.at(-1)?.write(messageEvent({ id: message.id, result: legacyInitializeResult }));
      });
    });
    servers.push(server);
    const session = await connector({ maxSocketsPerOrigin: 4 }).connect(upstreamConfig('sse', { url: `${server.url}/sse`, callTimeoutMs: 5_000 }), identity);
    forgotten = true;
    // Nothing of either ran: each may go again on a new session (before, the second failed as closed).
    const outcomes = await Promise.all(['a', 'b'].map((name) => session.request('tools/call', { name, arguments: {} }).then(() => 'answered', (error: { reason?: string }) => error.reason)));
    expect(outcomes).toEqual(['session_expired', 'session_expired']);
  });

  it('times out a handshake the upstream never answers', async () => {
    const server = await rawServer(() => undefined); // accepts, never responds
    servers.push(server);
    const config = upstreamConfig('streamable_http', { url: `${server.url}/mcp`, connectTimeoutMs: 200 });
    const started = Date.now();
    await expect(connector().connect(config, identity)).rejects.toMatchObject({ reason: 'timeout' });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('times out a legacy SSE handshake whose initialized notification is never taken, within connectTimeoutMs', async () => {
    // notifications/initialized is never answered.
    const { server } = await legacySseServer((message) => message.id !== undefined);
    servers.push(server);
    const config = upstreamConfig('sse', { url: `${server.url}/sse`, connectTimeoutMs: 300, callTimeoutMs: 8_000 });
    const started = Date.now();
    await expect(connector().connect(config, identity)).rejects.toMatchObject({ reason: 'timeout' });
    // Before, the callTimeoutMs of the POST (8 s here, up to an hour) applied.
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('opens a legacy SSE upstream\'s circuit on 5xx answers to its POSTs, and a half-open probe refused 4xx frees the slot', async () => {
    // ADR 0008: the breaker opens on consecutive 5xx, as a Streamable HTTP upstream's does; before, a legacy SSE message
    // endpoint answering 503 to everything was sent every call, and a probe answered 4xx held every call for a cool-down.
    let status = 503;
    let posts = 0;
    const { server } = await legacySseServer((message) => (message.method === 'tools/call' ? (posts++, status) : true));
    servers.push(server);
    const session = await connector({ breaker: { failureThreshold: 2, cooldownMs: 300 } }).connect(upstreamConfig('sse', { url: `${server.url}/sse` }), identity);
    const call = () => session.request('tools/call', { name: 'x', arguments: {} }).then(() => 'answered', (error: { reason?: string }) => error.reason);
    expect([await call(), await call(), await call()]).toEqual(['protocol_error', 'protocol_error', 'circuit_open']);
    expect(posts).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 350));
    status = 400;
    // The probe's POST is refused as the message's fault, not the upstream's health: the next call may probe at once.
    expect([await call(), await call()]).toEqual(['protocol_error', 'protocol_error']);
    expect(posts).toBe(4);
  });

  it('opens the circuit of an upstream answering every call 200 with a page that is no MCP answer (HTML, or JSON answering nothing)', async () => {
    let calls = 0;
    const server = await callServer((message, res) => {
      calls += 1;
      // A proxy's or a web server's page in place of the MCP server: each call taken (200), none answered.
      if (message.params?.['name'] === 'html') res.writeHead(200, { 'content-type': 'text/html' }).end('<h1>Welcome</h1>');
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
    for (const name of ['html', 'json']) {
      calls = 0;
      const session = await sessionOn(server, { breaker: { failureThreshold: 2, cooldownMs: 60_000 } });
      const call = () => session.request('tools/call', { name, arguments: {} }).then(() => 'answered', (error: { reason?: string }) => error.reason);
      expect([await call(), await call(), await call()]).toEqual(['protocol_error', 'protocol_error', 'circuit_open']);
      expect(calls).toBe(2);
      await session.close();
    }
  });

  it('opens the circuit after repeated connect failures against a dead port, then fails fast', async () => {
    const port = await deadPort();
    const c = connector({ breaker: { failureThreshold: 2, cooldownMs: 60_000 } });
    const config = upstreamConfig('streamable_http', { url: `http://127.0.0.1:${port}/mcp` });
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const error = await c.connect(config, identity).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UpstreamUnavailableError);
      expect(error).toMatchObject({ reason: 'connect_failed' });
      expect(
        JSON.stringify({ message: (error as Error).message, cause: (error as Error).cause }),
      ).not.toContain(String(port));
    }
    await expect(c.connect(config, identity)).rejects.toMatchObject({ reason: 'circuit_open' });
    expect(c.circuits?.()).toEqual([{ upstreamId: config.id, tenantId: config.tenantId, state: 'open' }]);
    // a new configuration version starts with a closed circuit
    await expect(c.connect({ ...config, version: 2 }, identity)).rejects.toMatchObject({
      reason: 'connect_failed',
    });
    expect(c.circuits?.()).toEqual([{ upstreamId: config.id, tenantId: config.tenantId, state: 'closed' }]);
  });

  it('opens the circuit of an upstream whose host name is not resolved in time (the guarded lookup\'s ETIMEOUT)', async () => {
    const c = connector({ breaker: { failureThreshold: 2, cooldownMs: 60_000 } });
    const config = upstreamConfig('streamable_http', { url: 'http://mcp.unresolvable.test/mcp' });
    for (let attempt = 0; attempt < 2; attempt += 1) {
      await expect(c.connect(config, identity)).rejects.toMatchObject({ reason: 'connect_failed' });
    }
    // Its tenant's connects fail fast now, instead of each taking a lookup (and waiting up to the deadline for one).
    await expect(c.connect(config, identity)).rejects.toMatchObject({ reason: 'circuit_open' });
  });

  it('opens the circuit on an upstream that takes notifications but answers no call: the 202 to each cancel is not health', async () => {
    let calls = 0;
    const server = await callServer(() => void (calls += 1)); // never answered
    servers.push(server);
    const c = connector({ breaker: { failureThreshold: 2, cooldownMs: 60_000 } });
    const session = await c.connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp`, callTimeoutMs: 150 }), identity);
    const outcome = () => session.request('tools/call', { name: 'hang', arguments: {} }).then(() => 'answered', (error: { reason?: string }) => error.reason);
    expect(await outcome()).toBe('timeout');
    // Its notifications/cancelled gets 202 before the next call goes.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await outcome()).toBe('timeout');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await outcome()).toBe('circuit_open');
    expect(calls).toBe(2);
  });

  it('opens the circuit on an upstream that sends 200 and its SSE headers at once and never the answer: headers are not health', async () => {
    let calls = 0;
    const server = await callServer((_message, res) => {
      calls += 1;
      // As the SDK's server does: the response starts before the tool runs; then the tool hangs.
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
    });
    servers.push(server);
    const c = connector({ breaker: { failureThreshold: 2, cooldownMs: 60_000 } });
    const session = await c.connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp`, callTimeoutMs: 150 }), identity);
    const outcome = () => session.request('tools/call', { name: 'hang', arguments: {} }).then(() => 'answered', (error: { reason?: string }) => error.reason);
    expect(await outcome()).toBe('timeout');
    expect(await outcome()).toBe('timeout');
    // Before, each 200 reset the count of failures: every call waited out its timeout, and the circuit never opened.
    expect(await outcome()).toBe('circuit_open');
    expect(calls).toBe(2);
  });

  it('never sends notifications/cancelled for a task-augmented call it gives up on (MCP 2025-11-25: tasks/cancel), and still does for a plain one', async () => {
    const cancelled: unknown[] = [];
    const calls = new Map<unknown, unknown>();
    const server = await callServer(
      (message, res) => {
        // Taken, and never answered.
        calls.set(message.params?.['name'], message.id);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.flushHeaders();
      },
      (message) => {
        if (message.method === 'notifications/cancelled') cancelled.push(message.params?.['requestId']);
      },
    );
    servers.push(server);
    const session = await connector().connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp`, callTimeoutMs: 150 }), identity);
    const aborted = new AbortController();
    const outcomes = [
      session.request('tools/call', { name: 'task-timeout', arguments: {}, task: { ttl: 60_000 } }).catch((error: { reason?: string }) => error.reason),
      session.request('tools/call', { name: 'task-aborted', arguments: {}, task: {} }, { signal: aborted.signal }).catch(() => 'aborted'),
      session.request('tools/call', { name: 'plain', arguments: {} }).catch((error: { reason?: string }) => error.reason),
    ];
    await waitFor(() => (calls.size >= 3 ? true : undefined), 3_000);
    aborted.abort(new Error('agent cancelled'));
    expect(await Promise.all(outcomes)).toEqual(['timeout', 'aborted', 'timeout']);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(cancelled).toEqual([calls.get('plain')]);
    await session.close();
  });

  it('tells the upstream a call is cancelled when its answer cannot be read (oversized event, stream ended unanswered, not JSON or SSE), never an initialize', async () => {
    const cancelled: unknown[] = [];
    const server = await callServer(
      (message, res) => {
        if (message.params?.['name'] === 'plain') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('{}');
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        // The call is under way upstream; then its stream carries an event over the limit, or ends with no answer.
        if (message.params?.['name'] === 'huge') res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'x'.repeat(4_096) } })}\n\n`);
        else res.end();
      },
      (message) => {
        // Only calls are cancelled: an initialize never is (its id would show here).
        if (message.method === 'notifications/cancelled') cancelled.push(message.params?.['requestId']);
      },
    );
    const session = await sessionOn(server, { maxMessageBytes: 1_024 });
    for (const name of ['huge', 'ended', 'plain']) {
      await expect(session.request('tools/call', { name, arguments: {} })).rejects.toMatchObject({ reason: 'protocol_error' });
    }
    await waitFor(() => (cancelled.length >= 3 ? true : undefined), 3_000);
    expect(cancelled).toHaveLength(3);
    expect(cancelled.every((id) => typeof id === 'number')).toBe(true);
    await session.close();
  });

  it('ends (DELETE) an upstream session whose handshake failed after the upstream named it', async () => {
    const deleted: (string | undefined)[] = [];
    const server = await rawServer((req, res) => {
      if (req.method === 'DELETE') {
        deleted.push(req.headers['mcp-session-id'] as string | undefined);
        res.writeHead(200).end();
        return;
      }
      void readJson(req).then((message) => {
        if (message.id === undefined) {
          // The initialized notification is refused: the handshake fails after the session was named.
          res.writeHead(400, { 'content-type': 'application/json' }).end('{}');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': `s-${deleted.length + 1}` });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: initializeResult }));
      });
    });
    servers.push(server);
    const c = connector();
    await expect(c.connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp` }), identity)).rejects.toBeInstanceOf(UpstreamUnavailableError);
    await waitFor(() => (deleted.length === 1 ? true : undefined), 3_000);
    expect(deleted).toEqual(['s-1']);
  });

  it('opens the circuit for an SSE upstream too', async () => {
    const port = await deadPort();
    const c = connector({ breaker: { failureThreshold: 1, cooldownMs: 60_000 } });
    const config = upstreamConfig('sse', { url: `http://127.0.0.1:${port}/sse` });
    await expect(c.connect(config, identity)).rejects.toMatchObject({ reason: 'connect_failed' });
    await expect(c.connect(config, identity)).rejects.toMatchObject({ reason: 'circuit_open' });
  });

  it('lets the next SSE probe through at once when a half-open probe ended without a verdict (a 401 on the stream)', async () => {
    let mode: 'silent' | 'unauthorised' = 'silent';
    const server = await rawServer((_req, res) => {
      if (mode === 'unauthorised') res.writeHead(401).end();
      // silent: never answers, so the handshake times out (a failure the breaker counts)
    });
    servers.push(server);
    const c = connector({ breaker: { failureThreshold: 1, cooldownMs: 300 } });
    const config = upstreamConfig('sse', { url: `${server.url}/sse`, connectTimeoutMs: 100 });
    await expect(c.connect(config, identity)).rejects.toMatchObject({ reason: 'timeout' });
    await expect(c.connect(config, identity)).rejects.toMatchObject({ reason: 'circuit_open' });
    await new Promise((resolve) => setTimeout(resolve, 350));
    mode = 'unauthorised';
    await expect(c.connect(config, identity)).rejects.toMatchObject({ reason: 'protocol_error' });
    // Before, this probe was still counted as under way: refused for another whole cool-down.
    await expect(c.connect(config, identity)).rejects.toMatchObject({ reason: 'protocol_error' });
  });

  it('lets one half-open probe at a time reach an upstream: connects the open circuit refuses do not free its slot', async () => {
    let requests = 0;
    const server = await rawServer(() => void (requests += 1)); // never answers: every connect times out
    servers.push(server);
    const c = connector({ breaker: { failureThreshold: 1, cooldownMs: 300 } });
    const config = upstreamConfig('streamable_http', { url: `${server.url}/mcp`, connectTimeoutMs: 400 });
    await expect(c.connect(config, identity)).rejects.toMatchObject({ reason: 'timeout' });
    await new Promise((resolve) => setTimeout(resolve, 350));
    const probe = c.connect(config, identity).catch((error: unknown) => error);
    const others: unknown[] = [];
    for (let i = 0; i < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      others.push(await c.connect(config, identity).catch((error: unknown) => error));
    }
    expect(await probe).toMatchObject({ reason: 'timeout' });
    // Before, each refused connect freed the probe's slot: every other connect reached the dead upstream and waited.
    expect(others).toEqual(Array.from({ length: 4 }, () => expect.objectContaining({ reason: 'circuit_open' })));
    expect(requests).toBe(2);
  });

  it('keeps the half-open probe\'s slot while the session answers the upstream\'s pings: those answers never took it', async () => {
    let calls = 0;
    let pingAnswers = 0;
    let stream: ServerResponse | undefined;
    const server = await mcpServer({
      get: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(': open\n\n');
        stream = res;
      },
      answer: (_message, res) => {
        pingAnswers += 1;
        res.writeHead(202).end();
      },
      call: () => void (calls += 1), // a call: never answered
    });
    servers.push(server);
    const c = connector({ breaker: { failureThreshold: 1, cooldownMs: 200 } });
    const session = await c.connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp`, callTimeoutMs: 10_000 }), identity);
    listenOn(session);
    await waitFor(() => stream);
    const outcome = (timeoutMs?: number) =>
      session.request('tools/call', { name: 'hang', arguments: {} }, { timeoutMs }).then(() => 'answered', (error: { reason?: string }) => error.reason);
    expect(await outcome(100)).toBe('timeout');
    await waitFor(() => (c.circuits?.()[0]?.state === 'half_open' ? true : undefined));
    const probe = outcome();
    await waitFor(() => (calls === 2 ? true : undefined));
    const quietPosts = (session as unknown as { quietPosts: { size: number } }).quietPosts;
    const others: Promise<string | undefined>[] = [];
    for (let n = 1; n <= 3; n++) {
      stream?.write(`data: ${JSON.stringify({ jsonrpc: '2.0', id: `ping-${n}`, method: 'ping' })}\n\n`);
      // The answer reached the upstream and its 202 came back.
      await waitFor(() => (pingAnswers === n && quietPosts.size === 0 ? true : undefined));
      others.push(outcome());
    }
    await session.close();
    // Before, each 202 to a ping's answer freed the probe's slot: every call after it reached the hanging upstream.
    expect(await Promise.all(others)).toEqual(['circuit_open', 'circuit_open', 'circuit_open']);
    expect(await probe).toBe('closed');
    expect(calls).toBe(2);
  });

  it('refuses private addresses unless the policy allows them, without naming the address', async () => {
    const server = await rawServer((_req, res) => res.writeHead(500).end());
    servers.push(server);
    const logger = recordingLogger();
    const strict = connector({ allowPrivateNetworks: false, logger });
    for (const url of [`${server.url}/mcp`, `http://localhost:${server.port}/mcp`, 'file:///etc/passwd']) {
      const error = await strict
        .connect(
          upstreamConfig('streamable_http', { url, headers: { authorization: 'Bearer s3cret' } }),
          identity,
        )
        .catch((e: unknown) => e);
      expect(error).toMatchObject({ reason: 'connect_failed' });
      expect((error as Error).message).not.toContain(String(server.port));
    }
    // header values are never logged, at any level
    expect(JSON.stringify(logger.entries)).not.toContain('s3cret');
    // the host name passed the URL check; the pooled socket's DNS lookup is what refused it
    expect(logger.entries.map((entry) => entry.fields['code'])).toContain('EPORTCULLIS_ADDRESS_REFUSED');
    // an allow-listed host passes the guard (and then meets the 500)
    const allowed = connector({ allowPrivateNetworks: false, allowedHosts: ['localhost'] });
    await expect(
      allowed.connect(
        upstreamConfig('streamable_http', { url: `http://localhost:${server.port}/mcp` }),
        identity,
      ),
    ).rejects.toMatchObject({
      reason: 'protocol_error',
    });
  });

  it('fails a connect whose configured header Node refuses to send as a connect failure, for both HTTP transports', async () => {
    const { server } = await legacySseServer();
    servers.push(server);
    const logger = recordingLogger();
    const bad = { 'x-api-key': 'secret-part\nX-Injected: 1' };
    for (const config of [upstreamConfig('sse', { url: `${server.url}/sse`, headers: bad }), upstreamConfig('streamable_http', { url: `${server.url}/mcp`, headers: bad })]) {
      const error = await connector({ logger }).connect(config, identity).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, config.transport).toBeInstanceOf(UpstreamUnavailableError);
      expect((error as UpstreamUnavailableError).reason).toBe('connect_failed');
      expect(JSON.stringify(logger.entries)).not.toContain('secret-part');
    }
  });

  it('refuses an SSE message endpoint on another origin', async () => {
    const elsewhere = await rawServer((_req, res) => res.writeHead(202).end());
    const server = await rawServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`event: endpoint\ndata: http://127.0.0.1:${elsewhere.port}/messages?sessionId=x\n\n`);
    });
    servers.push(server, elsewhere);
    const error = await connector()
      .connect(upstreamConfig('sse', { url: `${server.url}/sse` }), identity)
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      reason: 'protocol_error',
      message: expect.stringContaining('another origin'),
    });
  });

  it('tells the session\'s owner once when a legacy SSE upstream\'s stream ends under it, and fails calls after', async () => {
    const { server, streams } = await legacySseServer();
    servers.push(server);
    const session = await connector().connect(upstreamConfig('sse', { url: `${server.url}/sse` }), identity);
    let closed = 0;
    session.onClosed?.(() => (closed += 1));
    expect(await session.request('tools/call', { name: 'x', arguments: {} })).toEqual({ content: [] });
    expect(closed).toBe(0);
    streams.at(-1)?.end();
    await waitFor(() => closed === 1, 5_000);
    await expect(session.request('tools/call', { name: 'x', arguments: {} })).rejects.toMatchObject({ reason: 'closed' });
    await session.close();
    expect(closed).toBe(1);
  });
});
