import { connect, createServer, type Socket } from 'node:net';

/**
 * A TCP relay in front of the test Redis, for specs of a gateway whose Redis misbehaves (127.0.0.1 only):
 * - `cut()` drops every connection and refuses new ones until `open()` (Redis down, or restarting);
 * - `blackhole(true)` stops the bytes both ways, connections left open, until `blackhole(false)` (a partition: the
 *   bytes wait, as TCP retransmits them, and flow once it heals);
 * - `hold()` keeps what clients send until `release()` (a latency spike: the commands arrive late, all at once).
 */
export interface RedisRelay {
  /** The Redis URL to give the gateway: the test Redis's, through the relay. */
  readonly url: string;
  readonly port: number;
  cut(): void;
  open(): void;
  blackhole(on: boolean): void;
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

/** Starts a relay to `redisUrl`, passing connections at once unless `open` is false (then from `open()` on). */
export async function startRedisRelay(redisUrl: string, options: { readonly open?: boolean } = {}): Promise<RedisRelay> {
  const target = new URL(redisUrl);
  let up = options.open ?? true;
  let holed = false;
  let held: (() => void)[] | undefined;
  const sockets = new Set<Socket>();
  const pairs = new Set<readonly [Socket, Socket]>();
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  };
  const server = createServer((client) => {
    track(client);
    if (!up) {
      client.destroy();
      return;
    }
    const redis = connect(Number(target.port || 6379), target.hostname);
    track(redis);
    const pair = [client, redis] as const;
    pairs.add(pair);
    client.on('data', (chunk: Buffer) => {
      if (held !== undefined) held.push(() => redis.write(chunk));
      else redis.write(chunk);
    });
    redis.pipe(client);
    client.on('close', () => {
      pairs.delete(pair);
      redis.destroy();
    });
    redis.on('close', () => client.destroy());
    if (holed) for (const socket of pair) socket.pause();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the relay has no address');
  const url = new URL(redisUrl);
  url.hostname = '127.0.0.1';
  url.port = String(address.port);
  return {
    url: url.toString(),
    port: address.port,
    cut() {
      up = false;
      for (const socket of sockets) socket.destroy();
    },
    open() {
      up = true;
    },
    blackhole(on) {
      holed = on;
      for (const pair of pairs) {
        for (const socket of pair) {
          if (on) socket.pause();
          else socket.resume();
        }
      }
    },
    hold() {
      held = [];
    },
    release() {
      const waiting = held ?? [];
      held = undefined;
      for (const write of waiting) write();
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
