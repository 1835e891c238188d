import { lookup } from 'node:dns';
import { afterEach, describe, expect, it } from 'vitest';
import { rawServer, type RawServer } from '../../test-fixtures/upstream-test-kit';
import { HttpPool } from './http-pool';

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
    const http = new HttpPool({ maxSocketsPerOrigin: 4, lookup, idlePoolMs: 60_000 });
    pools.push(http);
    const target = http.target(new URL(`${server.url}/mcp`), 'tenant-a');
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
    // Another tenant to the same origin has a pool of its own.
    await (await http.target(new URL(`${server.url}/mcp`), 'tenant-b').pool.request({ method: 'GET', path: '/fast' })).body.text();
    expect(http.poolCount).toBe(2);
  });
});
