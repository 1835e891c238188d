/**
 * A long-lived SSE stream (a legacy session's, a standalone GET) bounds only what waits behind the writes going out,
 * counted write by write. When the agent is a little behind (a small message still unsent) as a large answer comes,
 * the answer waits behind the small one, alone or with another message: once the small one is out, the writes queued
 * behind it go out together (one writev, their callbacks together), and the next message (a keep-alive, a progress
 * notification, another call's answer) does not count the large answer as waiting behind, nor cut an agent that
 * reads steadily.
 */
import { createServer, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { EventStream } from './sinks';

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('EventStream bound on what waits behind the writes going out', () => {
  it.each([
    ['a large answer', 0],
    ['a small message and a large answer', 1],
  ])('does not cut a steady reader when %s, queued behind a small message, go out', { timeout: 60_000 }, async (_case, between) => {
    const big = { jsonrpc: '2.0', id: 2, result: { content: [{ type: 'text', text: 'x'.repeat(10 * 1024 * 1024) }] } } as const;
    const small = (n: number) => ({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: `${n}:${'y'.repeat(16 * 1024)}` } }) as const;
    let closed = false;
    let startReading: () => void = () => undefined;
    const reading = new Promise<void>((resolve) => (startReading = resolve));
    let outcome: { behindHeadAtSend: number; sentAfter: boolean } | undefined;
    const server = createServer((_req, res: ServerResponse) => {
      // Keep-alives out of the way (60 s): only the unsent bound is looked at here.
      const stream = new EventStream(res, {}, 60_000);
      stream.onClose(() => (closed = true));
      void (async () => {
        // The agent is behind: small messages until one stays unsent (the kernel's buffers full), at most 48 MiB.
        for (let n = 0; n < 3_000; n++) {
          stream.send(small(n));
          await tick();
          if (res.writableLength > 0) break;
        }
        const headUnsent = res.writableLength;
        expect(headUnsent).toBeGreaterThan(0);
        expect(headUnsent).toBeLessThan(64 * 1024);
        // The large answer comes (after a progress notification, or alone): it waits behind the small message.
        for (let n = 0; n < between; n++) stream.send(small(100_000 + n));
        stream.send(big);
        startReading();
        // The small message is out: what queued behind it goes out now, nothing waits behind that.
        while (res.writableLength > Buffer.byteLength(JSON.stringify(big)) + (1 + between * 20) * 1024 && !res.destroyed) await new Promise((r) => setTimeout(r, 5));
        const behindHeadAtSend = res.writableLength;
        // One more message (a ping's answer, a progress notification, the stream's keep-alive).
        const sentAfter = stream.send({ jsonrpc: '2.0', id: 3, result: {} });
        outcome = { behindHeadAtSend, sentAfter };
      })();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    let text = '';
    try {
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.pause();
      socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n');
      await reading;
      // Steadily, at most 64 KiB every 10 ms.
      const started = Date.now();
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          let taken = 0;
          let chunk: Buffer | null;
          while (taken < 64 * 1024 && (chunk = socket.read() as Buffer | null) !== null) {
            taken += chunk.length;
            text += chunk.toString('latin1');
          }
          if (text.includes('"id":3,') || closed || socket.destroyed || Date.now() - started > 40_000) {
            clearInterval(timer);
            resolve();
          }
        }, 10);
      });
      expect(outcome).toBeDefined();
      expect(closed, `cut with ${outcome?.behindHeadAtSend} bytes unsent, all of them going out`).toBe(false);
      expect(outcome?.sentAfter).toBe(true);
      expect(text).toContain('{"jsonrpc":"2.0","id":3,"result":{}}');
    } finally {
      socket.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
