/**
 * Servers that answer 400 where MCP asks for 404 (a session they do not know), as re-review found the first form of
 * that fix wanting:
 * - a standalone GET refused so ends the session (as a 404 does), so that a listening agent's next stream comes on a
 *   new one; it was given up for good, and an agent that only listened heard nothing more;
 * - a 400 whose body never ends is decided on what came within a second, not left to the call's timeout (which counted
 *   against the circuit and sent a cancellation for a request the upstream refused);
 * - a 400 carrying the call's own JSON-RPC error is the call's failure, whatever it says of a session; one that named a
 *   session dropped a live upstream session and sent the call again on another. Its code, message and data are the
 *   upstream's answer, passed on (they were replaced by a bare protocol error).
 */
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { identity, rawServer, upstreamConfig, waitFor, type RawServer } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

const initializeResult = { protocolVersion: '2025-11-25', capabilities: { tools: {}, resources: { subscribe: true } }, serverInfo: { name: 'sdk-example', version: '1' } };

const servers: RawServer[] = [];
const connectors: ReturnType<typeof createUpstreamConnector>[] = [];
afterEach(async () => {
  await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
  await Promise.allSettled(servers.splice(0).map((s) => s.close()));
});

/**
 * A raw upstream (session `sessionId`, none when null): initialize answered, notifications taken (those named in `notified`),
 * each call by `call`, GETs by `get`; connected through a new connector at callTimeoutMs `timeoutMs`.
 */
async function connected(call: (id: number, res: ServerResponse) => void, get: (res: ServerResponse) => void, timeoutMs = 10_000, notified: string[] = [], sessionId: string | null = 'sdk-session-1') {
  const server = await rawServer((req, res) => {
    if (req.method === 'GET') return get(res);
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => {
      const message = JSON.parse(text) as { id?: number; method?: string };
      if (message.id === undefined) {
        if (message.method !== undefined) notified.push(message.method);
        return void res.writeHead(202).end();
      }
      if (message.method === 'initialize') {
        res.writeHead(200, { 'content-type': 'application/json', ...(sessionId === null ? {} : { 'mcp-session-id': sessionId }) });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: initializeResult }));
        return;
      }
      call(message.id, res);
    });
  });
  servers.push(server);
  const c = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true, standaloneBackoffMs: { initial: 20, max: 40 } });
  connectors.push(c);
  const session = await c.connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp`, callTimeoutMs: timeoutMs }), identity);
  let closed = 0;
  session.onClosed?.(() => (closed += 1));
  return { session, closed: () => closed };
}

const refuseGet = (res: ServerResponse) => void res.writeHead(405).end();
const outcomeOf = (request: Promise<unknown>) => request.then(() => 'answered', (error: { reason?: string; code?: number }) => error.reason ?? `rpc ${error.code}`);

describe('a standalone stream refused with a 400 saying the session is unknown (an SDK example server restarted)', () => {
  it.each([
    ['404 Session not found (as MCP asks)', 404, 'Session not found'],
    ['400 Invalid or missing session ID (SDK examples)', 400, 'Invalid or missing session ID'],
  ])('ends the session: %s', async (_label, status, body) => {
    let restarted = false;
    const streams: ServerResponse[] = [];
    const get = (res: ServerResponse) => {
      if (restarted) return void res.writeHead(status, { 'content-type': 'text/plain' }).end(body);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': open\n\n');
      streams.push(res);
    };
    const { session, closed } = await connected((_id, res) => void res.writeHead(400).end(), get);
    session.onNotification(() => undefined);
    session.listen?.(true);
    await waitFor(() => streams.length === 1);
    // The server restarts: its stream drops, and it no longer knows the session.
    restarted = true;
    streams[0]?.destroy();
    await waitFor(() => closed() === 1, 3_000).catch(() => undefined);
    expect(closed()).toBe(1);
  });
});

describe('a 400 to a call whose body never ends', () => {
  it('fails the call within a couple of seconds, not at its timeout, and sends no cancellation', async () => {
    const notified: string[] = [];
    // A 400 whose (short) body is started and never finished.
    const call = (_id: number, res: ServerResponse) => {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.write('Bad Request: ');
    };
    const { session } = await connected(call, refuseGet, 8_000, notified);
    const started = Date.now();
    const outcome = await outcomeOf(session.request('tools/call', { name: 'x', arguments: {} }));
    expect({ outcome, fast: Date.now() - started < 3_000 }).toEqual({ outcome: 'protocol_error', fast: true });
    expect(notified).not.toContain('notifications/cancelled');
  }, 20_000);
});

describe("a 400 carrying the call's own JSON-RPC error", () => {
  const ownError = (message: string) => (id: number, res: ServerResponse) => {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', id, error: { code: -32602, message, data: { field: 'url' } } }));
  };

  it("is the call's own failure, passed on with the upstream's code, even when it mentions a session: the upstream session is not taken as forgotten", async () => {
    const { session, closed } = await connected(ownError("Invalid params: unknown session 'browser-7'"), refuseGet);
    expect(await outcomeOf(session.request('tools/call', { name: 'browser_open', arguments: {} }))).toBe('rpc -32602');
    await expect(session.request('tools/call', { name: 'browser_open', arguments: {} })).rejects.toMatchObject({ code: -32602, message: "Invalid params: unknown session 'browser-7'", data: { field: 'url' } });
    expect(closed()).toBe(0);
  });

  it('is passed on from an upstream without sessions too; a 400 whose error names no request stays a protocol error', async () => {
    const { session } = await connected(ownError('Invalid params: url must be absolute'), refuseGet, 10_000, [], null);
    await expect(session.request('tools/call', { name: 'fetch', arguments: { url: 'x' } })).rejects.toMatchObject({ code: -32602, message: 'Invalid params: url must be absolute' });
    const nullId = (_id: number, res: ServerResponse) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Bad Request: Unsupported protocol version' } }));
    };
    const other = await connected(nullId, refuseGet, 10_000, [], null);
    expect(await outcomeOf(other.session.request('tools/call', { name: 'fetch', arguments: {} }))).toBe('protocol_error');
  });

  // Found by re-review: the body was read to 4 KiB only, so an error with a validation report in its data was no JSON.
  it.each([
    ['from an upstream without sessions', 'Invalid params', null],
    ['mentioning a session, without the live upstream session taken as forgotten', "Invalid params: unknown session 'browser-7'", 'sdk-session-1'],
  ])("is passed on with data past 4 KiB, %s", async (_label, message, sessionId) => {
    const bigOwnError = (id: number, res: ServerResponse) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      const issues = Array.from({ length: 120 }, (_, n) => ({ path: ['arguments', `field_${n}`], message: 'Expected string, received number' }));
      res.end(JSON.stringify({ jsonrpc: '2.0', id, error: { code: -32602, message, data: { issues } } }));
    };
    const { session, closed } = await connected(bigOwnError, refuseGet, 10_000, [], sessionId);
    await expect(session.request('tools/call', { name: 'fetch', arguments: {} })).rejects.toMatchObject({ code: -32602, message, data: { issues: expect.arrayContaining([expect.objectContaining({ path: ['arguments', 'field_119'] })]) } });
    expect(closed()).toBe(0);
  });
});
