import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createRedisClient, pingRedis, type Redis } from '@portcullis/data/redis';
import { createLogger } from '@portcullis/shared/util-logger';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProbeServer } from './probe-server';

/**
 * A Redis that refuses the credentials REDIS_URL carries (the app's ACL user switched off in an incident, a password
 * rotated on the server first): ioredis fails every queued command with the HELLO/AUTH error, which carries the command
 * and its arguments, password included. The readiness probe logs the failure; the log line must not hold the password
 * (found by review: pino's error serializer copied the command in).
 */
const PASSWORD = 'redis-pw-7f3a9c1e5b2d';
const USER = 'portcullis_app';

let redisServer: ChildProcess;
let port: number;

async function freePort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: free } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return free;
}

beforeAll(async () => {
  port = await freePort();
  // A Redis of our own on loopback: the app's user exists with this password, but is switched off.
  redisServer = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--user', USER, 'off', `>${PASSWORD}`, '~*', '&*', '+@all'], { stdio: 'ignore' });
  const deadline = Date.now() + 5_000;
  for (;;) {
    const probe = createRedisClient({ url: `redis://127.0.0.1:${port}`, connectionName: 'readiness-setup', maxRetriesPerRequest: 0 });
    try {
      await probe.ping();
      probe.disconnect();
      break;
    } catch {
      probe.disconnect();
      if (Date.now() > deadline) throw new Error('redis-server did not start');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}, 20_000);

afterAll(() => {
  redisServer?.kill('SIGKILL');
});

describe('readiness with a Redis that refuses the credentials in REDIS_URL', () => {
  it('logs the failure without the password', async () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const logger = createLogger({ service: 'readiness-spec', level: 'info', destination });
    const client: Redis = createRedisClient({ url: `redis://${USER}:${PASSWORD}@127.0.0.1:${port}/0`, connectionName: 'readiness-spec', maxRetriesPerRequest: 1, commandTimeoutMs: 1_500 });
    const probe = await startProbeServer({ host: '127.0.0.1', port: 0, logger, checks: [{ name: 'redis', check: () => pingRedis(client) }] });
    try {
      const { port: probePort } = probe.address() as AddressInfo;
      const answer = await fetch(`http://127.0.0.1:${probePort}/readyz`);
      expect(answer.status).toBe(503);
      const body = await answer.text();
      expect(body).not.toContain(PASSWORD);
      const logged = lines.join('');
      expect(logged).toContain('readiness check failed');
      expect(logged).not.toContain(PASSWORD);
    } finally {
      client.disconnect();
      probe.closeAllConnections();
      await new Promise((resolve) => probe.close(resolve));
    }
  }, 20_000);
});
