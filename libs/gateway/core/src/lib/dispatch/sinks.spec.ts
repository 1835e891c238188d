import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { GATEWAY_RPC, rpcError } from '../http/gateway-error';
import { CLOSE_GRACE_MS, EventStream, PostResponder, PostStreams, QuietResponses, rateLimitedRetryAfter, writeBounded } from './sinks';

/** A response whose client never reads: everything written after the first chunk stays buffered. */
function stalled(): Writable {
  return new Writable({ highWaterMark: 16, write: () => undefined });
}

describe('writeBounded', () => {
  it('writes while the unsent bytes stay under the bound, then drops the connection instead of buffering more', () => {
    const res = stalled();
    const frame = `data: ${'x'.repeat(1_000)}\n\n`;
    let written = 0;
    while (writeBounded(res as never, frame, false, 10_000)) written += 1;
    expect(written).toBeGreaterThanOrEqual(10);
    expect(written).toBeLessThanOrEqual(11);
    expect(res.destroyed).toBe(true);
    expect(writeBounded(res as never, frame, false, 10_000)).toBe(false);
  });

  it('ends the response with the last chunk when asked to', () => {
    const chunks: string[] = [];
    const res = new Writable({ write: (chunk: Buffer, _encoding, done) => (chunks.push(chunk.toString()), done()) });
    expect(writeBounded(res as never, 'a', false)).toBe(true);
    expect(writeBounded(res as never, 'b', true)).toBe(true);
    expect(res.writableEnded).toBe(true);
    expect(writeBounded(res as never, 'c')).toBe(false);
    expect(chunks.join('')).toBe('ab');
  });

  it('sends one message larger than the bound whole when nothing is waiting (a reading agent, a large result)', () => {
    const chunks: string[] = [];
    const res = new Writable({ write: (chunk: Buffer, _encoding, done) => (chunks.push(chunk.toString()), done()) });
    expect(writeBounded(res as never, 'x'.repeat(50_000), true, 10_000)).toBe(true);
    expect(chunks.join('')).toHaveLength(50_000);
    expect(res.destroyed).toBe(false);
  });
});

/** The parts of a ServerResponse PostResponder uses, recording what it was given. */
function recordingResponse() {
  const out = { status: 0, headers: [] as string[], body: '', chunks: [] as string[] };
  const res = {
    destroyed: false,
    writableEnded: false,
    writableLength: 0,
    writeHead(status: number, headers: string[]) {
      out.status = status;
      out.headers = headers;
      return res;
    },
    write(chunk: string) {
      out.chunks.push(chunk);
      return true;
    },
    end(body?: string | Buffer) {
      if (body !== undefined) out.body = body.toString();
      res.writableEnded = true;
      return res;
    },
    destroy() {
      res.destroyed = true;
      return res;
    },
  };
  return { res, out };
}

