import { randomUUID } from 'node:crypto';
import {
  createServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '@portcullis/shared/util-logger';
import { createDemoServer, type DemoServerName } from '../demo-servers';
import { MemoryEventStore } from './memory-event-store';

export interface DemoHttpHostOptions {
  readonly host: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
  /** Served at `/mcp` (Streamable HTTP) and `/sse` + `/messages` (legacy HTTP+SSE). */
  readonly defaultServer: DemoServerName;
  /** Also served at `/<name>/mcp`, `/<name>/sse` and `/<name>/messages`. */
  readonly mountedServers: readonly DemoServerName[];
  readonly logger: Logger;
  /** Sessions without an HTTP request for this long are closed. */
  readonly sessionIdleTimeoutMs: number;
  /** Largest JSON-RPC POST body accepted. Default 4 MiB. */
  readonly maxBodyBytes?: number;
  /** Builds the server for a new session; defaults to {@link createDemoServer}. */
  readonly createServer?: (name: DemoServerName) => McpServer;
}

export interface DemoHttpHost {
  /** Base URL, e.g. `http://127.0.0.1:3500`. */
  readonly url: string;
  readonly port: number;
  /** Open sessions by transport. */
  sessionCount(): { readonly streamableHttp: number; readonly sse: number };
  /** Stops accepting, closes every session, and force-closes connections still open after `graceMs`. */
  close(graceMs?: number): Promise<void>;
}

interface Session {
  readonly name: DemoServerName;
  readonly server: McpServer;
  lastSeen: number;
}
interface StreamableSession extends Session {
  readonly transport: StreamableHTTPServerTransport;
}
interface SseSession extends Session {
  readonly transport: SSEServerTransport;
}

// JSON-RPC error codes used on the HTTP layer (the SDK uses the same for its own HTTP errors).
const PARSE_ERROR = -32700;
const INVALID_REQUEST = -32600;
const INTERNAL_ERROR = -32603;
const SERVER_ERROR = -32000;
const SESSION_NOT_FOUND = -32001;

const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;
/** Servers whose Streamable HTTP sessions keep their events (SEP-1699 polling), and the `retry` they announce. */
const RESUMABLE_SERVERS: ReadonlySet<DemoServerName> = new Set(['conformance']);
const RESUME_RETRY_MS = 100;
const ROUTE = /^(?:\/([a-z][a-z0-9-]*))?\/(mcp|sse|messages)$/;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

function writeJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function writeJsonRpcError(res: ServerResponse, status: number, code: number, message: string): void {
  writeJson(res, status, { jsonrpc: '2.0', error: { code, message }, id: null });
}

async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) throw new HttpError(413, INVALID_REQUEST, `Body larger than ${maxBytes} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > maxBytes) throw new HttpError(413, INVALID_REQUEST, `Body larger than ${maxBytes} bytes`);
    chunks.push(buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new HttpError(400, PARSE_ERROR, 'Parse error: body is not valid JSON');
  }
}

function isInitialize(body: unknown): boolean {
  return Array.isArray(body)
    ? body.some((message) => isInitializeRequest(message))
    : isInitializeRequest(body);
}

/**
 * Serves the demo MCP servers over HTTP with Node's own `http` module: Streamable HTTP with stateful
 * sessions (one server instance per session) and the legacy HTTP+SSE transport, plus `/healthz` and
 * `/readyz`.
 */
export async function startDemoHttpHost(options: DemoHttpHostOptions): Promise<DemoHttpHost> {
  const { logger } = options;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const buildServer = options.createServer ?? createDemoServer;
  const mounted = new Set<DemoServerName>([options.defaultServer, ...options.mountedServers]);
  const streamableSessions = new Map<string, StreamableSession>();
  const sseSessions = new Map<string, SseSession>();
  let accepting = true;

  function resolveServerName(prefix: string | undefined): DemoServerName | undefined {
    if (prefix === undefined) return options.defaultServer;
    return [...mounted].find((name) => name === prefix);
  }

  async function handleStreamable(
    name: DemoServerName,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    const header = req.headers['mcp-session-id'];
    const sessionId = Array.isArray(header) ? header[0] : header;
    const body = req.method === 'POST' ? await readJsonBody(req, maxBodyBytes) : undefined;

    if (sessionId !== undefined) {
      const session = streamableSessions.get(sessionId);
      if (!session || session.name !== name) {
        throw new HttpError(404, SESSION_NOT_FOUND, 'Session not found');
      }
      session.lastSeen = Date.now();
      await session.transport.handleRequest(req, res, body);
      return;
    }
    if (req.method !== 'POST' || !isInitialize(body)) {
      throw new HttpError(400, SERVER_ERROR, 'Bad Request: no valid session id; send initialize first');
    }
    if (!accepting) throw new HttpError(503, SERVER_ERROR, 'Shutting down');

    const server = buildServer(name);
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      // Resumable streams (priming events, Last-Event-ID, closing a stream mid-call) only where a test needs them:
      // storing every event would slow the servers the benchmarks use.
      ...(RESUMABLE_SERVERS.has(name) ? { eventStore: new MemoryEventStore(), retryInterval: RESUME_RETRY_MS } : {}),
      onsessioninitialized: (id) => {
        streamableSessions.set(id, { name, server, transport, lastSeen: Date.now() });
        logger.info({ sessionId: id, server: name, transport: 'streamable-http' }, 'session opened');
      },
    });
    transport.onclose = () => {
      const id = transport.sessionId;
      if (id !== undefined && streamableSessions.delete(id)) {
        logger.info({ sessionId: id, server: name, transport: 'streamable-http' }, 'session closed');
      }
    };
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  }

  async function handleSseStream(name: DemoServerName, prefix: string, res: ServerResponse): Promise<void> {
    if (!accepting) throw new HttpError(503, SERVER_ERROR, 'Shutting down');
    const server = buildServer(name);
    const transport = new SSEServerTransport(`${prefix}/messages`, res);
    const id = transport.sessionId;
    transport.onclose = () => {
      if (sseSessions.delete(id))
        logger.info({ sessionId: id, server: name, transport: 'sse' }, 'session closed');
    };
    sseSessions.set(id, { name, server, transport, lastSeen: Date.now() });
    logger.info({ sessionId: id, server: name, transport: 'sse' }, 'session opened');
    await server.connect(transport);
  }

  async function handleSseMessage(name: DemoServerName, url: URL, req: IncomingMessage, res: ServerResponse) {
    const id = url.searchParams.get('sessionId') ?? '';
    const session = sseSessions.get(id);
    if (!session || session.name !== name) throw new HttpError(404, SESSION_NOT_FOUND, 'Session not found');
    session.lastSeen = Date.now();
    const body = await readJsonBody(req, maxBodyBytes);
    await session.transport.handlePostMessage(req, res, body);
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A request target that is no URL (`//[`, `//a b`) is the sender's mistake, not an internal error.
    const target = req.url ?? '/';
    if (!URL.canParse(target, 'http://localhost')) throw new HttpError(400, INVALID_REQUEST, 'Bad Request: the request target is not a URL');
    const url = new URL(target, 'http://localhost');
    const method = req.method ?? 'GET';
    if (url.pathname === '/healthz' && (method === 'GET' || method === 'HEAD')) {
      writeJson(res, 200, { status: 'ok' });
      return;
    }
    if (url.pathname === '/readyz' && (method === 'GET' || method === 'HEAD')) {
      writeJson(res, accepting ? 200 : 503, { status: accepting ? 'ready' : 'shutting-down' });
      return;
    }
    const match = ROUTE.exec(url.pathname);
    const name = match ? resolveServerName(match[1]) : undefined;
    if (!match || !name) {
      writeJson(res, 404, { error: 'not found' });
      return;
    }
    const kind = match[2];
    const prefix = match[1] === undefined ? '' : `/${match[1]}`;
    const allowed = kind === 'mcp' ? ['GET', 'POST', 'DELETE'] : kind === 'sse' ? ['GET'] : ['POST'];
    if (!allowed.includes(method)) {
      res.writeHead(405, { allow: allowed.join(', ') }).end();
      return;
    }
    if (kind === 'mcp') await handleStreamable(name, req, res);
    else if (kind === 'sse') await handleSseStream(name, prefix, res);
    else await handleSseMessage(name, url, req, res);
  }

  const httpServer: HttpServer = createServer((req, res) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      logger.debug(
        {
          req: { method: req.method, url: req.url },
          res: { statusCode: res.statusCode },
          durationMs: Number(process.hrtime.bigint() - started) / 1e6,
        },
        'request',
      );
    });
    route(req, res).catch((error: unknown) => {
      if (error instanceof HttpError) {
        if (!res.headersSent) writeJsonRpcError(res, error.status, error.code, error.message);
        else res.end();
        return;
      }
      logger.error({ err: error, req: { method: req.method, url: req.url } }, 'request failed');
      if (!res.headersSent) writeJsonRpcError(res, 500, INTERNAL_ERROR, 'Internal error');
      else res.end();
    });
  });

  const sweep = setInterval(
    () => {
      const cutoff = Date.now() - options.sessionIdleTimeoutMs;
      for (const [id, session] of [...streamableSessions, ...sseSessions]) {
        if (session.lastSeen < cutoff) {
          logger.info({ sessionId: id, server: session.name }, 'closing idle session');
          void session.transport.close();
        }
      }
    },
    Math.min(60_000, Math.max(1_000, Math.floor(options.sessionIdleTimeoutMs / 2))),
  );
  sweep.unref();

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(options.port, options.host, () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  const { port } = httpServer.address() as AddressInfo;
  const hostForUrl = options.host.includes(':') ? `[${options.host}]` : options.host;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${hostForUrl}:${port}`,
    port,
    sessionCount: () => ({ streamableHttp: streamableSessions.size, sse: sseSessions.size }),
    close: (graceMs = 5_000) => {
      closing ??= (async () => {
        accepting = false;
        clearInterval(sweep);
        const closed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
        const force = setTimeout(() => httpServer.closeAllConnections(), graceMs);
        force.unref();
        // Closing a session ends its open SSE responses; sockets go idle a little later (once the response
        // stream has flushed), so keep closing idle keep-alive sockets until the server is down.
        const sessions = [...streamableSessions.values(), ...sseSessions.values()];
        await Promise.allSettled(sessions.map((session) => session.server.close()));
        httpServer.closeIdleConnections();
        const reap = setInterval(() => httpServer.closeIdleConnections(), 25);
        await closed;
        clearInterval(reap);
        clearTimeout(force);
      })();
      return closing;
    },
  };
}
