/**
 * One upstream whose host name never resolves does not hold up the same tenant's healthy upstreams: their lookups go
 * beside its stuck one (STUCK_LOOKUP_MS). A review found a healthy upstream's connect timing out behind it (the tenant's
 * one lookup slot held until the resolver gave up), and the timeout counted against the healthy upstream's circuit.
 * The resolver is stood in for: nameservers that never answer cannot be run here.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { UpstreamConnector } from '@portcullis/gateway/mcp';
import { identity, rawServer, upstreamConfig, type RawServer } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

// Names under .hanging.test are never answered by the resolver (nameservers that never reply: getaddrinfo holds its
// thread for its whole retry schedule); names under .fine.test resolve to 127.0.0.1 at once.
vi.mock('node:dns', async (importOriginal) => {
  const dns = await importOriginal<typeof import('node:dns')>();
  const lookup = (hostname: string, options: object, callback: (error: NodeJS.ErrnoException | null, addresses: unknown) => void) => {
    if (hostname.endsWith('.hanging.test')) return; // never answers
    if (hostname.endsWith('.fine.test')) return void setImmediate(() => callback(null, [{ address: '127.0.0.1', family: 4 }]));
    return dns.lookup(hostname, options, callback);
  };
  return { ...dns, default: { ...dns, lookup }, lookup };
});

describe('one upstream\'s DNS does not hold up the same tenant\'s other upstreams', () => {
  const servers: RawServer[] = [];
  const connectors: UpstreamConnector[] = [];
  afterEach(async () => {
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
    await Promise.allSettled(servers.splice(0).map((s) => s.close()));
  });

  it('connects a healthy upstream while another upstream of the tenant has a host name that never resolves', async () => {
    const server = await rawServer((req, res) => {
      if (req.method !== 'POST') return void res.writeHead(405).end();
      let text = '';
      req.on('data', (chunk: Buffer) => (text += chunk.toString()));
      req.on('end', () => {
        const message = JSON.parse(text) as { id?: number; method?: string };
        if (message.id === undefined) return void res.writeHead(202).end();
        const result = message.method === 'initialize' ? { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'ok', version: '1' } } : { tools: [] };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
      });
    });
    servers.push(server);
    const c = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true });
    connectors.push(c);
    // Same tenant (upstreamConfig's default), two upstreams: A's name never resolves, B is healthy.
    const dead = upstreamConfig('streamable_http', { url: `http://api.hanging.test:${server.port}/mcp`, connectTimeoutMs: 5_000 });
    const healthy = upstreamConfig('streamable_http', { url: `http://api.fine.test:${server.port}/mcp`, connectTimeoutMs: 5_000 });
    const deadConnect = c.connect(dead, identity).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const startedAt = Date.now();
    // Before: B's lookup waited for the tenant's one lookup slot, held by A's for as long as the resolver took, and B's
    // handshake timed out although B answers at once.
    const session = await c.connect(healthy, identity);
    // About STUCK_LOOKUP_MS (a generous bound: before, it never connected).
    expect(Date.now() - startedAt).toBeLessThan(3_000);
    await expect(session.request('tools/list', undefined)).resolves.toEqual({ tools: [] });
    void deadConnect;
  });
});
