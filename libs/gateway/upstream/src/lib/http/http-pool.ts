import {
  Agent as HttpAgent,
  request as httpRequest,
  type ClientRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { Pool, type Dispatcher } from 'undici';

export interface HttpPoolOptions {
  readonly maxSocketsPerOrigin: number;
  /**
   * The guarded lookup of a tenant's new sockets: each tenant's lookups wait only behind its own (a tenant whose
   * names never resolve must not hold up another's connections).
   */
  readonly lookupFor: (tenantId: string) => LookupFunction;
  /** A pool unused for between one and two of these is closed. Default 5 min. */
  readonly idlePoolMs?: number;
}

interface PoolEntry {
  readonly pool: Pool;
  /** The same tenant's and origin's long-lived GET streams (see HttpTarget.streamAgent). */
  readonly streamAgent: HttpAgent;
  used: boolean;
  closed: boolean;
}

/** Where and how to send requests to one upstream URL. Built once per session, reused per request. */
export interface HttpTarget {
  readonly url: URL;
  /** Every POST and DELETE goes through this keep-alive pool of the tenant and origin (undici), looked up each time. */
  readonly pool: Pool;
  /**
   * For long-lived GET streams (an upstream session's standalone SSE stream, the legacy SSE stream): one socket
   * each, outside `pool`'s cap, so open streams never take the sockets that calls wait for. Per tenant and origin, as
   * `pool` (its lookups are the tenant's), looked up each time.
   */
  readonly streamAgent: HttpAgent;
  readonly secure: boolean;
  readonly hostname: string;
  readonly port: number;
  readonly path: string;
}

/**
 * Keep-alive connection pools, one per tenant and origin (scheme, host, port), shared by every session of that tenant
 * to that origin: tenants using one SaaS upstream each have their own socket budget, so one tenant's long calls cannot
 * queue another's behind them until their timeouts fire (and open their circuits). Sockets are resolved through the
 * tenant's guarded lookup, so a pooled socket always points at an address the network policy permitted.
 *
 * Messages (the hot path) go through undici's low-level `dispatch`: the response arrives as callbacks
 * on one handler object, with no ClientRequest, IncomingMessage or per-request listeners. GET streams
 * stay on node:http; there are few of them and they live long.
 */
export class HttpPool {
  /**
   * Per tenant, upstream and origin; `used` says whether a request went through it since the last sweep, `closed` that the sweep
   * closed it (targets holding it then look up a new one).
   */
  private readonly pools = new Map<string, PoolEntry>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly options: HttpPoolOptions) {
    // A pool no request used for a whole sweep interval, with nothing under way, is closed: tenants and upstreams
    // come and go, and pools per tenant would otherwise pile up for the life of the replica. Targets look their pool
    // up on each request, so a session that comes back after a while gets a new one.
    this.sweeper = setInterval(() => this.sweep(), options.idlePoolMs ?? 5 * 60_000);
    this.sweeper.unref();
  }

  private entryFor(poolKey: string, origin: string, secure: boolean, tenantId: string): PoolEntry {
    let entry = this.pools.get(poolKey);
    if (entry === undefined) {
      const lookup = this.options.lookupFor(tenantId);
      // No socket cap (there is one stream per live upstream session) and no reuse: a stream ends with its socket.
      const streamOptions = { keepAlive: false, lookup };
      entry = {
        pool: new Pool(origin, {
          connections: this.options.maxSocketsPerOrigin,
          // Each call has its own deadline (callTimeoutMs, the caller's signal); an SSE answer may
          // legitimately stay quiet for longer than undici's default timeouts.
          headersTimeout: 0,
          bodyTimeout: 0,
          // Nothing is retried (a POST may have been acted on), so an idle socket must not outlive the upstream's own
          // idle timeout: without a Keep-Alive hint from the server, keep it below common 2 s defaults (gunicorn).
          keepAliveTimeout: 1_500,
          // Passed to net/tls.connect: every new socket resolves its host through the SSRF guard.
          connect: { lookup, keepAlive: true, keepAliveInitialDelay: 15_000 },
        }),
        streamAgent: secure ? new HttpsAgent(streamOptions) : new HttpAgent(streamOptions),
        used: true,
        closed: false,
      };
      this.pools.set(poolKey, entry);
    }
    return entry;
  }

  /** Closes the pools no request used since the last sweep and nothing is under way in (no call, no stream). */
  sweep(): void {
    for (const [poolKey, entry] of this.pools) {
      // A stream still open keeps its entry: destroy() must reach its socket.
      if (entry.used || entry.pool.stats.size > 0 || Object.keys(entry.streamAgent.sockets).length > 0) {
        entry.used = false;
        continue;
      }
      this.pools.delete(poolKey);
      entry.closed = true;
      entry.pool.close().catch(() => undefined);
    }
  }

  /** How many pools are open (specs). */
  get poolCount(): number {
    return this.pools.size;
  }

  /**
   * Where to send a tenant's requests for one upstream at `url`. Each upstream has a pool of its own, even where several
   * share an origin (an MCP hub serving /github and /jira): sharing one, a slow upstream's calls held every socket, and
   * the others' calls queued behind them until they timed out, counted against their own circuits (found by review).
   */
  target(url: URL, tenantId: string, upstreamId: string): HttpTarget {
    const secure = url.protocol === 'https:';
    const port = url.port === '' ? (secure ? 443 : 80) : Number(url.port);
    const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const key = `${url.protocol}//${hostname}:${port}`;
    const poolKey = `${tenantId} ${upstreamId} ${key}`;
    const origin = `${url.protocol}//${url.host}`;
    // The entry is held, and looked up again only once the sweep has closed it: one flag test per request.
    let entry = this.entryFor(poolKey, origin, secure, tenantId);
    const entryFor = () => this.entryFor(poolKey, origin, secure, tenantId);
    return {
      url,
      get pool() {
        if (entry.closed) entry = entryFor();
        entry.used = true;
        return entry.pool;
      },
      get streamAgent() {
        if (entry.closed) entry = entryFor();
        entry.used = true;
        return entry.streamAgent;
      },
      secure,
      hostname,
      port,
      path: `${url.pathname}${url.search}`,
    };
  }

  destroy(): void {
    // Requests still queued or running fail with ClientDestroyedError through their handlers.
    clearInterval(this.sweeper);
    for (const { pool, streamAgent } of this.pools.values()) {
      pool.destroy().catch(() => undefined);
      streamAgent.destroy();
    }
    this.pools.clear();
  }
}

