/**
 * The control plane with its Postgres out of reach, through a TCP proxy of this spec's (the run's Postgres itself is
 * not touched): connections refused, closed as soon as they open, cut under a request, and a partition (open, no byte
 * coming back). Each request gets an answer, 503 and never 500 nor a hang (a partition: within the statement timeout),
 * and the API serves again once the database is back, without a restart; the URL's password is in no log line.
 */
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { testContext, waitFor } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlaneHarness } from './testing/control-plane-harness';

interface Proxy {
  port: number;
  /** Stop listening (connections refused) / listen again on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  mode: 'forward' | 'refuse' | 'blackhole';
  breakAll(): void;
  close(): Promise<void>;
}

async function startProxy(targetPort: number): Promise<Proxy> {
  const sockets = new Set<Socket>();
  const state: { mode: Proxy['mode'] } = { mode: 'forward' };
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    if (state.mode === 'refuse') return void client.destroy();
    if (state.mode === 'blackhole') return; // accepted, never answered: a partition
    const upstream = tcpConnect(targetPort, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => undefined);
    client.on('data', (chunk) => {
      if (state.mode === 'forward') upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (state.mode === 'forward') client.write(chunk);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  const port = address.port;
  return {
    port,
    stop: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
    start: () => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve)),
    get mode() {
      return state.mode;
    },
    set mode(value) {
      state.mode = value;
    },
    breakAll: () => {
      for (const socket of sockets) socket.destroy();
    },
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const SECRET = 'Zz-database-password-Zz';
let proxy: Proxy;
let cp: ControlPlaneHarness;

beforeAll(async () => {
  const ctx = testContext();
  const url = new URL(ctx.databaseUrl);
  proxy = await startProxy(Number(url.port || '5432'));
  url.hostname = '127.0.0.1';
  url.port = String(proxy.port);
  // A password in the URL (trust auth ignores it): it must never show up in an answer or a log line.
  url.password = SECRET;
  cp = await startControlPlane({ DATABASE_URL: url.toString() });
}, 60_000);

afterAll(async () => {
  proxy.mode = 'forward';
  await cp?.close().catch(() => undefined);
  await proxy?.close();
});

/** The request's answer, or 'no answer' after `ms`. */
async function within(ms: number, request: Promise<{ status: number; headers: Record<string, unknown>; text: string }>) {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'no answer'>((resolve) => {
    timer = setTimeout(() => resolve('no answer'), ms);
  });
  try {
    return await Promise.race([request, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** The API serves again (a request or two may still meet a connection the pool had before the outage). */
const servesAgain = (token: string) =>
  waitFor(async () => ((await cp.request('GET', '/api/v1/tenants', { token })).status === 200 ? true : undefined), {
    timeoutMs: 20_000,
    intervalMs: 200,
    description: 'the API serving again without a restart',
  });

describe('control plane, Postgres out of reach', () => {
  it('answers 503 while connections are refused (nothing listens), and serves again once Postgres is back', async () => {
    const admin = await cp.user({ platformAdmin: true });
    expect((await cp.request('GET', '/api/v1/tenants', { token: admin.token })).status).toBe(200);
    await proxy.stop();
    let down: Awaited<ReturnType<typeof within>>;
    try {
      down = await within(20_000, cp.request('GET', '/api/v1/tenants', { token: admin.token }));
    } finally {
      await proxy.start();
    }
    expect(down === 'no answer' ? down : down.status).toBe(503);
    await servesAgain(admin.token);
  }, 60_000);

  it('answers 503 while Postgres connections are closed as soon as they open (server restarting, LB without backend)', async () => {
    const admin = await cp.user({ platformAdmin: true });
    expect((await cp.request('GET', '/api/v1/tenants', { token: admin.token })).status).toBe(200);
    proxy.mode = 'refuse';
    proxy.breakAll();
    const down = await within(20_000, cp.request('GET', '/api/v1/tenants', { token: admin.token })).finally(() => {
      proxy.mode = 'forward';
    });
    expect(down === 'no answer' ? down : down.status).toBe(503);
    await servesAgain(admin.token);
    expect(cp.logs.join('')).not.toContain(SECRET);
  }, 60_000);

  it('answers 200 or 503, never 500, when the connection is cut while a request is using it', async () => {
    const admin = await cp.user({ platformAdmin: true });
    expect((await cp.request('GET', '/api/v1/tenants', { token: admin.token })).status).toBe(200);
    const statuses: number[] = [];
    for (let delay = 0; delay < 12; delay += 1) {
      const pending = cp.request('GET', '/api/v1/tenants', { token: admin.token });
      await new Promise((resolve) => setTimeout(resolve, delay));
      proxy.breakAll();
      statuses.push((await pending).status);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(statuses.filter((status) => status !== 200 && status !== 503)).toEqual([]);
    await servesAgain(admin.token);
  }, 60_000);

  it('answers (503) within a bounded time when Postgres stops answering (a partition), not never', async () => {
    const admin = await cp.user({ platformAdmin: true });
    const tenant = await cp.tenant();
    expect((await cp.request('GET', '/api/v1/tenants', { token: admin.token })).status).toBe(200);
    proxy.mode = 'blackhole';
    const started = Date.now();
    const [list, one] = await Promise.all([
      within(40_000, cp.request('GET', '/api/v1/tenants', { token: admin.token })),
      within(40_000, cp.request('GET', `/api/v1/tenants/${tenant.id}`, { token: admin.token })),
    ]).finally(() => {
      proxy.mode = 'forward';
      proxy.breakAll();
    });
    const elapsed = Date.now() - started;
    expect({ list: list === 'no answer' ? list : list.status, one: one === 'no answer' ? one : one.status }).toEqual({ list: 503, one: 503 });
    expect(elapsed).toBeLessThan(40_000);
    await servesAgain(admin.token);
    expect(cp.logs.join('')).not.toContain(SECRET);
  }, 120_000);
});
