import { lookup } from 'node:dns';
import { afterEach, describe, expect, it } from 'vitest';
import { rawServer, type RawServer } from '../../test-fixtures/upstream-test-kit';
import type { LookupFunction } from 'node:net';
import { HttpPool, openStream } from './http-pool';

describe('HttpPool', () => {
  const servers: RawServer[] = [];
  const pools: HttpPool[] = [];
  afterEach(async () => {
    for (const pool of pools.splice(0)) pool.destroy();
    await Promise.allSettled(servers.splice(0).map((server) => server.close()));
  });

  it('closes pools no request used for a sweep, never one with a request under way, and opens a new one on demand', async () => {
    let hold: (() => void) | undefined;
    const server = await rawServer((req, res) => {
      if (req.url === '/slow') hold = () => res.end('slow');
      else res.end('ok');
    });
    servers.push(server);
    const http = new HttpPool({ maxSocketsPerOrigin: 4, lookupFor: () => lookup, idlePoolMs: 60_000 });
    pools.push(http);
    const target = http.target(new URL(`${server.url}/mcp`), 'tenant-a', 'upstream-1');
    const get = async (path: string) => (await (await target.pool.request({ method: 'GET', path })).body.text());
    expect(await get('/fast')).toBe('ok');
    expect(http.poolCount).toBe(1);
    http.sweep(); // used since the last sweep: kept
    expect(http.poolCount).toBe(1);
    const slow = get('/slow');
    await new Promise((resolve) => setTimeout(resolve, 50));
    http.sweep();
    http.sweep(); // unused for two sweeps, but a request is under way: kept
    expect(http.poolCount).toBe(1);
    hold?.();
    expect(await slow).toBe('slow');
    http.sweep();
    expect(http.poolCount).toBe(0);
    // The session that held the target comes back: a new pool serves it.
    expect(await get('/fast')).toBe('ok');
    expect(http.poolCount).toBe(1);
    // Another tenant to the same origin has a pool of its own, and so has another upstream of the tenant there.
    await (await http.target(new URL(`${server.url}/mcp`), 'tenant-b', 'upstream-2').pool.request({ method: 'GET', path: '/fast' })).body.text();
    expect(http.poolCount).toBe(2);
    await (await http.target(new URL(`${server.url}/other/mcp`), 'tenant-a', 'upstream-3').pool.request({ method: 'GET', path: '/fast' })).body.text();
    expect(http.poolCount).toBe(3);
    // The same upstream again (another session of it) shares its pool.
    await (await http.target(new URL(`${server.url}/mcp`), 'tenant-a', 'upstream-1').pool.request({ method: 'GET', path: '/fast' })).body.text();
    expect(http.poolCount).toBe(3);
  });

  it('resolves each tenant\'s sockets, pooled and streams, through that tenant\'s lookup, and keeps a pool whose stream is open', async () => {
    const server = await rawServer((req, res) => {
      if (req.method === 'GET') res.writeHead(200, { 'content-type': 'text/event-stream' }).write(': open\n\n');
      else res.end('ok');
    });
    servers.push(server);
    const asked: string[] = [];
    // Every name is the test server: what matters is whose lookup each new socket went through.
    const lookupFor = (tenantId: string): LookupFunction =>
      ((hostname: string, options: { all?: boolean }, callback: (...answer: unknown[]) => void) => {
        asked.push(`${tenantId} ${hostname}`);
        if (options.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
        else callback(null, '127.0.0.1', 4);
      }) as unknown as LookupFunction;
    const http = new HttpPool({ maxSocketsPerOrigin: 4, lookupFor, idlePoolMs: 60_000 });
    pools.push(http);
    const url = new URL(`http://upstream.test:${server.port}/mcp`);
    const a = http.target(url, 'tenant-a', 'upstream-1');
    await (await a.pool.request({ method: 'POST', path: '/mcp', body: '{}' })).body.text();
    const b = http.target(url, 'tenant-b', 'upstream-2');
    const opened = new Promise<void>((resolve, reject) => openStream(b, {}, () => resolve(), reject));
    await opened;
    expect(asked).toEqual(['tenant-a upstream.test', 'tenant-b upstream.test']);
    http.sweep();
    http.sweep();
    // Tenant a's pool had nothing under way: closed. Tenant b's stream is still open: its entry stays.
    expect(http.poolCount).toBe(1);
  });
});