/**
 * TCP keep-alive probes on a long-lived stream's socket start after it has been this quiet: a peer or a NAT that
 * dropped the flow without a FIN or RST is found out (the socket errors) instead of leaving the stream open for good.
 */
const STREAM_KEEPALIVE_MS = 30_000;

/**
 * A long-lived GET stream through the target's `streamAgent`. `headersTimeoutMs`: the request fails with ETIMEDOUT if
 * no response has begun by then (an upstream that takes the GET and never answers it).
 */
export function openStream(
  target: HttpTarget,
  headers: OutgoingHttpHeaders,
  onResponse: (res: IncomingMessage) => void,
  onError: (error: NodeJS.ErrnoException) => void,
  headersTimeoutMs?: number,
): ClientRequest {
  const options = {
    method: 'GET',
    hostname: target.hostname,
    port: target.port,
    path: target.path,
    agent: target.streamAgent,
    headers,
  };
  const req = target.secure ? httpsRequest(options, onResponse) : httpRequest(options, onResponse);
  req.on('error', onError);
  req.on('socket', (socket) => socket.setKeepAlive(true, STREAM_KEEPALIVE_MS));
  if (headersTimeoutMs !== undefined) {
    const timer = setTimeout(() => {
      const error: NodeJS.ErrnoException = new Error('the stream request had no response in time');
      error.code = 'ETIMEDOUT';
      req.destroy(error);
    }, headersTimeoutMs);
    timer.unref();
    req.once('response', () => clearTimeout(timer));
    req.once('close', () => clearTimeout(timer));
  }
  req.end();
  return req;
}

