/**
 * A long-lived SSE stream keeps an agent that reads a large message (24 MiB, past the unsent bound) slowly and
 * steadily, however long it takes, whether the message is the first written or follows a small one already taken.
 */
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { EventStream } from './sinks';

async function steadyRead(prelude: boolean): Promise<{ received: number; body: number; closed: boolean; tookMs: number }> {
  const big = { jsonrpc: '2.0', id: 2, result: { content: [{ type: 'text', text: 'x'.repeat(24 * 1024 * 1024) }] } } as const;
  const body = Buffer.byteLength(JSON.stringify(big));
  let closed = false;
  const server = createServer((_req, res) => {
    // Keep-alives every 100 ms: each is written while the large message is still going out.
    const stream = new EventStream(res, {}, 100);
    stream.onClose(() => (closed = true));
    if (prelude) {
      // The legacy transport's endpoint event (or any small message), taken at once; the large answer a little later.
      stream.event('endpoint', '/t/x/messages?sessionId=abc');
      setTimeout(() => stream.send(big), 500);
    } else stream.send(big);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  let received = 0;
  const started = Date.now();
  try {
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.pause();
    socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n');
    // At most 64 KiB every 10 ms (about 6 MiB/s): the answer takes a few seconds.
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        let taken = 0;
        let chunk: Buffer | null;
        while (taken < 64 * 1024 && (chunk = socket.read() as Buffer | null) !== null) {
          taken += chunk.length;
          received += chunk.length;
        }
        if (received >= body || Date.now() - started > 20_000 || closed || socket.destroyed) {
          clearInterval(tick);
          resolve();
        }
      }, 10);
    });
    return { received, body, closed, tookMs: Date.now() - started };
  } finally {
    socket.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

describe('EventStream with an agent that reads slowly but steadily', () => {
  it('keeps the connection while a large message is taken, however long it takes', { timeout: 30_000 }, async () => {
    const { received, body, closed, tookMs } = await steadyRead(false);
    expect(closed, `the stream was dropped after ${tookMs} ms with ${received} of ${body} bytes taken`).toBe(false);
    expect(received).toBeGreaterThanOrEqual(body);
  });

  it('keeps the connection when the large message follows a small one already taken', { timeout: 30_000 }, async () => {
    const { received, body, closed, tookMs } = await steadyRead(true);
    expect(closed, `the stream was dropped after ${tookMs} ms with ${received} of ${body} bytes taken`).toBe(false);
    expect(received).toBeGreaterThanOrEqual(body);
  });
});
