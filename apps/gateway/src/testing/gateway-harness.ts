/**
 * Integration-test harness: the real data plane (snapshot loaders on the system client, Redis sessions,
 * the real upstream connector) on a bare Fastify instance on 127.0.0.1:0, and the built demo upstreams as
 * a child process. Test-only (excluded from the app build).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { generateApiKey, hashApiKey } from '@portcullis/auth/api-keys';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import type { PortcullisPrismaClient, SystemPrismaClient } from '@portcullis/data/db';
import { createUpstreamConnector } from '@portcullis/gateway/upstream';
import { createLogger, type Logger } from '@portcullis/shared/util-logger';
import { sendRouterProblem } from '@portcullis/shared/nest-runtime';
import { createTestTenant, type TestTenant } from '@portcullis/shared/util-testing';
import { gatewayConfigSchema, REDIS_COMMAND_TIMEOUT_MS } from '../config';
import { startDataPlane, type DataPlane } from '../data-plane';
import { ALLOW_ALL, writeActiveSnapshot } from './policy-fixtures';

/** A new agent client of the tenant with an API key (stored hashed, as the control plane stores it). */
export async function createAgentWithKey(db: SystemPrismaClient, tenantId: string, name: string): Promise<{ agentId: string; key: string }> {
  const agent = await db.agentClient.create({ data: { tenantId, name } });
  const key = generateApiKey();
  await db.apiKey.create({ data: { tenantId, name, keyHash: hashApiKey(key), displayPrefix: key.slice(0, 10), agentClientId: agent.id } });
  return { agentId: agent.id, key };
}

