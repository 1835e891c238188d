/**
 * b9c1a411: EventStream's unread watcher judges an agent by "writes finished and libuv's queue for the write going
 * out". Both move only when the kernel takes more from the gateway, and the kernel takes more only once its send buffer
 * drained by a third (sk_stream_min_wspace) and the agent's receive window reopened: between the agent reading and
 * libuv seeing progress lie a few MiB of kernel buffers. An agent reading a large message steadily, but taking less than
 * that per grace, shows no progress at two looks in a row and is cut (and a legacy session with it). With the real
 * 30 s grace that is any agent reading slower than roughly 1.3 MiB / 30 s (about 40 KiB/s, 350 kbit/s); here the grace
 * is 1 s and the agent reads steadily at about 500 KiB/s.
 */
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { EventStream } from './sinks';

describe('zz EventStream unread watcher and the kernel buffers', () => {
  it('keeps an agent that reads a large message steadily, though less than the kernel buffers per grace', { timeout: 60_000 }, async () => {
    const big = { jsonrpc: '2.0', id: 2, result: { content: [{ type: 'text', text: 'x'.repeat(8 * 1024 * 1024) }] } } as const;
    const body = Buffer.byteLength(JSON.stringify(big));
    let closed = false;
    const server = createServer((_req, res) => {
      // The answer grace at 1 s instead of 30 s (the constructor's `unreadGraceMs`).
      const stream = new EventStream(res, {}, 60_000, undefined, undefined, undefined, false, false, 1_000);
      stream.onClose(() => (closed = true));
      stream.send(big);
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
      // 5 KiB every 10 ms, every tick (about 500 KiB/s): steady, and all of the message in well under a minute.
      await new Promise<void>((resolve) => {
        const tick = setInterval(() => {
          const n = Math.min(5 * 1024, socket.readableLength);
          const chunk = n > 0 ? (socket.read(n) as Buffer | null) : null;
          if (chunk !== null) received += chunk.length;
          if (received >= body || Date.now() - started > 45_000 || closed || socket.destroyed) {
            clearInterval(tick);
            resolve();
          }
        }, 10);
      });
      expect(closed, `the stream was dropped after ${Date.now() - started} ms with ${received} of ${body} bytes taken, read steadily`).toBe(false);
      expect(received).toBeGreaterThanOrEqual(body);
    } finally {
      socket.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
