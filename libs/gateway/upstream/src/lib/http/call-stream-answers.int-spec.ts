/**
 * What a Streamable HTTP upstream writes on a call's own SSE stream ends the call at once when it can only be about
 * that call, however long the upstream keeps the stream open afterwards (the gateway lingers for such servers):
 * - an answer that carries the call's id but is invalid JSON-RPC (a result that is no object, result and error both,
 *   an error without a numeric code) fails it as a protocol error, as stdio and legacy SSE fail one;
 * - an error with a null id (the server could not read the request, JSON-RPC 2.0 §5) is its answer.
 * Before, both were dropped: the call waited out its whole callTimeoutMs, counted against the upstream's circuit.
 * An invalid answer with the call's id on the session's standalone GET stream fails the call too (it was dropped).
 * And a request that cannot be written at all (nested too deeply), made while the session's first standalone GET is
 * awaited, is rejected as it is when sent at once (it was left on a promise nothing settled, the error unhandled).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { identity, rawServer, upstreamConfig, type RawServer } from '../../test-fixtures/upstream-test-kit';
import type { UpstreamSession } from '@portcullis/gateway/mcp';
import { createUpstreamConnector } from '../upstream-connector';

const servers: RawServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const initializeResult = { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'raw', version: '1' } };

interface Received {
  readonly id?: number;
  readonly method?: string;
  readonly params?: Record<string, unknown>;
}

function readJson(req: IncomingMessage): Promise<Received> {
  return new Promise((resolve) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => resolve(text === '' ? {} : (JSON.parse(text) as Received)));
  });
}

/**
 * A raw Streamable HTTP upstream at callTimeoutMs `timeoutMs`, connected: initialize is answered with session `s1`,
 * notifications with 202 (and kept in `notified`), each request after it by `call`, and GETs by `get` (405 unless given).
 */
