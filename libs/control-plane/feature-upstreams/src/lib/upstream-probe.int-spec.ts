import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ListToolsRequestSchema, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { createServer, type Server as HttpServer, type ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeUpstream, ProbeFailure } from './upstream-probe';

// The probe against a real MCP server on 127.0.0.1 (stateless Streamable HTTP) that advertises what each test sets.
let advertised: Tool[] = [];
/** Headers of the requests the server received. */
const received: { host?: string; tenant?: string; proxy?: string }[] = [];
let http: HttpServer;
let url: string;

beforeAll(async () => {
  http = createServer((req, res) => {
    received.push({ host: req.headers.host, tenant: req.headers['x-tenant'] as string | undefined, proxy: req.headers['proxy-authorization'] });
    const server = new Server({ name: 'probe-target', version: '1.0.0' }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: advertised }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => void transport.close().then(() => server.close()));
    void server.connect(transport).then(() => transport.handleRequest(req, res));
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
});
afterAll(async () => {
  http?.closeAllConnections();
  await new Promise((resolve) => http?.close(resolve));
});

const probe = (headers: Record<string, string> = {}) =>
  probeUpstream(
    { transport: 'streamable_http', url, headers, command: null, args: [], env: {} },
    { network: { allowPrivateNetworks: true, allowedHosts: [] }, timeoutMs: 5_000, maxItemsPerKind: 100 },
  );
const reasonOf = (promise: Promise<unknown>) =>
  promise.then(
    () => 'ok',
    (error: unknown) => (error instanceof ProbeFailure ? error.reason : String(error)),
  );
const tool = (name: string, description = 'a tool'): Tool => ({ name, description, inputSchema: { type: 'object' } });

describe('probeUpstream bounds', () => {
  it('stores ordinary definitions', async () => {
    advertised = [tool('echo')];
    expect((await probe()).items.map((item) => item.name)).toEqual(['echo']);
  });

  it('refuses names and definitions too large to store, instead of failing in the database', async () => {
    advertised = [tool('n'.repeat(5_000))];
    expect(await reasonOf(probe())).toBe('too_large');
    advertised = [tool('big', 'd'.repeat(300 * 1024))];
    expect(await reasonOf(probe())).toBe('too_large');
  });

  it('refuses a definition with a NUL character or a lone surrogate (Postgres cannot store them)', async () => {
    advertised = [tool('nul', 'before\u0000after')];
    expect(await reasonOf(probe())).toBe('unstorable');
    // A lone surrogate (JSON "\ud800" from the upstream) neither.
    advertised = [tool('lone', 'before\ud800after')];
    expect(await reasonOf(probe())).toBe('unstorable');
  });
});

describe('probeUpstream answers too large to read', () => {
  /** A server that answers every POST with `answer`, recording the Accept-Encoding it was sent. */
  async function serving(answer: (res: ServerResponse) => void): Promise<{ url: string; encodings: (string | undefined)[]; close: () => Promise<void> }> {
    const encodings: (string | undefined)[] = [];
    const server = createServer((req, res) => {
      encodings.push(req.headers['accept-encoding']);
      req.resume();
      if (req.method === 'POST') answer(res);
      else res.writeHead(405).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
      encodings,
      close: async () => {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      },
    };
  }
  const probeAt = (target: string) =>
    probeUpstream(
      { transport: 'streamable_http', url: target, headers: {}, command: null, args: [], env: {} },
      { network: { allowPrivateNetworks: true, allowedHosts: [] }, timeoutMs: 8_000, maxItemsPerKind: 100 },
    );

  it('stops reading a compressed bomb once it unpacks past the bound (and asks for uncompressed answers)', async () => {
    // 40 KiB on the wire, 40 MiB unpacked, against a 16 MiB bound.
    const bomb = gzipSync(Buffer.alloc(40 * 1024 * 1024, 0x20));
    const target = await serving((res) => res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(bomb));
    try {
      const started = Date.now();
      expect(await reasonOf(probeAt(target.url))).toBe('too_large');
      expect(Date.now() - started).toBeLessThan(8_000);
      expect(target.encodings[0]).toBe('identity');
    } finally {
      await target.close();
    }
  });

  it('stops reading an event stream that never ends its event', async () => {
    const target = await serving((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: ');
      const chunk = 'x'.repeat(1024 * 1024);
      const more = () => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', more);
      };
      more();
    });
    try {
      expect(await reasonOf(probeAt(target.url))).toBe('too_large');
    } finally {
      await target.close();
    }
  });
});

describe('probeUpstream headers', () => {
  it('sends configured headers but never one the connection owns, such as Host or Proxy-* (a row stored before they were refused)', async () => {
    advertised = [tool('echo')];
    received.length = 0;
    await probe({ Host: 'admin.internal', 'X-Tenant': 'acme', 'Proxy-Authorization': 'Basic eA==' });
    expect(received.length).toBeGreaterThan(0);
    for (const request of received) expect(request).toEqual({ host: new URL(url).host, tenant: 'acme', proxy: undefined });
  });
});
