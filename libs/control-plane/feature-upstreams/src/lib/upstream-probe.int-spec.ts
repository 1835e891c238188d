import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ListToolsRequestSchema, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { createServer, type Server as HttpServer } from 'node:http';
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

describe('probeUpstream headers', () => {
  it('sends configured headers but never one the connection owns, such as Host or Proxy-* (a row stored before they were refused)', async () => {
    advertised = [tool('echo')];
    received.length = 0;
    await probe({ Host: 'admin.internal', 'X-Tenant': 'acme', 'Proxy-Authorization': 'Basic eA==' });
    expect(received.length).toBeGreaterThan(0);
    for (const request of received) expect(request).toEqual({ host: new URL(url).host, tenant: 'acme', proxy: undefined });
  });
});