async function connected(
  call: (id: number, res: ServerResponse) => void,
  timeoutMs: number,
  get: ((res: ServerResponse, req: IncomingMessage) => void) | undefined,
  run: (session: UpstreamSession) => Promise<void>,
  notified: Received[] = [],
): Promise<void> {
  const server = await rawServer((req, res) => {
    if (req.method === 'GET') return get === undefined ? void res.writeHead(405).end() : get(res, req);
    if (req.method !== 'POST') return void res.writeHead(405).end();
    void readJson(req).then((message) => {
      if (message.method === 'initialize') {
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's1' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: initializeResult }));
      } else if (message.id === undefined) {
        notified.push(message);
        res.writeHead(202).end();
      } else call(message.id, res);
    });
  });
  servers.push(server);
  const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true });
  try {
    await run(await connector.connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp`, callTimeoutMs: timeoutMs }), identity));
  } finally {
    await connector.shutdown();
  }
}

/** An SSE stream left open, a keep-alive comment now and then. */
function keptOpen(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.flushHeaders();
  const ping = setInterval(() => res.write(': ping\n\n'), 200);
  res.on('close', () => clearInterval(ping));
}

const event = (message: unknown): string => `event: message\ndata: ${JSON.stringify(message)}\n\n`;

/** How `request` ended, and how long it took. */
async function timed(request: Promise<unknown>): Promise<{ error: unknown; tookMs: number }> {
  const started = Date.now();
  const error = await request.then(() => 'answered', (e: unknown) => e);
  return { error, tookMs: Date.now() - started };
}

const invalidAnswers = [
  ['a result that is no object', (id: number) => ({ jsonrpc: '2.0', id, result: 'not an object' })],
  ['result and error both', (id: number) => ({ jsonrpc: '2.0', id, result: {}, error: { code: -32000, message: 'x' } })],
  ['an error without a numeric code', (id: number) => ({ jsonrpc: '2.0', id, error: { code: 'E_FAIL', message: 'x' } })],
] as const;

describe('Streamable HTTP: what ends a call on a stream the upstream keeps open', () => {
  for (const [what, answer, outcome] of [
    ...invalidAnswers.map(([label, invalid]) => [label, invalid, { reason: 'protocol_error' }] as const),
    ['a parse error with a null id', () => ({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } }), { code: -32700, message: 'Parse error' }],
    ['an internal error with a null id', () => ({ jsonrpc: '2.0', id: null, error: { code: -32603, message: 'Internal error' } }), { code: -32603 }],
  ] as const) {
    it(`ends at once on ${what}, not at its timeout`, async () => {
      // The answer, then the stream stays open.
      const answered = (id: number, res: ServerResponse) => {
        keptOpen(res);
        res.write(event(answer(id)));
      };
      await connected(answered, 4_000, undefined, async (session) => {
        const { error, tookMs } = await timed(session.request('tools/call', { name: 'x', arguments: {} }));
        expect(error).toMatchObject(outcome);
        expect(tookMs).toBeLessThan(1_000);
      });
    }, 15_000);
  }
});

describe('Streamable HTTP: an invalid answer put on the standalone GET stream', () => {
  it.each(invalidAnswers)('fails its call at once on %s, not at its timeout', async (_what, answer) => {
    let standalone: ServerResponse | undefined;
    const get = (res: ServerResponse) => {
      keptOpen(res);
      standalone = res;
    };
    // The call's own stream stays open and says nothing; its (invalid) answer goes on the standalone stream.
    const call = (id: number, res: ServerResponse) => {
      keptOpen(res);
      standalone?.write(event(answer(id)));
    };
    await connected(call, 4_000, get, async (session) => {
      session.listen?.(true);
      const started = Date.now();
      while (standalone === undefined && Date.now() - started < 3_000) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(standalone, 'the standalone GET').toBeDefined();
      const { error, tookMs } = await timed(session.request('tools/call', { name: 'x', arguments: {} }));
      expect(error).toMatchObject({ reason: 'protocol_error' });
      expect(tookMs).toBeLessThan(1_000);
    });
  }, 15_000);
});

describe('Streamable HTTP: an invalid answer on the standalone GET stream for a call whose own stream closed to be resumed', () => {
  it.each([
    // Its stream's retry is 3 s: the answer comes while the call waits it out.
    ['while it waits out the retry', 3_000],
    // Its stream's retry is 0.1 s: the answer comes once its resuming GET is sent, before that GET's headers.
    ["while its resuming GET awaits its headers", 100],
  ])('%s: fails the call, and tells the upstream (which took it) that it was given up', async (_when, retryMs) => {
    let standalone: ServerResponse | undefined;
    let callId: number | undefined;
    const held: ServerResponse[] = [];
    const notified: Received[] = [];
    const invalid = () => standalone?.write(event({ jsonrpc: '2.0', id: callId, result: 'not an object' }));
    const get = (res: ServerResponse, req: IncomingMessage) => {
      if (req.headers['last-event-id'] === undefined) {
        keptOpen(res);
        standalone = res;
        return;
      }
      // The call's resuming GET: held with no headers; the invalid answer goes on the standalone stream meanwhile.
      held.push(res);
      invalid();
    };
    // The call is taken (200, primed) and its stream closed for the client to resume after `retryMs`.
    const call = (id: number, res: ServerResponse) => {
      callId = id;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`id: e1\nretry: ${retryMs}\ndata: \n\n`);
      if (retryMs > 1_000) setTimeout(invalid, 200);
    };
    try {
      await connected(
        call,
        8_000,
        get,
        async (session) => {
          session.listen?.(true);
          const started = Date.now();
          while (standalone === undefined && Date.now() - started < 3_000) await new Promise((resolve) => setTimeout(resolve, 20));
          const { error, tookMs } = await timed(session.request('tools/call', { name: 'x', arguments: {} }));
          expect(error).toMatchObject({ reason: 'protocol_error' });
          expect(tookMs).toBeLessThan(2_000);
          const cancelled = () => notified.filter((message) => message.method === 'notifications/cancelled');
          const waited = Date.now();
          while (cancelled().length === 0 && Date.now() - waited < 1_500) await new Promise((resolve) => setTimeout(resolve, 20));
          expect(cancelled()).toHaveLength(1);
        },
        notified,
      );
    } finally {
      for (const res of held) res.destroy();
    }
  }, 15_000);
});

describe('Streamable HTTP: a request that cannot be written, made while the first standalone GET is awaited', () => {
  it('is rejected, not left waiting on a promise nothing settles', async () => {
    // The standalone stream is refused, a little late: requests made meanwhile wait for that answer.
    const get = (res: ServerResponse) => void setTimeout(() => res.writeHead(405).end(), 300);
    const call = (id: number, res: ServerResponse) => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id, result: {} }));
    await connected(call, 10_000, get, async (session) => {
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
    });
  }, 15_000);
});
