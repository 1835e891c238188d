import {
  Agent as HttpAgent,
  request as httpRequest,
  type ClientRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import type { Readable } from 'node:stream';

export interface HttpPoolOptions {
  readonly maxSocketsPerOrigin: number;
  readonly lookup: LookupFunction;
}

/** Where and how to send requests to one upstream URL. Built once per session, reused per request. */
export interface HttpTarget {
  readonly url: URL;
  readonly agent: HttpAgent;
  /**
   * For long-lived GET streams (an upstream session's standalone SSE stream, the legacy SSE stream): one socket
   * each, outside `agent`'s cap, so open streams never take the sockets that calls wait for.
   */
  readonly streamAgent: HttpAgent;
  readonly secure: boolean;
  readonly hostname: string;
  readonly port: number;
  readonly path: string;
  /** The Host header value (`host:port`, IPv6 in brackets). */
  readonly host: string;
}

/**
 * Keep-alive connection pools, one per origin (scheme, host, port), shared by every session to that
 * origin. Sockets are resolved through the guarded lookup, so a pooled socket always points at an
 * address the network policy permitted.
 */
export class HttpPool {
  private readonly agents = new Map<string, HttpAgent>();
  private readonly streamAgents = new Map<string, HttpAgent>();

  constructor(private readonly options: HttpPoolOptions) {}

  target(url: URL): HttpTarget {
    const secure = url.protocol === 'https:';
    const port = url.port === '' ? (secure ? 443 : 80) : Number(url.port);
    const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const key = `${url.protocol}//${hostname}:${port}`;
    let agent = this.agents.get(key);
    if (agent === undefined) {
      const agentOptions = {
        keepAlive: true,
        keepAliveMsecs: 15_000,
        maxSockets: this.options.maxSocketsPerOrigin,
        maxFreeSockets: Math.min(64, this.options.maxSocketsPerOrigin),
        scheduling: 'lifo' as const,
        lookup: this.options.lookup,
      };
      agent = secure ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions);
      this.agents.set(key, agent);
    }
    let streamAgent = this.streamAgents.get(key);
    if (streamAgent === undefined) {
      // No socket cap (there is one stream per live upstream session) and no reuse: a stream ends with its socket.
      const streamOptions = { keepAlive: false, lookup: this.options.lookup };
      streamAgent = secure ? new HttpsAgent(streamOptions) : new HttpAgent(streamOptions);
      this.streamAgents.set(key, streamAgent);
    }
    const host = `${hostname.includes(':') ? `[${hostname}]` : hostname}:${port}`;
    return { url, agent, streamAgent, secure, hostname, port, path: `${url.pathname}${url.search}`, host };
  }

  destroy(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
    for (const agent of this.streamAgents.values()) agent.destroy();
    this.streamAgents.clear();
  }
}

/**
 * One HTTP request through the target's pool (GET: a long-lived stream, through `streamAgent`). `body` is
 * written in one piece (Content-Length set).
 */
export function send(
  target: HttpTarget,
  method: 'GET' | 'POST' | 'DELETE',
  headers: OutgoingHttpHeaders,
  body: string | undefined,
  onResponse: (res: IncomingMessage) => void,
  onError: (error: NodeJS.ErrnoException, req: ClientRequest) => void,
  path: string = target.path,
): ClientRequest {
  const options = {
    method,
    hostname: target.hostname,
    port: target.port,
    path,
    agent: method === 'GET' ? target.streamAgent : target.agent,
    headers,
  };
  const req = target.secure ? httpsRequest(options, onResponse) : httpRequest(options, onResponse);
  req.on('error', (error: NodeJS.ErrnoException) => onError(error, req));
  if (body === undefined) req.end();
  else req.end(body);
  return req;
}

/**
 * A POST with a prepared, flat header list (`[name, value, name, value, ...]`, Host included, see
 * `headerLines`): Node writes the head from the list as is, skipping its per-header bookkeeping, and
 * sends head and body in one write. Content-Length is added here.
 */
export function sendPost(
  target: HttpTarget,
  headerLines: readonly string[],
  body: string,
  onResponse: (res: IncomingMessage) => void,
  onError: (error: NodeJS.ErrnoException, req: ClientRequest) => void,
): ClientRequest {
  const headers = headerLines.slice();
  headers.push('content-length', String(Buffer.byteLength(body)));
  const options = {
    method: 'POST',
    hostname: target.hostname,
    port: target.port,
    path: target.path,
    agent: target.agent,
    headers,
  };
  const req = target.secure ? httpsRequest(options, onResponse) : httpRequest(options, onResponse);
  req.on('error', (error: NodeJS.ErrnoException) => onError(error, req));
  req.end(body);
  return req;
}

/** A headers object as the flat list `sendPost` takes, with Host first. */
export function headerLines(target: HttpTarget, headers: OutgoingHttpHeaders): string[] {
  const lines = ['host', target.host];
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) lines.push(name, item);
    else lines.push(name, String(value));
  }
  return lines;
}

/** Reads a whole (bounded) body as text. */
export function readBody(
  res: Readable,
  maxBytes: number,
  done: (error: Error | null, text: string) => void,
): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  res.on('data', (chunk: Buffer) => {
    if (finished) return;
    size += chunk.length;
    if (size > maxBytes) {
      finished = true;
      res.destroy();
      done(new Error('response body too large'), '');
      return;
    }
    chunks.push(chunk);
  });
  res.on('end', () => {
    if (finished) return;
    finished = true;
    done(
      null,
      chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8'),
    );
  });
  res.on('error', (error) => {
    if (finished) return;
    finished = true;
    done(error, '');
  });
  res.on('aborted', () => {
    if (finished) return;
    finished = true;
    done(new Error('response aborted'), '');
  });
}

/** Whether an error happened before the upstream answered anything (the breaker counts these). */
export function isConnectError(error: NodeJS.ErrnoException): boolean {
  switch (error.code) {
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ETIMEDOUT':
    case 'ECONNRESET':
    case 'EPIPE':
      return true;
    default:
      return false;
  }
}