/** A headers object as the flat list (`[name, value, name, value, ...]`) requests are sent with. */
export function headerLines(headers: OutgoingHttpHeaders): string[] {
  const lines: string[] = [];
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) lines.push(name, item);
    else lines.push(name, String(value));
  }
  return lines;
}

/**
 * One request through the target's pool. undici computes Host (from the origin) and Content-Length
 * (from the body), so `headerLines` carries neither.
 */
export function dispatch(
  target: HttpTarget,
  method: 'POST' | 'DELETE' | 'GET',
  headerLines: readonly string[],
  body: string | undefined,
  exchange: Exchange,
  path: string = target.path,
): void {
  target.pool.dispatch({ method, path, headers: headerLines as string[], body: body ?? null }, exchange);
}

/**
 * How long a response body may stay open once its exchange's outcome is known (the call answered, the status
 * reported): messages arriving meanwhile are still read, then the request and its pooled socket are dropped. An
 * upstream that keeps an answered stream open (pings forever, an endless error body) would otherwise hold the socket
 * for good, and after `maxSocketsPerOrigin` of them every call to that origin would queue forever.
 */
export const LINGER_MS = 2_000;

/** Exchanges whose outcome is known while their body is still open, with the time each may stay open until. */
const lingering = new Map<Exchange, number>();
let lingerSweep: NodeJS.Timeout | undefined;

function sweepLingering(): void {
  const now = Date.now();
  for (const [exchange, until] of lingering) {
    if (until > now) continue;
    lingering.delete(exchange);
    exchange.dropLingeringBody();
  }
  if (lingering.size === 0 && lingerSweep !== undefined) {
    clearInterval(lingerSweep);
    lingerSweep = undefined;
  }
}

/** Response header lines as undici hands them to a dispatch handler: name, value, name, value... as raw bytes. */
export type RawHeaders = readonly Buffer[];

/** Whether a raw header name is `lower` (lower case: letters, digits, '-'), ignoring ASCII case, without decoding it. */
function isHeaderName(raw: Buffer, lower: string): boolean {
  if (raw.length !== lower.length) return false;
  for (let index = 0; index < lower.length; index += 1) {
    const want = lower.charCodeAt(index);
    const got = raw[index];
    if (got !== want && !(want >= 0x61 && want <= 0x7a && got === want - 0x20)) return false;
  }
  return true;
}

/**
 * The value of response header `name` (given in lower case) when the response carried it exactly once; undefined when
 * absent or repeated (a repeated Mcp-Session-Id or Content-Type is no answer). Decoded as Latin-1, as HTTP defines.
 */
export function headerValue(headers: RawHeaders, name: string): string | undefined {
  let value: string | undefined;
  for (let index = 0; index + 1 < headers.length; index += 2) {
    if (!isHeaderName(headers[index] as Buffer, name)) continue;
    if (value !== undefined) return undefined;
    value = (headers[index + 1] as Buffer).toString('latin1');
  }
  return value;
}

/**
 * The handler of one undici request, abortable before it reached a socket too (a request waits in the pool's queue
 * while every socket is busy). Subclasses read the response.
 *
 * It implements undici's callback interface as undici's HTTP/1.1 client calls it (onConnect, onHeaders, onData,
 * onComplete, onError; ADR 0008): a handler written to the newer controller interface is wrapped in an adapter that
 * also turns every response's header lines into an object, which cost each call more than the rest of the response's
 * handling. The response's headers stay raw bytes here, and the two the gateway reads are found by `headerValue`.
 */
