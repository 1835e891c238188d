/**
 * b9c1a411: EventStream bounds "what waits behind the write going out", taking `unsent[0]` (one res.write) as the write
 * going out. But Node's socket hands every write that queued behind a pending one to libuv together (Writable writev:
 * clearBuffer), and their callbacks come together when the whole batch is in the kernel. When the agent is a little
 * behind (a small message S1 going out) and a small notification S2 then a large answer (10 MiB) both queue behind it,
 * once S1 is out S2 and the answer go out as ONE write; `unsent[0]` is S2 only, so the answer, already going out and
 * being read steadily, counts as waiting behind, and the next message (a keep-alive, another answer) cuts the stream
 * (and a legacy session with it).
 */
import { createServer, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { EventStream } from './sinks';

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('zz EventStream bound with writes batched behind a pending one', () => {
  it('does not cut a steady reader when a small message and a large answer queued together behind a small message', { timeout: 60_000 }, async () => {
    const big = { jsonrpc: '2.0', id: 2, result: { content: [{ type: 'text', text: 'x'.repeat(10 * 1024 * 1024) }] } } as const;
    const small = (n: number) => ({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: `${n}:${'y'.repeat(16 * 1024)}` } }) as const;
    let closed = false;
    let startReading: () => void = () => undefined;
    const reading = new Promise<void>((resolve) => (startReading = resolve));
    let outcome: { behindHeadAtSend: number; sentAfter: boolean; unsentAtSend: number[] } | undefined;
    const server = createServer((_req, res: ServerResponse) => {
      // Keep-alives and the unread watcher out of the way (60 s): only the unsent bound is looked at here.
      const stream = new EventStream(res, {}, 60_000, undefined, undefined, undefined, false, false, 60_000);
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
        // A progress notification, then the large answer: both wait behind the small message.
        stream.send(small(99_999));
        stream.send(big);
        startReading();
        // The first small message is out: the second and the large answer go out now (one writev), nothing waits behind.
        while (res.writableLength > Buffer.byteLength(JSON.stringify(big)) + 20 * 1024 && !res.destroyed) await new Promise((r) => setTimeout(r, 5));
        const behindHeadAtSend = res.writableLength;
        // What the stream takes for the write going out and what waits behind it: [the second small one, the answer].
        const unsentAtSend = [...(stream as unknown as { unsent: number[] }).unsent];
        // One more message (a ping's answer, a progress notification, the stream's keep-alive).
        const sentAfter = stream.send({ jsonrpc: '2.0', id: 3, result: {} });
        outcome = { behindHeadAtSend, sentAfter, unsentAtSend };
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
      expect(closed, `cut with ${outcome?.behindHeadAtSend} bytes unsent (writes ${JSON.stringify(outcome?.unsentAtSend)}), all going out in one write`).toBe(false);
      expect(outcome?.sentAfter).toBe(true);
      expect(text).toContain('{"jsonrpc":"2.0","id":3,"result":{}}');
    } finally {
      socket.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