/** POSTs a 2025-11-25 initialize with this API key to the tenant's endpoint: the response, its body not read. */
export function postInitialize(gateway: TestGateway, tenantSlug: string, key: string, clientName = 'spec'): Promise<Response> {
  return fetch(`${gateway.url}/t/${tenantSlug}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: clientName, version: '1' } },
    }),
  });
}

/**
 * POSTs one JSON-RPC message (`jsonrpc` added) in a 2025-11-25 session with this API key: the response, its body not
 * read (see `messageOf`).
 */
export function postInSession(gateway: TestGateway, tenantSlug: string, key: string, sessionId: string, message: Record<string, unknown>): Promise<Response> {
  return fetch(`${gateway.url}/t/${tenantSlug}/mcp`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': sessionId,
      'mcp-protocol-version': '2025-11-25',
    },
    body: JSON.stringify({ jsonrpc: '2.0', ...message }),
  });
}

/** The JSON-RPC message a response carries, as JSON or as the first SSE data line ({} for an empty body). */
export async function messageOf(response: Response): Promise<Record<string, unknown>> {
  const text = await response.text();
  const data = text.startsWith('{') ? text : (/^data: (.*)$/m.exec(text)?.[1] ?? '{}');
  return JSON.parse(data) as Record<string, unknown>;
}

/**
 * A new session of this key with its standalone GET stream open (both must succeed): `endedAt()` says when the
 * gateway closed the stream (undefined while open), `close()` ends it from this side.
 */
export async function openStandaloneStream(gateway: TestGateway, tenantSlug: string, key: string): Promise<{ endedAt: () => number | undefined; close: () => void }> {
  const init = await postInitialize(gateway, tenantSlug, key, 'stream-spec');
  await init.text();
  if (init.status !== 200) throw new Error(`initialize answered ${init.status}`);
  return listenInSession(gateway, tenantSlug, key, init.headers.get('mcp-session-id') ?? '');
}

/**
 * The standalone GET stream of session `sessionId` on `gateway` (it must open), as `openStandaloneStream` gives it,
 * and `text()`: what it carried so far.
 */
export async function listenInSession(gateway: TestGateway, tenantSlug: string, key: string, sessionId: string): Promise<{ endedAt: () => number | undefined; close: () => void; text: () => string }> {
  const controller = new AbortController();
  const stream = await fetch(`${gateway.url}/t/${tenantSlug}/mcp`, {
    headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' },
    signal: controller.signal,
  });
  if (stream.status !== 200) throw new Error(`the standalone GET answered ${stream.status}`);
  let endedAt: number | undefined;
  let text = '';
  void (async () => {
    const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    try {
      for (let read = await reader.read(); !read.done; read = await reader.read()) text += decoder.decode(read.value, { stream: true });
    } catch {
      // aborted by the test
    }
    endedAt = Date.now();
  })();
  return { endedAt: () => endedAt, close: () => controller.abort(), text: () => text };
}

/** A request a hand-written upstream was sent (`startJsonUpstream`), and its answers. */
export interface JsonUpstreamRequest {
  readonly message: { readonly id: number | string; readonly method: string; readonly params?: Record<string, unknown> };
  readonly headers: IncomingHttpHeaders;
  /** 200 with this JSON-RPC message (`result` or `error`; `jsonrpc` and `id` added) under the upstream's session id. */
  answer(body: Record<string, unknown>): void;
  /** 200 with this exact text, for JSON that JSON.stringify cannot write (a code of 1e400). */
  answerText(text: string): void;
  /** Another status, with a JSON-RPC error and no session id (a 404 for a session the upstream does not know). */
  refuse(status: number, error: Record<string, unknown>): void;
}

/** An initialize result naming the server `name`, with tools, in the protocol version the gateway asked for. */
export function initializeResult(request: JsonUpstreamRequest, name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { protocolVersion: request.message.params?.['protocolVersion'], capabilities: { tools: {} }, serverInfo: { name, version: '1' }, ...extra };
}

/**
 * A hand-written Streamable HTTP upstream on 127.0.0.1 (a free port) answering with JSON under the session id
 * `sessionId`: DELETE 200, other methods but POST 405, notifications and answers 202; every request goes to
 * `onRequest`, which answers it. `onHttp` is told of each HTTP request first (its method or JSON-RPC method).
 */
export async function startJsonUpstream(options: {
  readonly sessionId: string;
  readonly onRequest: (request: JsonUpstreamRequest) => void;
  readonly onHttp?: (method: string, headers: IncomingHttpHeaders) => void;
}): Promise<{ readonly server: HttpServer; readonly url: string }> {
  const server = createHttpServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => {
      if (req.method !== 'POST') {
        options.onHttp?.(req.method ?? '?', req.headers);
        res.writeHead(req.method === 'DELETE' ? 200 : 405).end();
        return;
      }
      const message = JSON.parse(text) as { id?: number | string; method?: string; params?: Record<string, unknown> };
      options.onHttp?.(message.method ?? 'answer', req.headers);
      if (message.id === undefined || message.method === undefined) {
        res.writeHead(202).end();
        return;
      }
      const { id, method, params } = message;
      const send = (status: number, body: string) =>
        res.writeHead(status, { 'content-type': 'application/json', ...(status === 200 ? { 'mcp-session-id': options.sessionId } : {}) }).end(body);
      options.onRequest({
        message: { id, method, ...(params !== undefined ? { params } : {}) },
        headers: req.headers,
        answer: (body) => send(200, JSON.stringify({ jsonrpc: '2.0', id, ...body })),
        answerText: (body) => send(200, body),
        refuse: (status, error) => send(status, JSON.stringify({ jsonrpc: '2.0', id, error })),
      });
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${port}/mcp` };
}

export const demoDist = path.resolve(__dirname, '../../../../dist/apps/demo-upstreams');

export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export interface DemoUpstreams {
  readonly url: string;
  stop(): Promise<void>;
}

export type DemoTransport = 'streamable_http' | 'stdio' | 'sse';

/** The transport fields of an upstream row that reaches the built demo server `server` over `transport`. */
export function demoUpstreamTarget(
  demo: DemoUpstreams,
  server: string,
  transport: DemoTransport,
): { transport: DemoTransport; url: string } | { transport: DemoTransport; command: string; args: string[] } {
  if (transport === 'streamable_http') return { transport, url: `${demo.url}/${server}/mcp` };
  if (transport === 'sse') return { transport, url: `${demo.url}/${server}/sse` };
  return { transport, command: process.execPath, args: [path.join(demoDist, 'stdio.js'), server] };
}