describe('PostResponder with answers too deeply nested to serialise', () => {
  const deep = JSON.parse(`${'['.repeat(20_000)}1${']'.repeat(20_000)}`) as unknown;

  it('answers an internal error with the same id instead of failing (JSON answer, batch, SSE answer)', () => {
    const json = recordingResponse();
    const warned: unknown[] = [];
    const logger = { warn: (obj: object, msg: string) => void warned.push({ ...obj, msg }) };
    new PostResponder(json.res as never, 'session-1', { logger, traceId: 'trace-7' }).finish({ jsonrpc: '2.0', id: 7, result: { structuredContent: { deep } } });
    // Reported for the operator, under the request's trace id (the audit row says the call went well).
    expect(warned).toEqual([{ traceId: 'trace-7', msg: expect.stringMatching(/nested too deeply/) }]);
    expect(json.out.status).toBe(200);
    expect(JSON.parse(json.out.body)).toMatchObject({ jsonrpc: '2.0', id: 7, error: { code: -32603, message: expect.stringMatching(/nested too deeply/) } });

    const batch = recordingResponse();
    new PostResponder(batch.res as never, 'session-1').finish([
      { jsonrpc: '2.0', id: 1, result: {} },
      { jsonrpc: '2.0', id: 2, result: { deep } },
    ]);
    // Only the answer that cannot be serialised is replaced: the other keeps its result.
    expect(JSON.parse(batch.out.body)).toEqual([
      { jsonrpc: '2.0', id: 1, result: {} },
      { jsonrpc: '2.0', id: 2, error: { code: -32603, message: expect.stringMatching(/nested too deeply/) } },
    ]);

    // A first relayed message that cannot be serialised leaves a plain JSON answer plain (no stream opened for it).
    const plain = recordingResponse();
    const pending = new PostResponder(plain.res as never, 'session-1');
    expect(pending.send({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: deep } })).toBe(false);
    expect(pending.resumable).toBe(false);
    pending.finish({ jsonrpc: '2.0', id: 4, result: {} });
    expect(plain.out.headers).toContain('application/json');
    expect(JSON.parse(plain.out.body)).toEqual({ jsonrpc: '2.0', id: 4, result: {} });

    const sse = recordingResponse();
    const streaming = new PostResponder(sse.res as never, 'session-1');
    expect(streaming.send({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } })).toBe(true);
    // A relayed message too deep to serialise is not delivered, and the stream goes on.
    expect(streaming.send({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: deep } })).toBe(false);
    streaming.finish({ jsonrpc: '2.0', id: 9, result: { deep } });
    const last = sse.out.body.split('\n').find((line) => line.startsWith('data: ')) ?? '';
    expect(JSON.parse(last.slice(6))).toMatchObject({ id: 9, error: { code: -32603 } });
    expect(sse.res.writableEnded).toBe(true);
  });
});

describe('EventStream with messages too deeply nested to serialise', () => {
  it('sends an internal error for an answer, drops another message, and stays open (the legacy transport)', () => {
    const deep = JSON.parse(`${'['.repeat(20_000)}1${']'.repeat(20_000)}`) as unknown;
    const { res, out } = recordingResponse();
    const warned: string[] = [];
    const stream = new EventStream(Object.assign(res, { on: () => res, flushHeaders: () => undefined }) as never, {}, 60_000, undefined, 's-spec', {
      warn: (_obj: object, msg: string) => void warned.push(msg),
    });
    try {
      expect(stream.send({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: deep } })).toBe(false);
      expect(stream.send({ jsonrpc: '2.0', id: 3, result: { deep } })).toBe(true);
      const data = out.chunks.join('').split('\n').find((line) => line.startsWith('data: ')) ?? '';
      expect(JSON.parse(data.slice(6))).toMatchObject({ id: 3, error: { code: -32603 } });
      // The replaced answer is reported; the dropped notification is not an answer and is not.
      expect(warned).toEqual([expect.stringMatching(/nested too deeply/)]);
      expect(stream.canStream).toBe(true);
    } finally {
      stream.close();
    }
  });
});

