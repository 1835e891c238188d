import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ListToolsRequestSchema, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { createServer, type Server as HttpServer, type ServerResponse } from 'node:http';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { definitionHash, MAX_INSTRUCTIONS_CHARS } from '@portcullis/contracts/tool-pins';
import { jsonLinesServer, waitFor } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGuardedLookups, type AddressResolver } from '@portcullis/shared/util-net-guard';
import { CONTROL_PLANE_STDIO_HOST, StdioUserIds } from '@portcullis/shared/util-process-user';
import { probeUpstream, ProbeFailure } from './upstream-probe';

// The probe against a real MCP server on 127.0.0.1 (stateless Streamable HTTP) that advertises what each test sets.
let advertised: Tool[] = [];
/** The instructions its initialize answer carries. */
let instructions: string | undefined;
/** Headers of the requests the server received. */
const received: { host?: string; tenant?: string; proxy?: string }[] = [];
let http: HttpServer;
let url: string;

beforeAll(async () => {
  http = createServer((req, res) => {
    received.push({ host: req.headers.host, tenant: req.headers['x-tenant'] as string | undefined, proxy: req.headers['proxy-authorization'] });
    const server = new Server({ name: 'probe-target', version: '1.0.0' }, { capabilities: { tools: {} }, ...(instructions === undefined ? {} : { instructions }) });
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

  it('stores the instructions as the gateway relays them (cut to the same length), as one definition', async () => {
    advertised = [tool('echo')];
    instructions = `Call echo sparingly. ${'x'.repeat(MAX_INSTRUCTIONS_CHARS)}`;
    try {
      const stored = (await probe()).items.find((item) => item.kind === 'instructions');
      const relayed = `${instructions.slice(0, MAX_INSTRUCTIONS_CHARS)}…`;
      expect(stored).toEqual({ kind: 'instructions', name: 'instructions', definition: { instructions: relayed }, hash: definitionHash('instructions', { instructions: relayed }) });
      instructions = 'Call echo sparingly.';
      expect((await probe()).items.filter((item) => item.kind === 'instructions').map((item) => item.definition)).toEqual([{ instructions: 'Call echo sparingly.' }]);
      instructions = 'Call echo\u0000 sparingly.';
      expect(await reasonOf(probe())).toBe('unstorable');
    } finally {
      instructions = undefined;
    }
    expect((await probe()).items.map((item) => item.kind)).toEqual(['tool']);
  });

  it('stores cut instructions with no part of a configured value the cut split, as the gateway shows them (found by re-review)', async () => {
    advertised = [tool('echo')];
    const key = 'key-Zq8VbN3xLmP0rT5wYc7KdF2hJ9s';
    // The cut keeps the key's first 24 characters.
    instructions = `${'x'.repeat(MAX_INSTRUCTIONS_CHARS - 24)}${key} is the key you were sent.`;
    try {
      const stored = (await probe({ 'x-api-key': key })).items.find((item) => item.kind === 'instructions')?.definition['instructions'] as string;
      expect(stored.endsWith('[redacted]…')).toBe(true);
      expect(stored).not.toContain(key.slice(0, 8));
    } finally {
      instructions = undefined;
    }
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

  it('ends the test when the server sends pings and never answers the POSTs of their answers, on a bounded number of sockets (found by re-review)', async () => {
    let open = 0;
    let mostOpen = 0;
    let heldAnswers = 0;
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        if (req.method !== 'POST') return void res.writeHead(405).end();
        const message = JSON.parse(body) as { id?: number; method?: string; params?: { protocolVersion?: string } };
        if (message.method === 'initialize') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { protocolVersion: message.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'pinger', version: '1' } } }));
        } else if (message.method === 'tools/list') {
          // 200 pings on the listing's stream, and never its answer.
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(Array.from({ length: 200 }, (_, i) => `data: {"jsonrpc":"2.0","id":${i + 1},"method":"ping"}\n\n`).join(''));
        } else if (message.method === undefined) {
          heldAnswers += 1; // the client's answer to a ping: held, never answered
        } else {
          res.writeHead(202).end();
        }
      });
    });
    server.on('connection', (socket) => {
      mostOpen = Math.max(mostOpen, ++open);
      socket.on('close', () => (open -= 1));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const started = Date.now();
      const failure = await probeAt(`http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`).then(() => undefined, (error: unknown) => error);
      expect(failure).toMatchObject({ reason: 'not_mcp', detail: 'requests_unanswered' });
      expect(Date.now() - started).toBeLessThan(8_000);
      expect(heldAnswers).toBeLessThanOrEqual(32);
      // The held answers, the listing's stream and the session's few others.
      expect(mostOpen).toBeLessThanOrEqual(40);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 20_000);

  /** A server listing `page` of its tools on an event stream it leaves open after the answer (MCP: it SHOULD close it). */
  function lingering(page: (n: number) => { tools: unknown[]; nextCursor?: string }) {
    return createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        if (req.method !== 'POST') return void res.writeHead(405).end();
        const message = JSON.parse(body) as { id?: number; method?: string; params?: { protocolVersion?: string; cursor?: string } };
        if (message.method === 'initialize') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { protocolVersion: message.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'lingering', version: '1' } } }));
        } else if (message.method === 'tools/list') {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result: page(Number(message.params?.cursor ?? '0')) })}\n\n`);
        } else {
          res.writeHead(202).end();
        }
      });
    });
  }

  it('lists every page of a server that leaves each answered stream open (found by re-review of a socket cap)', async () => {
    const server = lingering((n) => ({ tools: [{ name: `t${n}`, inputSchema: { type: 'object' } }], ...(n < 11 ? { nextCursor: String(n + 1) } : {}) }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const result = await probeAt(`http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`);
      expect(result.items.map((item) => item.name)).toHaveLength(12);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 20_000);

  it('ends the test of a server handing out empty pages without end, at its hundredth page', async () => {
    const server = lingering((n) => ({ tools: [], nextCursor: String(n + 1) }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const failure = await probeAt(`http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`).then(() => undefined, (error: unknown) => error);
      expect(failure).toMatchObject({ reason: 'too_large', detail: 'tool pages' });
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 20_000);

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

  it('bounds an error answer labelled an event stream as a whole: the SDK reads it whole (found by re-review)', async () => {
    for (const status of [500, 405]) {
      let written = 0;
      let delivered = false;
      const target = await serving((res) => {
        res.writeHead(status, { 'content-type': 'text/event-stream' });
        // 64 MiB of short "events", each under the bound, against a 16 MiB bound on an answer.
        const chunk = `${'x'.repeat(1024 * 1024 - 2)}\n\n`;
        const more = () => {
          while (!res.destroyed && written < 64 * 1024 * 1024) {
            written += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', more);
          }
          if (!res.destroyed) res.end(() => (delivered = true));
        };
        more();
      });
      try {
        const reason = await reasonOf(probeAt(target.url));
        // A 500 is reported as the upstream failing; a 405 (no failure of its own) as the answer too large.
        expect({ status, delivered, reason }).toEqual({ status, delivered: false, reason: status === 405 ? 'too_large' : 'unreachable' });
      } finally {
        await target.close();
      }
    }
  }, 40_000);

  it('ends at its deadline when a legacy SSE stream never names its endpoint (it hung for good; found by re-review)', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': hello\n\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const outcome = reasonOf(
        probeUpstream(
          { transport: 'sse', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/sse`, headers: {}, command: null, args: [], env: {} },
          { network: { allowPrivateNetworks: true, allowedHosts: [] }, timeoutMs: 2_000, maxItemsPerKind: 100 },
        ),
      );
      const settled = await Promise.race([outcome, new Promise((resolve) => setTimeout(() => resolve('still pending 8 s after a 2 s deadline'), 8_000))]);
      expect(settled).toBe('timeout');
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 20_000);

  /** A legacy HTTP+SSE server whose tools/list answers `pages` pages of `toolsPerPage` tools, each `descriptionBytes` long. */
  async function legacySseServer(pages: number, toolsPerPage: number, descriptionBytes: number) {
    let stream: ServerResponse | undefined;
    const send = (message: unknown) => stream?.write(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
    const server = createServer((req, res) => {
      if (req.method === 'GET') {
        stream = res;
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('event: endpoint\ndata: /messages\n\n');
        return;
      }
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        res.writeHead(202).end();
        const message = JSON.parse(body) as { id?: number; method: string; params?: { protocolVersion?: string; cursor?: string } };
        if (message.id === undefined) return;
        if (message.method === 'initialize') {
          send({ jsonrpc: '2.0', id: message.id, result: { protocolVersion: message.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'big', version: '1' } } });
        } else if (message.method === 'tools/list') {
          const page = Number(message.params?.cursor ?? '0');
          const tools = Array.from({ length: toolsPerPage }, (_, i) => ({ name: `t${page}_${i}`, description: 'd'.repeat(descriptionBytes), inputSchema: { type: 'object' } }));
          send({ jsonrpc: '2.0', id: message.id, result: { tools, ...(page + 1 < pages ? { nextCursor: String(page + 1) } : {}) } });
        } else send({ jsonrpc: '2.0', id: message.id, result: {} });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/sse`,
      close: async () => {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      },
    };
  }

  it('bounds each answer of a legacy SSE stream, not their running total (9 pages of 2 MiB; found by review)', async () => {
    const upstream = await legacySseServer(9, 10, 200 * 1024);
    try {
      const result = await probeUpstream(
        { transport: 'sse', url: upstream.url, headers: {}, command: null, args: [], env: {} },
        { network: { allowPrivateNetworks: true, allowedHosts: [] }, timeoutMs: 20_000, maxItemsPerKind: 5_000 },
      );
      expect(result.items).toHaveLength(90);
    } finally {
      await upstream.close();
    }
  }, 30_000);
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

/**
 * A stdio MCP server written by hand (no file to read, so any user can run it): its tools name its environment
 * (`env_<NAME>`), its user id and a grandchild it started (and, with DAEMON set, a daemonised helper). With FLOOD set it answers tools/list with a line that
 * never ends.
 */
const STDIO_SERVER = jsonLinesServer(
  `
    if (message.method === 'initialize') {
      send({ jsonrpc: '2.0', id: message.id, result: { protocolVersion: message.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'env', version: '1' } } });
    } else if (message.method === 'tools/list') {
      if (process.env.PING_FLOOD) {
        // Stops reading its stdin, and writes pings as fast as the pipe takes them.
        process.stdin.pause();
        let id = 1;
        const block = () => { let text = ''; for (let i = 0; i < 2000; i++) text += '{"jsonrpc":"2.0","id":' + (id++) + ',"method":"ping"}\\n'; return text; };
        const more = () => { while (process.stdout.write(block())); process.stdout.once('drain', more); };
        more();
        continue;
      }
      if (process.env.FLOOD) {
        const chunk = 'x'.repeat(1024 * 1024);
        const more = () => { while (process.stdout.write(chunk)); process.stdout.once('drain', more); };
        more();
        continue;
      }
      const names = [...Object.keys(process.env).map((name) => 'env_' + name), 'uid_' + process.getuid(), 'grandchild_' + child.pid, ...(daemon ? ['daemon_' + daemon.pid] : [])];
      send({ jsonrpc: '2.0', id: message.id, result: { tools: names.map((name) => ({ name, inputSchema: { type: 'object' } })) } });
    }`,
  `
const { spawn } = require('node:child_process');
const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
// With DAEMON set, a helper of its own session (setsid), out of the server's process group.
const daemon = process.env.DAEMON ? spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', detached: true }) : undefined;
daemon?.unref();`,
);

describe('probeUpstream over stdio', () => {
  const probeStdio = (env: Record<string, string>, stdioRunAs?: { uid: number; gid: number }, stdioUserIds?: StdioUserIds) =>
    probeUpstream(
      { transport: 'stdio', url: null, headers: {}, command: process.execPath, args: ['-e', STDIO_SERVER], env },
      { network: { allowPrivateNetworks: false, allowedHosts: [] }, timeoutMs: 10_000, maxItemsPerKind: 100, stdioRunAs, stdioUserIds },
    );
  /** Running, and not a zombie waiting to be reaped. */
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      return false;
    }
  };
  const numbered = (names: string[], prefix: string) => Number(names.find((name) => name.startsWith(prefix))?.slice(prefix.length));

  it('gives the server its configured environment only, and stops what it started along with it', async () => {
    const names = (await probeStdio({ API_TOKEN: 'configured' })).items.map((item) => item.name);
    // Not the control plane's PATH, HOME, USER or anything else of its environment.
    expect(names.filter((name) => name.startsWith('env_'))).toEqual(['env_API_TOKEN']);
    const grandchild = numbered(names, 'grandchild_');
    expect(grandchild).toBeGreaterThan(0);
    await waitFor(() => !alive(grandchild), { description: 'the server\'s own child stopped with it' });
  });

  it('refuses a server that writes a line without end, as too large', async () => {
    expect(await reasonOf(probeStdio({ FLOOD: '1' }))).toBe('too_large');
  }, 20_000);

  it('ends the test when the server stops reading and sends pings: the answers waiting for it stay bounded (found by a review)', async () => {
    // It stops reading its stdin once the listing starts, then writes pings as fast as the pipe takes them: each answer
    // the client writes back waited in the control plane's memory (894 MiB within 6 s before the bound).
    const before = process.memoryUsage();
    const used = (now: NodeJS.MemoryUsage) => now.heapUsed + now.external + now.arrayBuffers - (before.heapUsed + before.external + before.arrayBuffers);
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, used(process.memoryUsage()))), 50);
    const started = Date.now();
    const reason = await reasonOf(probeStdio({ PING_FLOOD: '1' }));
    clearInterval(sampler);
    expect(reason).toBe('not_mcp');
    expect(Date.now() - started).toBeLessThan(6_000);
    expect(peak).toBeLessThan(96 * 1024 * 1024);
  }, 30_000);

  it.skipIf(process.getuid?.() !== 0)('runs the server as CONTROL_PLANE_STDIO_RUN_AS (as root here)', async () => {
    const names = (await probeStdio({}, { uid: 65534, gid: 65534 })).items.map((item) => item.name);
    expect(names).toContain('uid_65534');
  });

  // With one user for every test (CONTROL_PLANE_STDIO_RUN_AS), a helper a server daemonised out of its process group
  // outlived the test, able to read the environments of later tests' servers, other tenants' credentials included.
  it.skipIf(process.getuid?.() !== 0)(
    'runs each server as an id of CONTROL_PLANE_STDIO_UID_RANGE, and kills what it daemonised when the test ends (as root here)',
    async () => {
      const homes = mkdtempSync(path.join(tmpdir(), 'probe-uids-'));
      chmodSync(homes, 0o711);
      const userIds = new StdioUserIds(230_000, 230_001, homes, CONTROL_PLANE_STDIO_HOST);
      try {
        const first = (await probeStdio({ DAEMON: '1' }, undefined, userIds)).items.map((item) => item.name);
        expect(first).toContain('uid_230000');
        // A home of its own, since the configuration names none.
        expect(first).toEqual(expect.arrayContaining(['env_HOME', 'env_TMPDIR']));
        const daemon = numbered(first, 'daemon_');
        expect(daemon).toBeGreaterThan(0);
        await waitFor(() => !alive(daemon), { timeoutMs: 5_000, description: 'the daemonised helper killed with its id' });
        // The id is given back once cleared; the next test runs as the next id of the range.
        await waitFor(() => userIds.inUse === 0, { timeoutMs: 5_000, description: 'the id given back' });
        expect(readdirSync(userIds.homes)).toEqual([]);
        const second = (await probeStdio({}, undefined, userIds)).items.map((item) => item.name);
        expect(second).toContain('uid_230001');
      } finally {
        await userIds.release();
        rmSync(homes, { recursive: true, force: true });
      }
    },
    20_000,
  );

  it.skipIf(process.getuid?.() !== 0)('fails a test as unreachable when every id of the range is in use', async () => {
    const homes = mkdtempSync(path.join(tmpdir(), 'probe-uids-'));
    chmodSync(homes, 0o711);
    const userIds = new StdioUserIds(230_010, 230_010, homes, CONTROL_PLANE_STDIO_HOST);
    try {
      const held = userIds.take();
      expect(held).toEqual({ uid: 230_010, gid: 230_010 });
      const failure = await probeStdio({}, undefined, userIds).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ProbeFailure);
      expect(failure).toMatchObject({ reason: 'unreachable', detail: 'ENOUSERID' });
    } finally {
      await userIds.release();
      rmSync(homes, { recursive: true, force: true });
    }
  });
});

describe('probeUpstream host-name lookups', () => {
  it('resolves through the lookup it is given: a tenant\'s tests share its lookups (one at a time until it is stuck, two at most), and a name that never resolves is a timeout', async () => {
    // A resolver whose nameserver never answers: every name asked stays in flight.
    const asked: string[] = [];
    const stuck: AddressResolver = (hostname) => void asked.push(hostname);
    const lookups = createGuardedLookups({ allowPrivateNetworks: false, allowedHosts: [] }, stuck);
    const test = (host: string) =>
      reasonOf(
        probeUpstream(
          { transport: 'streamable_http', url: `http://${host}/mcp`, headers: {}, command: null, args: [], env: {} },
          { network: { allowPrivateNetworks: false, allowedHosts: [] }, timeoutMs: 400, maxItemsPerKind: 100, lookup: lookups('tenant-a') },
        ),
      );
    const reasons = await Promise.all([test('never-1.example'), test('never-2.example'), test('never-3.example')]);
    // Three tests at once, one name asked: the tenant's others waited their turn (one thread, not three).
    expect(asked).toEqual(['never-1.example']);
    expect(reasons).toEqual(['timeout', 'timeout', 'timeout']);
    // Once that lookup is stuck (STUCK_LOOKUP_MS), the next name goes beside it, and no more: two threads at most.
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(asked).toEqual(['never-1.example', 'never-2.example']);
    // Another tenant's test still gets a lookup of its own at once.
    const other = probeUpstream(
      { transport: 'streamable_http', url: 'http://api.other.example/mcp', headers: {}, command: null, args: [], env: {} },
      { network: { allowPrivateNetworks: false, allowedHosts: [] }, timeoutMs: 200, maxItemsPerKind: 100, lookup: lookups('tenant-b') },
    );
    await reasonOf(other);
    expect(asked).toEqual(['never-1.example', 'never-2.example', 'api.other.example']);
  });
});