/**
 * `node dist/apps/demo-upstreams/main.js` on a free port, or on `port` (a restart at the same address: the servers'
 * sessions are gone). Build it with `npx nx build demo-upstreams`.
 */
export async function startDemoUpstreams(options: { readonly port?: number } = {}): Promise<DemoUpstreams> {
  const main = path.join(demoDist, 'main.js');
  if (!existsSync(main)) throw new Error(`${main} is missing: run \`npx nx build demo-upstreams\` first`);
  const port = options.port ?? (await freePort());
  const child: ChildProcess = spawn(process.execPath, [main], {
    env: { PATH: process.env['PATH'] ?? '', NODE_ENV: 'test', LOG_LEVEL: 'warn', DEMO_UPSTREAMS_PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.status < 500) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('demo upstreams did not start');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

/**
 * For specs about streams, not policy: a tenant that allows everything, with the demo kitchen-sink server over
 * Streamable HTTP as its one upstream (prefix `ks`, calls time out after 20 s), and an agent's API key.
 */
export async function kitchenSinkTenant(db: SystemPrismaClient, demo: DemoUpstreams, agentName: string): Promise<{ tenant: TestTenant; key: string }> {
  const tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({
    data: {
      tenantId: tenant.id,
      name: 'kitchen-sink',
      toolPrefix: 'ks',
      transport: 'streamable_http',
      url: `${demo.url}/kitchen-sink/mcp`,
      connectTimeoutMs: 5_000,
      callTimeoutMs: 20_000,
    } as never,
  });
  const { key } = await createAgentWithKey(db, tenant.id, agentName);
  return { tenant, key };
}

/** Records the Last-Event-ID of every GET the gateway receives from now on (the streams agents resumed). */
/**
 * Reads an SSE response until `done(text)` holds, it ends, or `capMs` passes; then drops the connection (the agent
 * gone, unless it ended). Returns the text and whether the response ended by itself.
 */
export async function readSse(res: Response, done: (text: string) => boolean, capMs = 10_000): Promise<{ text: string; ended: boolean }> {
  const reader = res.body?.getReader();
  if (!reader) return { text: '', ended: true };
  const decoder = new TextDecoder();
  let out = '';
  const deadline = Date.now() + capMs;
  while (!done(out)) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    let timer: NodeJS.Timeout | undefined;
    const chunk = await Promise.race([
      reader.read(),
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), left);
      }),
    ]).finally(() => clearTimeout(timer));
    if (chunk === 'timeout') break;
    if (chunk.done) return { text: out, ended: true };
    out += decoder.decode(chunk.value, { stream: true });
  }
  await reader.cancel().catch(() => undefined);
  return { text: out, ended: false };
}

export function resumptionsOn(gateway: TestGateway): string[] {
  const seen: string[] = [];
  gateway.app.server.on('request', (req) => {
    const id = req.headers['last-event-id'];
    if (req.method === 'GET' && typeof id === 'string') seen.push(id);
  });
  return seen;
}

export interface TestGateway {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly dataPlane: DataPlane;
  readonly logs: () => string;
  close(): Promise<void>;
}