describe('EventStream on a response whose client has already gone', () => {
  it('runs close handlers registered afterwards (the response\'s own close fired while the request waited)', async () => {
    const { createServer, request } = await import('node:http');
    const closedSeen: string[] = [];
    const server = createServer((req, res) => {
      // The client hangs up while the gateway waits (a session lookup, the replay log); only then is the stream made.
      req.socket.once('close', () => {
        const stream = new EventStream(res, {}, 60_000);
        stream.onClose(() => closedSeen.push('handler'));
        // What a stream's bookkeeping waits for (the open streams a key revocation or shutdown ends) comes too.
        stream.whenDone(() => closedSeen.push('done'));
        expect(stream.canStream).toBe(false);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as { port: number };
      const client = request({ host: '127.0.0.1', port, path: '/', headers: { accept: 'text/event-stream' } });
      client.on('error', () => undefined);
      client.end();
      await new Promise((resolve) => setTimeout(resolve, 100));
      client.destroy();
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(closedSeen.sort()).toEqual(['done', 'handler']);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('EventStream closed on an agent that stopped reading', () => {
  it('drops the connection once the unsent bytes had their grace, so the stream\'s close handlers run', async () => {
    const { createServer } = await import('node:http');
    const { connect } = await import('node:net');
    let stream: EventStream | undefined;
    let unsent = 0;
    let closedAt: number | undefined;
    const server = createServer((_req, res) => {
      const opened = new EventStream(res, {}, 60_000);
      opened.onClose(() => (closedAt = Date.now()));
      // In rounds, until the kernel's buffers are full: a megabyte still waits in the response 100 ms after a round
      // (at most 48 MiB written).
      const event = { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'x'.repeat(64 * 1024) } } as const;
      void (async () => {
        for (let round = 0; round < 24; round++) {
          for (let sent = 0; sent < 32 && res.writableLength < 2 * 1024 * 1024; sent++) opened.send(event);
          await new Promise((resolve) => setTimeout(resolve, 100));
          if (res.writableLength >= 1024 * 1024) break;
        }
        unsent = res.writableLength;
        stream = opened;
      })();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const agent = connect(port, '127.0.0.1');
    agent.on('error', () => undefined);
    try {
      agent.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n');
      // The agent reads nothing from here on.
      agent.pause();
      await vi.waitFor(() => expect(stream).toBeDefined(), { timeout: 5_000 });
      expect(unsent).toBeGreaterThanOrEqual(1024 * 1024);
      const closedCalledAt = Date.now();
      stream?.close();
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(closedAt).toBeUndefined();
      await vi.waitFor(() => expect(closedAt).toBeDefined(), { timeout: CLOSE_GRACE_MS + 2_000, interval: 50 });
      expect((closedAt ?? 0) - closedCalledAt).toBeGreaterThanOrEqual(CLOSE_GRACE_MS - 50);
    } finally {
      agent.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 15_000);
});

describe('priming events (2025-11-25 agents, SEP-1699)', () => {
  const replay = { open: () => ({ append: () => undefined }) } as never;
  const progress = { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } } as const;

  it('opens a resumable POST stream with an id before its first message and a retry, and only a resumable one', () => {
    const primed = recordingResponse();
    new PostResponder(primed.res as never, 'session-1', { replay, prime: true }).send(progress);
    const [priming, first] = primed.out.chunks;
    const stream = /^id: (p\w+)_0\nretry: 1000\ndata: \n\n$/.exec(priming ?? '')?.[1];
    expect(stream).toBeDefined();
    expect(first?.startsWith(`id: ${stream}_1\ndata: `)).toBe(true);

    // No replay log: nothing could be resumed, so no priming event and no event ids (an id invites a resume). An older
    // agent: no priming event, ids on the messages.
    const unlogged = recordingResponse();
    new PostResponder(unlogged.res as never, 'session-1', { prime: true }).send(progress);
    expect(unlogged.out.chunks).toHaveLength(1);
    expect(unlogged.out.chunks[0]).toMatch(/^data: /);
    const older = recordingResponse();
    new PostResponder(older.res as never, 'session-1', { replay, prime: false }).send(progress);
    expect(older.out.chunks).toHaveLength(1);
    expect(older.out.chunks[0]).toMatch(/^id: p\w+_1\ndata: /);
  });

  it('gives a standalone stream\'s messages no ids without a replay log', () => {
    const { res, out } = recordingResponse();
    const stream = new EventStream(Object.assign(res, { on: () => res, flushHeaders: () => undefined }) as never, {}, 60_000, undefined, 's-spec', undefined, true);
    try {
      stream.send(progress);
      expect(out.chunks).toHaveLength(1);
      expect(out.chunks[0]).toMatch(/^data: /);
    } finally {
      stream.close();
    }
  });

  it('opens a resumable standalone stream with one', () => {
    const { res, out } = recordingResponse();
    const stream = new EventStream(
      Object.assign(res, { on: () => res, flushHeaders: () => undefined }) as never,
      {},
      60_000,
      { append: () => undefined },
      's-spec',
      undefined,
      true,
    );
    try {
      stream.send(progress);
      expect(out.chunks[0]).toBe('id: s-spec_0\nretry: 1000\ndata: \n\n');
      expect(out.chunks[1]?.startsWith('id: s-spec_1\n')).toBe(true);
    } finally {
      stream.close();
    }
  });
});

describe('QuietResponses (POST answers slow in coming)', () => {
  const replay = { open: () => ({ append: () => undefined }) } as never;
  const answer = { jsonrpc: '2.0', id: 5, result: { content: [] } } as const;

  function watched(options: { replay?: never; prime?: boolean; requests?: { id: number | string }[] } = {}) {
    const quiet = new QuietResponses(1_000);
    const recorded = recordingResponse();
    const responder = new PostResponder(recorded.res as never, 'session-1', { ...options, quiet });
    return { quiet, responder, ...recorded };
  }

  afterEach(() => {
    vi.useRealTimers();
  });

  it('leaves an answer that comes in time as plain JSON, and lets go of it', () => {
    vi.useFakeTimers();
    const { quiet, responder, out } = watched({ replay, prime: true });
    vi.advanceTimersByTime(500);
    responder.finish(answer);
    expect(quiet.size).toBe(0);
    vi.advanceTimersByTime(5_000);
    expect(out.headers).toContain('application/json');
    expect(out.chunks).toEqual([]);
    expect(JSON.parse(out.body)).toEqual(answer);
    quiet.close();
  });

  it('turns a quiet response into a stream opened by a priming event, keeps it alive, then answers on it', () => {
    vi.useFakeTimers();
    const { quiet, responder, out } = watched({ replay, prime: true });
    // Never more than the quiet time without a byte: nothing before it, the first keep-alive by the time it is up.
    vi.advanceTimersByTime(499);
    expect(out.chunks).toEqual([]);
    vi.advanceTimersByTime(501);
    expect(out.headers).toContain('text/event-stream');
    const [priming, comment] = out.chunks;
    const stream = /^id: (p\w+)_0\nretry: 1000\ndata: \n\n$/.exec(priming ?? '')?.[1];
    expect(stream).toBeDefined();
    expect(comment).toBe(': keep-alive\n\n');
    // The agent now holds an id: losing the connection no longer has to cancel the call.
    expect(responder.resumable).toBe(true);
    vi.advanceTimersByTime(3_000);
    const comments = out.chunks.filter((chunk) => chunk === ': keep-alive\n\n').length;
    expect(comments).toBeGreaterThanOrEqual(3);
    expect(comments).toBeLessThanOrEqual(4);
    responder.finish(answer);
    expect(out.body).toBe(`id: ${stream}_1\ndata: ${JSON.stringify(answer)}\n\n`);
    expect(quiet.size).toBe(0);
    quiet.close();
  });

  it('does not interrupt a stream that keeps sending, and keeps an older agent\'s stream alive without an id', () => {
    vi.useFakeTimers();
    const busy = watched({ replay, prime: true });
    const progress = { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } } as const;
    for (let i = 0; i < 8; i++) {
      busy.responder.send(progress);
      vi.advanceTimersByTime(400);
    }
    expect(busy.out.chunks.filter((chunk) => chunk.startsWith(':'))).toEqual([]);
    busy.quiet.close();

    // A 2025-06-18 agent (no priming events): kept alive, but it holds no id to resume from.
    const older = watched({ replay, prime: false });
    vi.advanceTimersByTime(1_000);
    expect(older.out.chunks).toEqual([': keep-alive\n\n']);
    expect(older.responder.resumable).toBe(false);
    older.quiet.close();
  });

  it('renews a resumable stream\'s log while its agent is away, until the answer', () => {
    vi.useFakeTimers();
    const kept: string[] = [];
    const appended: number[] = [];
    const log = { open: () => ({ append: (seq: number) => void appended.push(seq), keep: () => void kept.push('keep') }) } as never;
    const { quiet, responder, res } = watched({ replay: log, prime: true });
    vi.advanceTimersByTime(1_000);
    // Made as the priming event goes out, before any message is logged.
    expect(kept).toEqual(['keep']);
    res.destroyed = true;
    vi.advanceTimersByTime(5_000);
    // Once per quiet second (the log must outlive the wait; the configuration keeps its lifetime above that).
    expect(kept.length).toBeGreaterThanOrEqual(5);
    expect(quiet.size).toBe(1);
    responder.finish(answer);
    expect(appended).toEqual([1]);
    const renewals = kept.length;
    vi.advanceTimersByTime(5_000);
    expect(kept).toHaveLength(renewals);
    expect(quiet.size).toBe(0);
    quiet.close();
  });

  it('answers a batch on a stream one event per answer, in one write, the last one final in the log', () => {
    vi.useFakeTimers();
    const logged: [number, boolean][] = [];
    const log = { open: () => ({ append: (seq: number, _data: string, final: boolean) => void logged.push([seq, final]), keep: () => undefined }) } as never;
    const { quiet, responder, out } = watched({ replay: log, prime: true });
    vi.advanceTimersByTime(1_000);
    responder.finish([answer, { jsonrpc: '2.0', id: 6, result: {} }]);
    const events = out.body.split('\n\n').filter(Boolean);
    expect(events.map((event) => JSON.parse(event.slice(event.indexOf('data: ') + 6)).id)).toEqual([5, 6]);
    expect(logged).toEqual([
      [1, false],
      [2, true],
    ]);
    quiet.close();
  });

  it('opens the log with the id of the request it answers, for a replica resuming it', () => {
    vi.useFakeTimers();
    const opened: unknown[] = [];
    const log = { open: (...args: unknown[]) => (opened.push(args), { append: () => undefined, keep: () => undefined }) } as never;
    const { quiet, responder } = watched({ replay: log, prime: true, requests: [{ id: 'call-1' }] });
    expect(opened).toEqual([]);
    vi.advanceTimersByTime(1_000);
    expect(opened).toEqual([['session-1', expect.stringMatching(/^p/), ['call-1']]]);
    responder.release();
    quiet.close();
  });

  it('cuts a stream whose answer will never come, and stops keeping it', () => {
    vi.useFakeTimers();
    const { quiet, responder, res, out } = watched({ replay, prime: true });
    vi.advanceTimersByTime(1_000);
    const written = out.chunks.length;
    responder.release();
    expect(res.destroyed).toBe(true);
    expect(quiet.size).toBe(0);
    vi.advanceTimersByTime(5_000);
    expect(out.chunks).toHaveLength(written);
    quiet.close();
  });

  it('lets go of a response whose agent has gone without writing to it', () => {
    vi.useFakeTimers();
    const { quiet, res, out } = watched({ replay, prime: true });
    res.destroyed = true;
    vi.advanceTimersByTime(2_000);
    expect(quiet.size).toBe(0);
    expect(out.chunks).toEqual([]);
    quiet.close();
  });
});

describe('rateLimitedRetryAfter', () => {
  it('answers 429 for the gateway\'s own refusal only, with Retry-After at most an hour', () => {
    const own = rpcError(1, GATEWAY_RPC.RATE_LIMITED, 'Too many calls', 'trace', { retryAfterSeconds: 12.2 });
    expect(rateLimitedRetryAfter(own)).toBe('13');
    expect(rateLimitedRetryAfter(rpcError(1, GATEWAY_RPC.RATE_LIMITED, 'Too many calls', 'trace', { retryAfterSeconds: 1e21 }))).toBe('86400');
    // A day's window says what the refusal says (before: an hour at most, the client back 22 hours early).
    expect(rateLimitedRetryAfter(rpcError(1, GATEWAY_RPC.RATE_LIMITED, 'Too many calls', 'trace', { retryAfterSeconds: 80_000 }))).toBe('80000');
    expect(rateLimitedRetryAfter(rpcError(1, GATEWAY_RPC.RATE_LIMITED, 'Too many calls', 'trace'))).toBe('1');
    // An upstream's error with the same code (any server may use it) and its own retry figure passes through as a 200.
    const upstreams = { jsonrpc: '2.0' as const, id: 1, error: { code: GATEWAY_RPC.RATE_LIMITED, message: 'slow down', data: { retryAfterSeconds: 1e21 } } };
    expect(rateLimitedRetryAfter(upstreams)).toBeUndefined();
    expect(rateLimitedRetryAfter({ ...own })).toBeUndefined();
    expect(rateLimitedRetryAfter(rpcError(1, GATEWAY_RPC.POLICY_DENIED, 'denied', 'trace'))).toBeUndefined();
  });
});

describe('PostResponder answering an agent that does not read', () => {
  it('drops the connection once the unsent answer had its grace, and keeps one that was taken', async () => {
    const { createServer } = await import('node:http');
    const { connect } = await import('node:net');
    const closed: { which: string; unsent: number; after: number }[] = [];
    // A large answer, more than the kernel's buffers take while the agent reads nothing.
    const big = { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'x'.repeat(32 * 1024 * 1024) }] } } as const;
    const server = createServer((req, res) => {
      const which = req.url ?? '';
      const answeredAt = Date.now();
      new PostResponder(res, 'session', { answerGraceMs: 300 }).finish(which === '/small' ? { jsonrpc: '2.0', id: 1, result: {} } : big);
      const unsent = res.writableLength;
      res.on('close', () => closed.push({ which, unsent, after: Date.now() - answeredAt }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const stalled = connect(port, '127.0.0.1');
    stalled.on('error', () => undefined);
    const reader = connect(port, '127.0.0.1');
    reader.on('error', () => undefined);
    try {
      stalled.write('POST /big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n');
      stalled.pause();
      let read = '';
      reader.on('data', (chunk: Buffer) => (read += chunk.toString('latin1')));
      reader.write('POST /small HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n');
      await vi.waitFor(() => expect(closed.map((entry) => entry.which)).toContain('/big'), { timeout: 5_000, interval: 50 });
      const dropped = closed.find((entry) => entry.which === '/big');
      expect(dropped?.unsent).toBeGreaterThan(1024 * 1024);
      expect(dropped?.after).toBeGreaterThanOrEqual(250);
      // The small answer went out whole (the connection, kept alive, is not dropped for it).
      expect(read).toContain('"result":{}');
      expect(reader.destroyed).toBe(false);
    } finally {
      stalled.destroy();
      reader.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 15_000);

  it('keeps the connection of an agent that reads slowly but steadily, however long the whole answer takes', { timeout: 30_000 }, async () => {
    const { createServer } = await import('node:http');
    const { connect } = await import('node:net');
    const big = { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'x'.repeat(32 * 1024 * 1024) }] } } as const;
    const body = Buffer.byteLength(JSON.stringify(big));
    const server = createServer((_req, res) => new PostResponder(res, 'session', { answerGraceMs: 1_000 }).finish(big));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    let received = 0;
    try {
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.pause();
      socket.write('POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n');
      const started = Date.now();
      // At most 64 KiB every 10 ms: the whole answer takes several graces, and some of it moves in each.
      await new Promise<void>((resolve) => {
        const tick = setInterval(() => {
          let taken = 0;
          let chunk: Buffer | null;
          while (taken < 64 * 1024 && (chunk = socket.read() as Buffer | null) !== null) {
            taken += chunk.length;
            received += chunk.length;
          }
          if (received >= body || Date.now() - started > 20_000 || socket.destroyed) {
            clearInterval(tick);
            resolve();
          }
        }, 10);
      });
      expect(Date.now() - started).toBeGreaterThan(2_000);
      expect(received).toBeGreaterThanOrEqual(body);
    } finally {
      socket.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('EventStream resuming an older stream (the handover between replicas)', () => {
  const note = (text: string) => ({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: text } }) as const;
  const resuming = () => {
    const { res, out } = recordingResponse();
    const logged: { seq: number; data: string; final: boolean }[] = [];
    const log = { append: (seq: number, data: string, final: boolean) => void logged.push({ seq, data, final }) };
    const stream = new EventStream(Object.assign(res, { on: () => res, flushHeaders: () => undefined }) as never, {}, 60_000, log, 's-new', undefined, false, true);
    return { stream, out, logged };
  };
  const dataOf = (chunks: readonly string[]) => chunks.map((chunk) => /data: (.*)\n/.exec(chunk)?.[1] ?? '');

  it('leaves out a message relayed before its announcement came back that the older stream logged too, and nothing else', () => {
    const { stream, out, logged } = resuming();
    try {
      // Published on the bus while the older stream was still parked elsewhere: both got it.
      stream.send(note('both-had-it'), true);
      // Early too, but the older stream was gone by then (it is not in its log): the agent must get it here.
      stream.send(note('only-here'), true);
      // Not early: sent here whatever the older stream logged.
      stream.send(note('the-same-text'), false);
      expect(out.chunks).toEqual([]);
      stream.resumeAfter([
        { seq: 4, data: JSON.stringify(note('both-had-it')), final: false },
        { seq: 5, data: JSON.stringify(note('the-same-text')), final: false },
        { seq: 6, data: '', final: true },
      ], false);
      expect(dataOf(out.chunks).map((data) => (data === '' ? '' : (JSON.parse(data) as { params: { data: string } }).params.data))).toEqual([
        'both-had-it',
        'the-same-text',
        'only-here',
        'the-same-text',
      ]);
      // What the older stream logged is this stream's now (numbered and logged here): the agent's last id is this
      // stream's from the first message on, so its next resume finds what this stream logs from here on.
      expect(out.chunks[0]?.startsWith('id: s-new_1\n')).toBe(true);
      expect(out.chunks[1]?.startsWith('id: s-new_2\n')).toBe(true);
      // Then what was held, numbered in the order sent, after what was left out.
      expect(out.chunks[2]?.startsWith('id: s-new_3\n')).toBe(true);
      expect(out.chunks[3]?.startsWith('id: s-new_4\n')).toBe(true);
      expect(logged.map((entry) => entry.seq)).toEqual([1, 2, 3, 4]);
    } finally {
      stream.close();
    }
  });

  it('logs what it held back when it ends before the older log was read (the agent gone again meanwhile)', () => {
    const { stream, logged } = resuming();
    stream.send(note('held'), true);
    stream.close();
    expect(logged).toEqual([
      { seq: 1, data: JSON.stringify(note('held')), final: false },
      { seq: 2, data: '', final: true },
    ]);
  });
});

describe('PostStreams (resumes of POST streams)', () => {
  const follower = (sessionId: string, token: string, ended: string[]) => ({ sessionId, token, end: () => void ended.push(token) });

  it('ends the other resumes of the stream in the session, never the new one, nor another session\'s', () => {
    const streams = new PostStreams();
    const ended: string[] = [];
    const stopA = streams.follow('p1', follower('s1', 'a', ended));
    streams.follow('p1', follower('s1', 'b', ended));
    streams.follow('p1', follower('s2', 'c', ended));
    streams.follow('p2', follower('s1', 'd', ended));
    streams.resumed('s1', 'p1', 'b');
    expect(ended).toEqual(['a']);
    // A resume that closed leaves the registry.
    stopA();
    expect(streams.size).toBe(2);
  });

  // A notice without a token cannot say which resume is new, so none is ended (before, every
  // resume of the stream was, the new one included).
  it('ends no resume on a notice without a token', () => {
    const streams = new PostStreams();
    const ended: string[] = [];
    streams.follow('p1', follower('s1', 'a', ended));
    streams.follow('p1', follower('s1', 'b', ended));
    streams.resumed('s1', 'p1', undefined);
    expect(ended).toEqual([]);
  });
});