export abstract class Exchange implements Dispatcher.DispatchHandler {
  private abortRequestNow: ((reason: Error) => void) | undefined;
  private pendingAbort: Error | undefined;

  /** The outcome is known and the body goes on: read it for at most LINGER_MS more (one shared sweep, no timer each). */
  protected linger(): void {
    if (lingering.has(this)) return;
    lingering.set(this, Date.now() + LINGER_MS);
    if (lingerSweep === undefined) {
      lingerSweep = setInterval(sweepLingering, Math.ceil(LINGER_MS / 4));
      lingerSweep.unref();
    }
  }

  /** The body ended or broke: nothing left to bound. */
  protected bodyDone(): void {
    lingering.delete(this);
  }

  /** @internal The sweep's verdict: the body stayed open too long after the outcome. */
  dropLingeringBody(): void {
    this.abortRequest();
  }

  /** Whether undici took the request to a socket (`onConnect`): it may have reached the upstream. */
  get reachedSocket(): boolean {
    return this.abortRequestNow !== undefined;
  }

  /** undici: the request is on its way (it holds a socket or waits for one); `abort` drops it. */
  onConnect(abort: (reason?: Error) => void): void {
    this.abortRequestNow = abort;
    if (this.pendingAbort !== undefined) abort(this.pendingAbort);
  }

  /** undici: the status line and header lines (also of an informational 1xx response). Never pauses the body. */
  onHeaders(statusCode: number, headers: Buffer[]): boolean {
    this.responseStarted(statusCode, headers);
    return true;
  }

  /** undici: a chunk of the body. */
  onData(chunk: Buffer): boolean {
    this.responseData(chunk);
    return true;
  }

  /** undici: the body ended. */
  onComplete(): void {
    this.responseEnded();
  }

  /** undici: the request failed (before or after a response began), or was aborted. */
  onError(error: Error): void {
    this.responseFailed(error);
  }

  protected abstract responseStarted(statusCode: number, headers: RawHeaders): void;

  protected abstract responseFailed(error: Error): void;

  protected responseData(_chunk: Buffer): void {
    // The body is discarded unless a subclass reads it.
  }

  protected responseEnded(): void {
    // Nothing to do unless a subclass reads the body.
  }

  /** Drops the request (and its socket); undici then reports it through onError. */
  protected abortRequest(): void {
    const reason = new Error('request aborted');
    if (this.abortRequestNow === undefined) this.pendingAbort = reason;
    else this.abortRequestNow(reason);
  }
}

/**
 * A message whose answer is only a status (a notification, a response to a server request, a DELETE):
 * `done` is called once, with the status or with the error that came before any response.
 */
export class StatusExchange extends Exchange {
  private reported = false;

  constructor(private readonly done: (error: NodeJS.ErrnoException | null, status: number) => void) {
    super();
  }

  protected responseStarted(statusCode: number): void {
    if (this.reported || statusCode < 200) return;
    this.reported = true;
    this.done(null, statusCode);
    this.linger();
  }

  protected override responseEnded(): void {
    this.bodyDone();
  }

  protected responseFailed(error: Error): void {
    this.bodyDone();
    if (this.reported) return;
    this.reported = true;
    this.done(error, 0);
  }

  /** Gives up (the caller timed out): `done` is not called any more. */
  abort(): void {
    this.reported = true;
    this.abortRequest();
  }
}

/**
 * Whether an error happened before the upstream answered anything (the breaker counts these). The
 * UND_ERR_ codes are undici's names for a connect that timed out and a socket closed before the answer; ETIMEOUT is
 * the guarded lookup's for a host name not resolved in time (its circuit must open, or it keeps taking lookups).
 */
export function isConnectError(error: NodeJS.ErrnoException): boolean {
  switch (error.code) {
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'ETIMEOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ETIMEDOUT':
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_SOCKET':
      return true;
    default:
      return false;
  }
}