export async function startTestGateway(options: {
  readonly systemDb: SystemPrismaClient;
  /** The application-role client (enables approvals of held calls). */
  readonly appDb?: PortcullisPrismaClient;
  readonly redisUrl: string;
  readonly env?: Record<string, string>;
  /** Default: a free port picked when listening. */
  readonly port?: number;
  /**
   * A tool-name separator set past the configuration's guard, which refuses `_` for deployments (a prefix saved with
   * an inner `_` would be dropped). The conformance suite's fixed names need it; the data plane takes any valid one.
   */
  readonly toolSeparator?: string;
  /** The upstreams' circuit breaker; default: one that practically never opens (specs about other things). */
  readonly breaker?: { readonly failureThreshold: number; readonly cooldownMs: number };
}): Promise<TestGateway> {
  const parsed = gatewayConfigSchema.parse({
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    DATABASE_URL: 'postgresql://unused@127.0.0.1/unused',
    REDIS_URL: options.redisUrl,
    GATEWAY_BODY_LIMIT_BYTES: String(64 * 1024),
    GATEWAY_LIST_TIMEOUT_MS: '2000',
    GATEWAY_UPSTREAM_ALLOW_PRIVATE: 'true',
    // No audit jobs piling up in Redis for nobody: tests of the audit path turn it on with their own QUEUE_PREFIX.
    GATEWAY_AUDIT_ENABLED: 'false',
    ...options.env,
  });
  const config =
    options.toolSeparator === undefined ? parsed : { ...parsed, mcp: { ...parsed.mcp, toolSeparator: options.toolSeparator } };
  let text = '';
  const logger: Logger = createLogger({
    service: 'gateway-int',
    level: 'info',
    destination: {
      write: (chunk: string) => {
        text += chunk;
      },
    },
  });
  const redis: Redis = createRedisClient({ url: options.redisUrl, connectionName: 'gateway-int', commandTimeoutMs: REDIS_COMMAND_TIMEOUT_MS });
  const subscriber: Redis = createRedisClient({ url: options.redisUrl, connectionName: 'gateway-int-sub' });
  // What the router refuses before any route is answered as createHttpApp answers it in the deployed gateway.
  const app = Fastify({ bodyLimit: config.http.bodyLimitBytes, frameworkErrors: (error, request, reply) => void sendRouterProblem(error, request, reply, logger) });
  const dataPlane = await startDataPlane(app, {
    config,
    logger,
    systemDb: options.systemDb,
    appDb: options.appDb ?? null,
    redis,
    subscriber,
    connector: createUpstreamConnector({
      logger,
      maxStdioProcessesPerUpstream: 2,
      stdioIdleMs: 60_000,
      allowPrivateNetworks: true,
      breaker: options.breaker ?? { failureThreshold: 1_000, cooldownMs: 1_000 },
    }),
  });
  await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    app,
    dataPlane,
    logs: () => text,
    close: async () => {
      await dataPlane.close();
      await app.close();
      redis.disconnect();
      subscriber.disconnect();
    },
  };
}

/**
 * A TCP proxy whose target (`http://host:port`) can change and whose connections can all be cut at once: a real
 * network break between the test's client and a gateway, or between a gateway and its database.
 */
export interface BreakableProxy {
  readonly url: string;
  target: string;
  /** Connections the proxy closed for being idle (see `idleTimeoutMs`). */
  readonly idleCuts: number;
  breakAll(): void;
  close(): Promise<void>;
}

/**
 * `idleTimeoutMs`: close a connection once no byte has crossed it either way for this long, as load balancers and
 * reverse proxies do (default: never).
 */
export async function startProxy(target: string, options: { readonly idleTimeoutMs?: number } = {}): Promise<BreakableProxy> {
  let idleCuts = 0;
  const sockets = new Set<Socket>();
  const proxy: { target: string } = { target };
  const server: Server = createServer((client) => {
    const { hostname, port } = new URL(proxy.target);
    const upstream = tcpConnect(Number(port), hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
    if (options.idleTimeoutMs !== undefined) {
      // The client's socket sees every byte of both directions (read from it, or written to it).
      client.setTimeout(options.idleTimeoutMs, () => {
        idleCuts += 1;
        client.destroy();
      });
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    get target() {
      return proxy.target;
    },
    set target(value: string) {
      proxy.target = value;
    },
    get idleCuts() {
      return idleCuts;
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

/** An HTTP proxy in front of an upstream that keeps the body of every POST it passes on: what the upstream received. */
export interface RecordingProxy {
  readonly url: string;
  readonly posted: string[];
  close(): Promise<void>;
}

export async function startRecordingProxy(target: string): Promise<RecordingProxy> {
  const posted: string[] = [];
  const { hostname, port } = new URL(target);
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.method === 'POST') posted.push(body.toString('utf8'));
      const onward = httpRequest({ host: hostname, port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      onward.on('error', () => res.destroy());
      res.on('close', () => onward.destroy());
      onward.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    posted,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
