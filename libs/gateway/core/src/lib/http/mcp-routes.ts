import { isUtf8 } from 'node:buffer';
import { randomBytes, randomFillSync } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import {
  allowsBatches,
  primesStreams,
  classify,
  errorResponse,
  invalidMessageError,
  refuseInexact,
  isWellFormedSessionId,
  JSON_RPC,
  newSessionId,
  type Classified,
  type JsonRpcId,
  type JsonRpcResponse,
  type Principal,
  type SessionRecord,
} from '@portcullis/gateway/mcp';
import type { TrustedProxies } from '@portcullis/shared/util-config';
import { inexactNumbersByElement } from '@portcullis/shared/util-json';
import type { Logger } from '@portcullis/shared/util-logger';
import { withAuthDeadline, type AuthOutcome, type Authenticator } from '../auth/authenticator';
import { clientAddressOf } from './client-address';
import { newStreamId, parseEventId, type ReplayEntry, type ReplayLog } from '../dispatch/replay-log';
import { EventStream, LegacyPost, NO_STREAM, PostResponder, QuietResponses, rateLimitedRetryAfter, type MessageSink, type WithdrawablePost } from '../dispatch/sinks';
import { MAX_IN_FLIGHT_PER_PRINCIPAL, SessionNotEndedError, unanswerable, type SessionEngine } from '../dispatch/session-engine';
import { GATEWAY_RPC, GatewayHttpError, rpcError } from './gateway-error';
import {
  acceptsEventStream,
  acceptsPostResponses,
  hasContentCoding,
  isJsonContentType,
  originProblem,
  requestProtocolVersion,
  type OriginPolicy,
} from './request-checks';

export interface McpRoutesOptions {
  readonly authenticator: Authenticator;
  readonly engine: SessionEngine;
  readonly logger: Logger;
  readonly origin: OriginPolicy;
  readonly bodyLimitBytes: number;
  /**
   * SSE comment interval on long-lived streams, and the longest a POST's response stays quiet before it becomes a
   * stream that gets them (keeps proxies from closing either; see QuietResponses).
   */
  readonly keepAliveMs: number;
  /** Makes Streamable HTTP SSE streams resumable with `Last-Event-ID` (absent: they are not). */
  readonly replay?: ReplayLog;
  /** Serve `POST /t/:tenant/mcp` straight off Node's server, in front of Fastify (default true). */
  readonly rawFastPath?: boolean;
  /**
   * The proxies in front that may speak for the client through X-Forwarded-For (default none), as given to Fastify's
   * `trustProxy`: the client address is the nearest one that is not a trusted proxy.
   */
  readonly trustProxy?: TrustedProxies;
  /**
   * Legacy SSE (`GET /t/<tenant>/sse`): a stream whose session is not initialised within this many ms is closed
   * (default 60 s); open streams per principal (default 32), per tenant (default 1,024: one tenant's many keys cannot
   * take a replica's every stream) and per replica (default 4,096). Without them one key could
   * hold any number of sockets open with keep-alives forever (nothing else times out a stream that never initialises).
   */
  readonly legacy?: { readonly initMs?: number; readonly maxPerPrincipal?: number; readonly maxPerTenant?: number; readonly maxStreams?: number };
  /**
   * Streamable HTTP GET streams (standalone and resumed) open on this replica: per principal (default 256: an agent
   * fleet sharing one key has one standalone stream per instance), per tenant (default 2,048) and per replica (default
   * 8,192). Each holds a socket and a keep-alive timer for as long as the agent keeps it; without a bound one key could
   * open sessions and streams until the replica ran out of descriptors or memory, for every tenant.
   */
  readonly streams?: { readonly maxPerPrincipal?: number; readonly maxPerTenant?: number; readonly maxStreams?: number };
  /**
   * The longest an authenticator that answers later may take before the request is answered 503 + Retry-After
   * (default 10 s). API keys answer at once and are not timed.
   */
  readonly authTimeoutMs?: number;
}

const SESSION_HEADER = 'mcp-session-id';
const TRACEPARENT = /^[\da-f]{2}-([\da-f]{32})-[\da-f]{16}-[\da-f]{2}$/;

// Trace ids come from a pool of random bytes refilled 4 KiB at a time: one randomFillSync per 256
// requests instead of one randomBytes(16) each.
const TRACE_POOL_BYTES = 4096;
let tracePool = Buffer.allocUnsafeSlow(TRACE_POOL_BYTES);
let tracePoolOffset = TRACE_POOL_BYTES;

function randomTraceId(): string {
  if (tracePoolOffset === TRACE_POOL_BYTES) {
    tracePool = randomFillSync(tracePool);
    tracePoolOffset = 0;
  }
  const id = tracePool.toString('hex', tracePoolOffset, tracePoolOffset + 16);
  tracePoolOffset += 16;
  return id;
}

/** The caller's W3C trace id when it sent a valid `traceparent`, else a fresh random one. */
function traceIdOfHeaders(headers: IncomingHttpHeaders): string {
  const header = headers['traceparent'];
  if (typeof header !== 'string') return randomTraceId();
  const match = TRACEPARENT.exec(header.trim().toLowerCase());
  return match?.[1] && !/^0+$/.test(match[1]) ? match[1] : randomTraceId();
}

/** Fastify's request id in the MCP scope is the trace id (see `setGenReqId` below). */
const traceIdOf = (request: FastifyRequest): string => request.id;

const headerOf = (request: FastifyRequest, name: string): string | undefined => {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

function sendError(reply: FastifyReply, error: GatewayHttpError, id: JsonRpcId | null, traceId: string): void {
  void reply
    .code(error.status)
    .headers(error.headers)
    .header('content-type', 'application/json')
    .send(JSON.stringify(rpcError(id, error.rpcCode, error.message, traceId)));
}

/** The error code of a body that is not UTF-8 (Fastify's body parser to its error handler). */
const NOT_UTF8 = 'PORTCULLIS_BODY_NOT_UTF8';
const notUtf8 = () => new GatewayHttpError(400, JSON_RPC.PARSE_ERROR, 'Parse error: the body is not valid UTF-8');
const encodedBody = () =>
  new GatewayHttpError(415, GATEWAY_RPC.UNSUPPORTED_MEDIA_TYPE, 'Unsupported Media Type: send the body without a Content-Encoding', { 'accept-encoding': 'identity' });

/** A POST of a credentialed principal under way (`openPosts`). */
interface OpenPost {
  readonly sessionId: string;
  readonly principal: Principal;
  /** Its requests not yet found cancelled by the agent. */
  readonly pending: Set<JsonRpcId>;
  readonly batch: boolean;
  /** Its answers to invalid batch elements. */
  readonly refused: readonly JsonRpcResponse[];
  unwatch: () => void;
  withdrawn: boolean;
}

/** A watch that watches nothing (`watchExpiry` for a credential that does not expire in time). */
const NO_WATCH = (): void => undefined;
/**
 * How far ahead a POST watches its key's expiry: an upstream's call timeout is at most an hour, and a `tasks/result`
 * waits at most the task's lifetime, an hour too (a minute of margin). A key expiring later needs no timer per POST
 * (most keys, on every call). A call held longer for approval and then run is not watched to its end: its questions
 * and progress after the expiry still reach the agent, while its go-ahead and result are refused all the same
 * (`credentialsAfterApproval`, `withheldIfRevoked`).
 */
const MAX_POST_MS = 61 * 60_000;

const unauthenticated = () =>
  new GatewayHttpError(401, GATEWAY_RPC.UNAUTHENTICATED, 'Authentication required', { 'www-authenticate': 'Bearer' });
const unknownTenant = () => new GatewayHttpError(404, GATEWAY_RPC.NOT_FOUND, 'Unknown tenant');
const credentialsUnverifiable = () =>
  new GatewayHttpError(503, GATEWAY_RPC.UNAVAILABLE, 'Credentials or configuration cannot be loaded right now; try again shortly', { 'retry-after': '5' });
/** The answer to a failed authentication. */
/** HTTP status of an initialize refused for other than a rate limit (default 400: the agent's mistake). */
const INITIALIZE_ERROR_STATUS: ReadonlyMap<number, number> = new Map([
  [GATEWAY_RPC.UNAVAILABLE, 503],
  [GATEWAY_RPC.POLICY_DENIED, 403],
  [JSON_RPC.INTERNAL_ERROR, 500],
]);

const authFailure = (reason: 'unauthenticated' | 'unknown_tenant' | 'unavailable'): GatewayHttpError => {
  if (reason === 'unauthenticated') return unauthenticated();
  return reason === 'unknown_tenant' ? unknownTenant() : credentialsUnverifiable();
};
const unknownSession = () => new GatewayHttpError(404, GATEWAY_RPC.NOT_FOUND, 'Session not found');
const tooManyInFlight = () =>
  new GatewayHttpError(429, GATEWAY_RPC.RATE_LIMITED, `Too many requests under way on this session (at most ${MAX_LEGACY_IN_FLIGHT})`, { 'retry-after': '1' });

/** Request headers a browser client of these endpoints sends (CORS preflight answers). */
// W3C trace context too: the gateway takes the agent's trace id from `traceparent` (a browser agent with tracing sends
// it on every request, and a preflight that does not allow it stops them all).
const CORS_REQUEST_HEADERS = 'authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id, traceparent, tracestate';
/** Response headers a browser client must be able to read (the session id above all). */
const CORS_EXPOSED_HEADERS = 'mcp-session-id, mcp-protocol-version, www-authenticate, retry-after';

/**
 * For a browser request from an allowed origin (the caller has checked it): the CORS headers that let the page read
 * the answer. Set on the raw response before anything is written, so every way of answering carries them.
 */
function allowOrigin(res: ServerResponse, origin: string | string[] | undefined): void {
  if (typeof origin !== 'string') return;
  res.setHeader('access-control-allow-origin', origin);
  res.setHeader('access-control-expose-headers', CORS_EXPOSED_HEADERS);
  res.setHeader('vary', 'Origin');
}

/** What the POST handler needs of a request, whichever way it arrived (raw fast path or Fastify route). */
interface PostInput {
  readonly tenant: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** The agent's address (policy conditions may use it). */
  readonly ip: string | undefined;
  readonly traceId: string;
  /** Already admitted (Origin/Host and authentication) from the headers, before the body was read. */
  readonly principal?: Principal | undefined;
  /** Origin/Host admitted and authentication under way (an authenticator that must wait), before the body was read. */
  readonly authentication?: Promise<AuthOutcome> | undefined;
}

/**
 * Resumed POST streams one session may hold open on a replica at once: each follows the replay log until its
 * response (a Redis connection, or a poll every 250 ms beyond the replica's follower cap).
 */
const MAX_RESUMED_STREAMS_PER_SESSION = 8;

/**
 * How long a standalone stream whose agent's connection dropped stays the session's, its messages logged for a
 * reconnect (the SDK client reconnects within seconds; the replay log itself lives `GATEWAY_SSE_REPLAY_TTL_MS`).
 */
const STANDALONE_PARK_MS = 60_000;

/** How long a resumed standalone stream waits for the older stream's end marker (see the GET route). */
const STANDALONE_HANDOVER_MS = 2_000;

/** Messages per JSON-RPC batch: each request of a batch runs at once (hooks, audit, an upstream call). */
const MAX_BATCH = 100;

/**
 * Refuses an empty batch, or one of more than MAX_BATCH messages, before any of its elements is looked at: checked
 * after the exact-number scan and the classifying of every element, a 4 MiB batch of 699,000 elements held the event
 * loop 1.4 s before its refusal (found by a review).
 */
function refuseBatchSize(batch: readonly unknown[]): void {
  if (batch.length === 0) throw new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, 'Invalid Request: empty batch');
  if (batch.length > MAX_BATCH) throw new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, `Invalid Request: at most ${MAX_BATCH} messages per batch`);
}

/**
 * Reads and drops the body of a request answered without it (refused before it was read), so that the client gets the
 * answer rather than a reset mid-upload; past `limit` bytes (a chunked body declares no end) the connection is dropped
 * instead. Before, a refused client (no credential) could stream into it for as long as the request timeout allowed
 * (found by review).
 */
function discardBody(req: IncomingMessage, limit: number): void {
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > limit) req.destroy();
  });
  req.resume();
}

const NONE_CANCELLED: ReadonlySet<JsonRpcId> = new Set();

/**
 * The ids a batch's own `notifications/cancelled` name. JSON-RPC lets a batch's elements run in any order, and a
 * cancellation handled before the request it names was started found nothing to cancel: the request ran and was
 * answered all the same (found by review). A request its own batch cancels is not started, and gets no answer.
 */
function cancelledInBatch(items: readonly Classified[]): ReadonlySet<JsonRpcId> {
  let ids: Set<JsonRpcId> | undefined;
  for (const item of items) {
    if (item.kind !== 'notification' || item.message.method !== 'notifications/cancelled') continue;
    const requestId = item.message.params?.['requestId'];
    if (typeof requestId === 'string' || typeof requestId === 'number') (ids ??= new Set()).add(requestId);
  }
  return ids ?? NONE_CANCELLED;
}

/**
 * Requests one legacy session may have under way at once. Each POST is answered 202 at once and runs on after it, so
 * unlike a Streamable HTTP request it holds no connection: without a bound one keep-alive connection could queue any
 * amount of upstream work and request bodies on a replica. As many as its principal may have under way on the replica
 * (`MAX_IN_FLIGHT_PER_PRINCIPAL`), so the POST past them is refused 429 here rather than answered -32029 on the stream.
 */
export const MAX_LEGACY_IN_FLIGHT = MAX_IN_FLIGHT_PER_PRINCIPAL;

/** Fastify's default `maxParamLength`: a longer tenant segment is the router's to refuse. */
const MAX_TENANT_SEGMENT = 100;

/** `/t/<tenant>/mcp`, optionally with a query string; the tenant segment still URL-encoded. */
const MCP_POST_PATH = /^\/t\/([^/?#]+)\/mcp(?:\?|$)/;

const firstHeader = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value);

function writeJson(res: ServerResponse, status: number, headers: Readonly<Record<string, string>>, body: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

function writeError(res: ServerResponse, error: GatewayHttpError, id: JsonRpcId | null, traceId: string): void {
  writeJson(res, error.status, error.headers, JSON.stringify(rpcError(id, error.rpcCode, error.message, traceId)));
}

interface LegacyStream {
  readonly principal: Principal;
  readonly stream: EventStream;
  record: SessionRecord | undefined;
  /** An initialize is under way: another one is refused (it would connect every upstream a second time). */
  initializing: boolean;
  /** Requests of this session posted and not yet answered on the stream (see MAX_LEGACY_IN_FLIGHT). */
  inFlight: number;
}

/**
 * The downstream side of the gateway as plain Fastify routes (no Nest controllers on the request path):
 * Streamable HTTP on `/t/:tenant/mcp` and the legacy HTTP+SSE transport on `/t/:tenant/sse` +
 * `/t/:tenant/messages`. Registered in its own encapsulated context, so its body parsing and error
 * rendering (JSON-RPC with `data.traceId`) do not touch the rest of the app.
 */
export interface McpRoutes {
  /**
   * Shutdown, first step: new requests and new streams are answered 503 (connection closed, so the agent's next
   * request goes to another replica); requests under way go on, and answers and notifications still pass (calls under
   * way may wait for them).
   */
  stopAccepting(): void;
  /** POST messages being handled right now (initialize and calls included): what a graceful shutdown waits for. */
  readonly active: number;
  /** SSE streams open now (standalone and legacy; metrics). */
  readonly openStreams: number;
  /**
   * Ends every open SSE stream (shutdown: hijacked streams would otherwise hold the server open), and the legacy
   * sessions with theirs: resolves once those have ended their upstream sessions (the connector must still be up).
   */
  closeStreams(): Promise<void>;
  /**
   * Ends the open SSE streams whose credential would no longer be accepted (key revoked or expired, agent client
   * disabled, tenant suspended): call it when the key or tenant index changed. A stream is authenticated once, when
   * it opens; without this it would go on carrying notifications and upstream requests. Returns how many it ended.
   */
  revalidateStreams(): number;
}

/** The longest wait a Node timer takes (about 24.8 days): an expiry further off is reached in steps. */
const MAX_TIMER_MS = 2_147_483_647;

/** `${tenant} ${kind} ${id}`: whose streams are counted together. */
const principalKey = (principal: Principal): string => `${principal.tenantId} ${principal.kind} ${principal.id}`;

/** Adds `by` to a count kept in `counts` (a count that reaches zero leaves the map). */
function count(counts: Map<string, number>, key: string, by: number): void {
  const next = (counts.get(key) ?? 0) + by;
  if (next > 0) counts.set(key, next);
  else counts.delete(key);
}

/** Whether a request says it carries a body (a length above zero, or chunks). */
const declaresBody = (headers: IncomingHttpHeaders): boolean =>
  headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0');

export async function registerMcpRoutes(app: FastifyInstance, options: McpRoutesOptions): Promise<McpRoutes> {
  const { engine, logger } = options;
  const authenticator = withAuthDeadline(options.authenticator, options.authTimeoutMs ?? 10_000);
  /** POST responses waiting for their answer, kept alive while they do. */
  const quiet = new QuietResponses(options.keepAliveMs);
  const legacy = new Map<string, LegacyStream>();
  /** Open legacy streams per principal (`principalKey`) and per tenant id. */
  const legacyPerPrincipal = new Map<string, number>();
  const legacyPerTenant = new Map<string, number>();
  const legacyInitMs = options.legacy?.initMs ?? 60_000;
  const maxLegacyPerPrincipal = options.legacy?.maxPerPrincipal ?? 32;
  const maxLegacyPerTenant = options.legacy?.maxPerTenant ?? 1_024;
  const maxLegacyStreams = options.legacy?.maxStreams ?? 4_096;
  /** Resumed POST streams open per session on this replica. */
  const resumedStreams = new Map<string, number>();
  /** Streamable HTTP GET streams open on this replica, in all, per principal (`principalKey`) and per tenant id. */
  let getStreams = 0;
  const getStreamsPerPrincipal = new Map<string, number>();
  const getStreamsPerTenant = new Map<string, number>();
  const maxGetStreamsPerPrincipal = options.streams?.maxPerPrincipal ?? 256;
  const maxGetStreamsPerTenant = options.streams?.maxPerTenant ?? 2_048;
  const maxGetStreams = options.streams?.maxStreams ?? 8_192;
  /** Open SSE streams and who opened them. */
  const streams = new Map<EventStream, Principal>();
  /**
   * POSTs under way whose answer may stream, by who sent them (credentialed principals only): a POST's stream is its
   * requests', not the session's, so `revalidateStreams` ends it with an error for each request once its credential is
   * gone (its calls run on upstream to their end; nothing more of them reaches the agent). A legacy session's messages
   * POSTs too (`LegacyPost`): their requests are answered on the session's stream, which may be another key's.
   */
  const openPosts = new Map<WithdrawablePost, OpenPost>();
  /** The same POSTs by session: an agent's cancellation looks at its own session's (every open POST was walked for each). */
  const postsOfSession = new Map<string, Set<OpenPost>>();
  const untrackPost = (responder: WithdrawablePost, post: OpenPost): void => {
    openPosts.delete(responder);
    const ofSession = postsOfSession.get(post.sessionId);
    ofSession?.delete(post);
    if (ofSession?.size === 0) postsOfSession.delete(post.sessionId);
  };
  /**
   * Ends a POST with an error for each of its requests still to be answered (one the agent cancelled gets none), and
   * its refusals of invalid batch elements; nothing more of its calls reaches the agent (`withdrawn`): its credential
   * is gone.
   */
  const withdrawPost = (responder: WithdrawablePost, post: OpenPost): void => {
    untrackPost(responder, post);
    post.unwatch();
    post.withdrawn = true;
    const errors = [...post.pending].map(revokedAnswer);
    const [only] = errors;
    if (!post.batch && only !== undefined) responder.withdraw(only);
    else if (post.batch && post.refused.length + errors.length > 0) responder.withdraw([...post.refused, ...errors]);
    else responder.abandon();
  };
  /** Tracks a POST of a credentialed principal while it runs, and ends it when its credential expires. */
  const openPost = (responder: WithdrawablePost, sessionId: string, principal: Principal, ids: readonly JsonRpcId[], batch: boolean, refused: readonly JsonRpcResponse[]): OpenPost | undefined => {
    if (principal.credentialId === undefined) return undefined;
    const post: OpenPost = { sessionId, principal, pending: new Set(ids), batch, refused, unwatch: NO_WATCH, withdrawn: false };
    // The common key (no expiry, or not within a POST's bound) costs no closure.
    if (expiresWithin(principal.credentialId, MAX_POST_MS)) post.unwatch = watchExpiry(principal, () => withdrawPost(responder, post), MAX_POST_MS);
    openPosts.set(responder, post);
    const ofSession = postsOfSession.get(sessionId);
    if (ofSession === undefined) postsOfSession.set(sessionId, new Set([post]));
    else ofSession.add(post);
    return post;
  };
  /** The agent cancelled request `requestId` of session `sessionId`: a POST withdrawn later leaves it unanswered. */
  const forgetCancelled = (sessionId: string, requestId: unknown): void => {
    if (typeof requestId !== 'string' && typeof requestId !== 'number') return;
    for (const post of postsOfSession.get(sessionId) ?? []) post.pending.delete(requestId);
  };
  /** The POST is answered: no longer tracked. */
  const closePost = (responder: WithdrawablePost): void => {
    const post = openPosts.get(responder);
    if (post === undefined) return;
    untrackPost(responder, post);
    post.unwatch();
  };
  const revokedAnswer = (id: JsonRpcId): JsonRpcResponse => ({
    jsonrpc: '2.0',
    id,
    error: {
      code: GATEWAY_RPC.FORBIDDEN,
      message: 'The credential that made this request was revoked, expired or disabled (or its tenant suspended) while it ran, so its result was not sent.',
      data: { reason: 'credential_no_longer_valid' },
    },
  });
  /**
   * A result that streamed (quick answers pass without a look) is withheld when its credential went meanwhile (revoked,
   * expired, its tenant suspended), as a task's result or an approved call's go-ahead are.
   */
  const withheldIfRevoked = (responder: PostResponder, principal: Principal, response: JsonRpcResponse): JsonRpcResponse =>
    responder.streaming ? withheldIfGone(principal, response) : response;
  /** A result withheld when its credential went meanwhile (a legacy session's answers all go on a stream). */
  const withheldIfGone = (principal: Principal, response: JsonRpcResponse): JsonRpcResponse =>
    'result' in response && principal.credentialId !== undefined && authenticator.stillValid(principal.credentialId, principal) === false
      ? revokedAnswer(response.id)
      : response;
  /**
   * Checked again right before a stream is opened (and tracked, with nothing awaited in between): a reload that
   * revoked the key while the request looked its session up closed the streams open then, not this one.
   */
  const isRevoked = (principal: Principal): boolean =>
    principal.credentialId !== undefined && authenticator.stillValid(principal.credentialId, principal) === false;
  const refuseIfRevoked = (principal: Principal): void => {
    if (isRevoked(principal)) throw unauthenticated();
  };
  /**
   * Runs `expired` once the principal's credential expires (and is refused from then on), without a reload: a stream
   * of it ends then too, or it would carry on until the next reload (never, while the database is out of reach).
   * Returns the watch's cancel.
   */
  const watchExpiry = (principal: Principal, expired: () => void, withinMs = Number.POSITIVE_INFINITY): (() => void) => {
    const credentialId = principal.credentialId;
    // Most keys never expire, or not in time: nothing is made for them.
    if (credentialId === undefined || !expiresWithin(credentialId, withinMs)) return NO_WATCH;
    let timer: NodeJS.Timeout | undefined;
    const arm = (rearm: boolean): void => {
      const expiresAt = authenticator.expiresAt?.(credentialId) ?? null;
      if (expiresAt === null) return;
      const wait = expiresAt - Date.now();
      // Not before the watched thing surely ends (a POST's calls are bounded): no timer at all.
      if (wait > withinMs) return;
      // Woken and not refused, yet at or past the expiry by now: asked once more (the clock may have moved on between
      // its check and this one: a timer woken a moment early, found valid, then re-armed past the expiry armed nothing,
      // and the POST ran on after its key expired; seen as a flake in CI). Still not refused: the authenticator
      // decides otherwise, so no tighter loop.
      if (rearm && wait <= 0) {
        if (authenticator.stillValid(credentialId, principal) === false) expired();
        return;
      }
      timer = setTimeout(() => {
        timer = undefined;
        if (authenticator.stillValid(credentialId, principal) !== false) arm(true);
        else expired();
      }, Math.min(Math.max(wait, 0), MAX_TIMER_MS));
      timer.unref();
    };
    arm(false);
    return timer === undefined ? NO_WATCH : () => clearTimeout(timer);
  };
  /** Whether the credential has an expiry at most `withinMs` from now (or already past). */
  function expiresWithin(credentialId: string | undefined, withinMs: number): boolean {
    if (credentialId === undefined) return false;
    const expiresAt = authenticator.expiresAt?.(credentialId) ?? null;
    return expiresAt !== null && expiresAt - Date.now() <= withinMs;
  }
  const track = (stream: EventStream, principal: Principal): EventStream => {
    streams.set(stream, principal);
    const unwatch = watchExpiry(principal, () => {
      logger.info({ streamId: stream.id }, 'closed an SSE stream whose credential expired');
      stream.close();
      streams.delete(stream);
    });
    // Not at its connection's close: a parked stream (see EventStream.park) still takes messages, and a revoked key
    // or a shutdown must still end it.
    stream.whenDone(() => {
      unwatch();
      streams.delete(stream);
    });
    return stream;
  };

  /** The principal of a successful authentication; throws GatewayHttpError for a failed one. */
  const principalOf = (outcome: AuthOutcome): Principal => {
    if (!outcome.ok) throw authFailure(outcome.reason);
    return outcome.principal;
  };

  /** Origin/Host, then authentication; throws GatewayHttpError. */
  const admitHeaders = async (target: string | undefined, headers: IncomingHttpHeaders, tenant: string): Promise<Principal> => {
    const problem = originProblem(target, headers.host, headers.origin, options.origin);
    if (problem) throw new GatewayHttpError(403, GATEWAY_RPC.FORBIDDEN, problem);
    const pending = authenticator.authenticate(headers.authorization, tenant);
    // API keys answer synchronously: no extra promise hop on the hot path.
    return principalOf(pending instanceof Promise ? await pending : pending);
  };

  /**
   * A malformed message with no method was meant as the answer to request `id`, which may be one the gateway relayed to
   * the agent from an upstream (an elicitation, a sampling request): that request is ended now with an error, as the
   * upstream side ends a call on a malformed answer, not left to wait out its timeout for an answer that cannot come.
   * An id the gateway never relayed is dropped by the engine.
   */
  const endRelayedWith = (record: SessionRecord, item: Classified & { kind: 'invalid' }): void => {
    if (item.answer !== true || item.id === null) return;
    engine.answer(record, errorResponse(item.id, JSON_RPC.INTERNAL_ERROR, `The client's answer could not be passed on: ${item.reason}`));
  };

  /** The session the request names, if it exists and belongs to `principal`; throws GatewayHttpError. */
  const sessionOf = async (headers: IncomingHttpHeaders, principal: Principal): Promise<SessionRecord> => {
    const id = firstHeader(headers[SESSION_HEADER]);
    if (id === undefined) throw new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, 'Bad Request: Mcp-Session-Id header is required');
    if (!isWellFormedSessionId(id)) {
      // Node joins a header sent twice with ", ": two session ids name no one session, and that is the caller's mistake.
      if (id.includes(',')) throw new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, 'Bad Request: send one Mcp-Session-Id header');
      throw unknownSession();
    }
    let record: SessionRecord | undefined;
    try {
      record = await engine.session(id, principal);
    } catch (error) {
      // The session store out of reach: nothing was wrong with the request, and the session may well exist.
      logger.warn({ err: error }, 'session not looked up: the session store failed');
      throw new GatewayHttpError(503, GATEWAY_RPC.UNAVAILABLE, 'The session cannot be looked up right now; try again shortly', { 'retry-after': '1' });
    }
    // A legacy session's id names no Streamable HTTP session (ADR 0007): it is served on its own stream only.
    if (!record || record.legacy === true) throw unknownSession();
    return record;
  };

  /**
   * POST /t/:tenant/mcp: one JSON-RPC message or a batch. Answers on the raw response (JSON, an SSE stream, or 202)
   * and never throws: a caller's mistake is its HTTP status and JSON-RPC error, anything else a logged 500.
   */
  async function handlePost(input: PostInput, res: ServerResponse): Promise<void> {
    const { headers, traceId } = input;
    let firstId: JsonRpcId | null = null;
    /** Made once the request is known to need an answer; released however its handling ends (see finally). */
    let responder: PostResponder | undefined;
    /** The one request being answered (not a batch): what a stream that fails is answered for. */
    let answeringId: JsonRpcId | undefined;
    /** Set when the handling failed unexpectedly: named in the error answer and in the log line. */
    let errorId: string | undefined;
    active += 1;
    try {
      const principal = input.principal ?? (input.authentication ? principalOf(await input.authentication) : await admitHeaders(undefined, headers, input.tenant));
      if (!acceptsPostResponses(headers.accept)) {
        throw new GatewayHttpError(406, GATEWAY_RPC.NOT_ACCEPTABLE, 'Not Acceptable: the client must accept both application/json and text/event-stream');
      }
      if (!isJsonContentType(headers['content-type'])) {
        throw new GatewayHttpError(415, GATEWAY_RPC.UNSUPPORTED_MEDIA_TYPE, 'Unsupported Media Type: Content-Type must be application/json');
      }
      if (hasContentCoding(headers['content-encoding'])) throw encodedBody();
      let parsed: unknown;
      try {
        parsed = JSON.parse(input.body);
      } catch {
        throw new GatewayHttpError(400, JSON_RPC.PARSE_ERROR, 'Parse error');
      }
      const batch = Array.isArray(parsed);
      if (batch) refuseBatchSize(parsed as unknown[]);
      // A number the parse changed would reach the upstream as another value than the agent wrote: its message is
      // refused (an answer is passed on as an error), each element of a batch on its own.
      const inexact = inexactNumbersByElement(input.body);
      const items: Classified[] = (batch ? (parsed as unknown[]) : [parsed]).map((value, index) => refuseInexact(classify(value), inexact?.get(index)));
      // A single invalid message is the request's error (400). In a batch (JSON-RPC 2.0 §6) each invalid element gets
      // its own Invalid Request in the answer and the valid ones are still handled.
      const invalid = items.find((item) => item.kind === 'invalid');
      if (!batch && invalid && invalid.kind === 'invalid') {
        firstId = invalid.id;
        const { code, message } = invalidMessageError(invalid);
        if (invalid.answer === true && invalid.id !== null) {
          // Looked up only to end what it answers (`endRelayedWith`); the agent is told of its mistake either way.
          const record = await sessionOf(headers, principal).catch(() => undefined);
          if (record) endRelayedWith(record, invalid);
        }
        throw new GatewayHttpError(400, code, message);
      }
      // A single request's refusals from here on (shutting down, an unknown session, an unsupported protocol version)
      // answer with its id: it is known (JSON-RPC 2.0 §5 allows null only when it is not).
      const single = batch ? undefined : items[0];
      if (single?.kind === 'request') firstId = single.message.id;
      // Shutting down: no new work (the agent retries on another replica), but answers and notifications still go
      // through — calls under way may be waiting for them (an elicitation answer, a cancellation).
      if (closing && items.some((item) => item.kind === 'request')) throw shuttingDown();
      // Authenticated from the headers, before the body came: a reload that revoked the key while the body was on its
      // way closed what was open then, not this request (nothing is awaited from here to the initialize).
      refuseIfRevoked(principal);
      const init = items.find((item) => item.kind === 'request' && item.message.method === 'initialize');
      if (init && init.kind === 'request') {
        firstId = init.message.id;
        if (batch) throw new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, 'Invalid Request: initialize cannot be batched');
        if (headers[SESSION_HEADER] !== undefined) {
          throw new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, 'Bad Request: initialize must not carry a session id');
        }
        const { sessionId, response } = await engine.initialize(principal, init.message, traceId);
        if (sessionId !== undefined && res.closed) {
          // The agent hung up while the upstreams were connected: it never learns the id, so nobody could use or end the
          // session, which would hold its upstream sessions (stdio processes too) and a place under the principal's
          // session cap until it idled out. It ends now.
          const record = await engine.session(sessionId, principal);
          if (record !== undefined) await engine.end(record, traceId);
          return;
        }
        if (sessionId !== undefined && isRevoked(principal)) {
          // Refused while the upstreams were connected (its key revoked, its client disabled, its tenant suspended): the
          // reload that refused it ended the principal's sessions before this one's record was stored, and it would be
          // served again once the principal were accepted again (found by review). Ended, and the agent told 401.
          try {
            const record = await engine.session(sessionId, principal);
            if (record !== undefined) await engine.end(record, traceId);
          } catch (error) {
            // The store out of reach: the id is never handed out, and the record's idle timeout ends it.
            logger.warn({ err: error, traceId }, 'session of a principal refused during its initialize not ended');
          }
          throw unauthenticated();
        }
        const extra: Record<string, string> = sessionId ? { 'mcp-session-id': sessionId } : {};
        // A refused initialize: over a rate limit → 429 + Retry-After; a fail-closed tenant whose calls cannot be
        // audited or rate-checked right now → 503; refused by the tenant's policy → 403; the gateway's own failure →
        // 500 (never a 4xx that would blame the agent); a malformed initialize → 400.
        let status = 200;
        if ('error' in response) {
          const retryAfter = rateLimitedRetryAfter(response);
          if (retryAfter !== undefined) extra['retry-after'] = retryAfter;
          status = retryAfter !== undefined ? 429 : (INITIALIZE_ERROR_STATUS.get(response.error.code) ?? 400);
          // Unavailable for now (the session store out of reach, a fail-closed tenant's audit or limits): when to retry.
          if (status === 503) extra['retry-after'] = '1';
        }
        writeJson(res, status, extra, JSON.stringify(response));
        return;
      }
      const record = await sessionOf(headers, principal);
      // Once more after the session lookup's round trip: nothing is awaited from here until the POST is tracked.
      refuseIfRevoked(principal);
      const version = requestProtocolVersion(headers['mcp-protocol-version']);
      if (!version.ok) throw new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, 'Bad Request: unsupported MCP-Protocol-Version');
      // Batches are a property of the protocol the session negotiated, whatever header a request carries (or lacks).
      if (batch && !allowsBatches(record.protocolVersion)) {
        throw new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, 'Invalid Request: batches are not supported in this protocol version');
      }

      const requests = [];
      const refused: JsonRpcResponse[] = [];
      const cancelled = batch ? cancelledInBatch(items) : NONE_CANCELLED;
      let cancelledHere = false;
      for (const item of items) {
        if (item.kind === 'notification') {
          engine.notification(record, item.message);
          // A request the agent cancels gets no answer: not a withdrawn one either.
          if (item.message.method === 'notifications/cancelled' && openPosts.size > 0) forgetCancelled(record.id, item.message.params?.['requestId']);
        }
        else if (item.kind === 'response') engine.answer(record, item.message);
        else if (item.kind === 'request') {
          if (!cancelled.has(item.message.id)) requests.push(item.message);
          else cancelledHere = true;
        } else {
          const { code, message } = invalidMessageError(item);
          refused.push(rpcError(item.id, code, message, traceId));
          endRelayedWith(record, item);
        }
      }
      if (requests.length === 0 && refused.length === 0) {
        // Input holding a request is answered with JSON or a stream, never 202 (MCP): every request of the batch cancelled
        // by the batch itself, an empty stream, as for a single request its agent cancelled (found by review).
        if (cancelledHere) {
          new PostResponder(res, record.id).abandon();
          return;
        }
        res.writeHead(202, { 'content-length': '0' });
        res.end();
        return;
      }
      responder = new PostResponder(res, record.id, { replay: options.replay, logger, traceId, prime: primesStreams(record.protocolVersion), quiet, requests, streams: engine.postStreams });
      if (!batch) {
        const only = requests[0];
        if (!only) return;
        answeringId = only.id;
        // The agent hanging up does not cancel its request: the transport (2025-03-26 to 2025-11-25) says a disconnection
        // is no cancellation, which the agent sends as `notifications/cancelled`. The call runs on within its timeout, and
        // an agent holding an event id picks up the rest with Last-Event-ID. (Before, a hang-up with nothing streamed yet
        // cancelled it upstream: a network cut stopped a tool half-way through what it was doing.)
        // Gone already (while the session was looked up): nothing was started for it, and nothing is.
        if (res.closed) return;
        openPost(responder, record.id, principal, [only.id], false, refused);
        const response = await engine.request(record, only, responder, traceId, input.ip, principal.credentialId);
        if (unanswerable(response)) responder.abandon();
        else responder.finish(withheldIfRevoked(responder, principal, response));
      } else {
        if (res.closed) return; // gone already, as above
        const post = openPost(responder, record.id, principal, requests.map((message) => message.id), true, refused);
        // The batch's calls answer in its one response, so they have no stream of their own; withdrawn with the POST,
        // nothing more of them reaches the agent (an upstream's question is refused, not sent to the session's stream).
        const sink: MessageSink = post === undefined ? NO_STREAM : { canStream: false, send: () => false, get withdrawn() { return post.withdrawn; } };
        const responses: JsonRpcResponse[] = await Promise.all(
          requests.map((message) =>
            engine.request(record, message, sink, traceId, input.ip, principal.credentialId).then((response) => {
              // Cancelled by the agent: no answer, withdrawn or not.
              if (post !== undefined && unanswerable(response)) post.pending.delete(message.id);
              return response;
            }),
          ),
        );
        const answered = [...refused, ...responses.filter((response) => !unanswerable(response)).map((response) => withheldIfRevoked(responder as PostResponder, principal, response))];
        if (answered.length > 0) responder.finish(answered);
        else responder.abandon();
      }
    } catch (error) {
      if (error instanceof GatewayHttpError) {
        writeError(res, error, firstId, traceId);
        return;
      }
      const status = (error as { statusCode?: unknown } | null)?.statusCode;
      if (typeof status === 'number' && status >= 400 && status < 500) {
        // A client error raised below (as the route's error handler answered it before this path existed).
        writeError(res, new GatewayHttpError(status, JSON_RPC.INVALID_REQUEST, 'Bad request'), firstId, traceId);
        return;
      }
      errorId = randomBytes(8).toString('hex');
      logger.error({ err: error, traceId, errorId }, 'unexpected error in the MCP routes');
      // A stream is answered below; other sent headers leave only a cut.
      if (responder?.streaming && answeringId !== undefined) return;
      if (res.headersSent) res.destroy();
      else writeJson(res, 500, {}, JSON.stringify(rpcError(null, JSON_RPC.INTERNAL_ERROR, 'Internal error', traceId, { errorId })));
    } finally {
      if (responder !== undefined && openPosts.size > 0) closePost(responder);
      // Answered: nothing to do. A stream that failed before its answer gets an error as its last event (logged, so an
      // agent resuming it learns the outcome); anything else is released (no more keep-alives; a stream is cut).
      if (responder?.streaming && answeringId !== undefined) {
        responder.finish(rpcError(answeringId, JSON_RPC.INTERNAL_ERROR, 'Internal error', traceId, errorId === undefined ? undefined : { errorId }));
      }
      responder?.release();
      active -= 1;
    }
  }

  let closing = false;
  /** POSTs (Streamable HTTP and legacy) being handled: a graceful shutdown waits for them. */
  let active = 0;
  const shuttingDown = () => new GatewayHttpError(503, GATEWAY_RPC.UNAVAILABLE, 'The gateway is shutting down; try again', { connection: 'close' });
  const clientAddress = clientAddressOf(options.trustProxy ?? false);
  /**
   * The hot path without the framework: `POST /t/<tenant>/mcp` is read and answered straight off Node's
   * server (body limit, trace id, client address as Fastify would give them), skipping routing, hooks and reply
   * objects. Anything else — other methods and paths, odd URL shapes — returns false and goes to Fastify.
   */
  const fastPost = (req: IncomingMessage, res: ServerResponse): boolean => {
    if (req.method !== 'POST') return false;
    const match = MCP_POST_PATH.exec(req.url ?? '');
    const encoded = match?.[1];
    // Longer than the router's parameter limit: Fastify's router refuses it (its `frameworkErrors`: 404 problem+json).
    if (encoded === undefined || encoded.length > MAX_TENANT_SEGMENT) return false;
    let tenant: string;
    try {
      tenant = decodeURIComponent(encoded);
    } catch {
      return false; // Fastify's router refuses a malformed escape (its `frameworkErrors`: 400 problem+json).
    }
    // Read once: IncomingMessage.headers is a getter, and a megamorphic property load on every use.
    const headers = req.headers;
    const traceId = traceIdOfHeaders(headers);
    const tooLarge = () => {
      res.setHeader('connection', 'close');
      writeError(res, new GatewayHttpError(413, GATEWAY_RPC.PAYLOAD_TOO_LARGE, 'Request body too large'), null, traceId);
      discardBody(req, options.bodyLimitBytes);
    };
    const limit = options.bodyLimitBytes;
    const declaredTooLarge = Number(headers['content-length']) > limit;
    // Origin/Host first, as on every route: a refused one is answered so (a body announced too large is not read, the
    // connection closes), and an allowed one's CORS headers go on every answer from here, a 413 included, so that a
    // browser client can read it.
    const problem = originProblem(req.url, headers.host, headers.origin, options.origin);
    if (problem) {
      if (declaredTooLarge) res.setHeader('connection', 'close');
      writeError(res, new GatewayHttpError(403, GATEWAY_RPC.FORBIDDEN, problem), null, traceId);
      discardBody(req, options.bodyLimitBytes);
      return true;
    }
    allowOrigin(res, headers.origin);
    if (declaredTooLarge) {
      tooLarge();
      return true;
    }
    // The credential before reading a byte of the body: nobody unauthenticated gets megabytes buffered. An
    // authenticator that must wait is waited for before the body is read too; one that fails unexpectedly is answered
    // in handlePost (its 500).
    let principal: Principal | undefined;
    let authentication: Promise<AuthOutcome> | undefined;
    try {
      const outcome = authenticator.authenticate(headers.authorization, tenant);
      if (outcome instanceof Promise) {
        authentication = outcome;
        outcome.catch(() => undefined); // handled where it is awaited
      } else if (!outcome.ok) throw authFailure(outcome.reason);
      else principal = outcome.principal;
    } catch (error) {
      if (error instanceof GatewayHttpError) {
        // The body is not wanted: read and dropped (bounded by the request timeout), so the client gets this answer
        // rather than a reset mid-upload, and the connection stays usable.
        writeError(res, error, null, traceId);
        discardBody(req, options.bodyLimitBytes);
        return true;
      }
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        req.off('end', onEnd);
        tooLarge();
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      const bytes = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
      // Read as UTF-8, bytes that are not would become U+FFFD: the upstream would get other text than the agent sent.
      if (!isUtf8(bytes) && isJsonContentType(headers['content-type']) && !hasContentCoding(headers['content-encoding'])) {
        writeError(res, notUtf8(), null, traceId);
        return;
      }
      void handlePost({ tenant, headers, body: bytes.toString('utf8'), ip: clientAddress(req), traceId, principal, authentication }, res);
    };
    const read = () => {
      req.on('data', onData);
      req.on('end', onEnd);
      req.on('error', () => res.destroy());
    };
    if (authentication === undefined) {
      read();
      return true;
    }
    // The body waits in the socket (nothing reads it) until the credential is known.
    authentication.then(
      (outcome) => {
        if (outcome.ok) {
          principal = outcome.principal;
          authentication = undefined;
          read();
          return;
        }
        writeError(res, authFailure(outcome.reason), null, traceId);
        discardBody(req, options.bodyLimitBytes);
      },
      () => read(),
    );
    return true;
  };

  // Put the fast path in front of Fastify's handler: the server's only 'request' listener becomes a dispatcher
  // that tries it first (Fastify registers its handler when the instance is created, before any route).
  const server = app.server;
  const frameworkHandlers = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  if (options.rawFastPath !== false) {
    const framework = frameworkHandlers.length === 1 ? frameworkHandlers[0] : undefined;
    if (framework) {
      server.removeAllListeners('request');
      server.on('request', (req: IncomingMessage, res: ServerResponse) => {
        if (!fastPost(req, res)) framework(req, res);
      });
    } else {
      // Still correct (the Fastify route serves MCP POSTs), only slower: say so rather than guess at the listeners.
      logger.warn({ listeners: frameworkHandlers.length }, 'MCP POST fast path not installed: the HTTP server does not have exactly one request listener');
    }
  }

  await app.register(async (scope) => {
    // Hot path: the request id is the trace id (one id per request, not a UUID and a trace id), and
    // requests get the scope's logger rather than a pino child each; the handlers log with traceId.
    scope.setGenReqId((req) => traceIdOfHeaders(req.headers));
    // Browser clients from an allowed origin read every answer of these routes (errors included); others get none.
    scope.addHook('onRequest', (request, reply, done) => {
      if (request.headers.origin !== undefined && originProblem(request.raw.url, request.headers.host, request.headers.origin, options.origin) === undefined) {
        allowOrigin(reply.raw, request.headers.origin);
      }
      done();
    });
    scope.setChildLoggerFactory((parent) => parent);
    // Keep the body as text: parsing it ourselves lets bad JSON answer -32700, not a framework error.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: options.bodyLimitBytes }, (request, body: Buffer, done) => {
      // Another content type is refused by the handler (415) before its body is looked at.
      // Nor is one in a content coding (415), nor a body in a coding.
      if (isUtf8(body) || !isJsonContentType(request.headers['content-type']) || hasContentCoding(request.headers['content-encoding'])) done(null, body.toString('utf8'));
      else done(Object.assign(new Error('the body is not valid UTF-8'), { statusCode: 400, code: NOT_UTF8 }), undefined);
    });
    scope.setErrorHandler((error: { statusCode?: number; code?: string }, request, reply) => {
      const traceId = traceIdOf(request);
      if (error.statusCode === 413 || error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        sendError(reply, new GatewayHttpError(413, GATEWAY_RPC.PAYLOAD_TOO_LARGE, 'Request body too large'), null, traceId);
        return;
      }
      if (error.code === NOT_UTF8) {
        sendError(reply, notUtf8(), null, traceId);
        return;
      }
      if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
        sendError(reply, new GatewayHttpError(error.statusCode, JSON_RPC.INVALID_REQUEST, 'Bad request'), null, traceId);
        return;
      }
      const errorId = randomBytes(8).toString('hex');
      logger.error({ err: error, traceId, errorId }, 'unexpected error in the MCP routes');
      void reply.code(500).header('content-type', 'application/json').send(JSON.stringify(rpcError(null, JSON_RPC.INTERNAL_ERROR, 'Internal error', traceId, { errorId })));
    });

    /** Origin/Host, then authentication; throws GatewayHttpError. */
    const admit = (request: FastifyRequest<{ Params: { tenant: string } }>) => admitHeaders(request.raw.url, request.headers, request.params.tenant);

    /**
     * Routes that take a body admit the caller in `onRequest`, before Fastify reads a byte of it (as the raw POST path
     * does): nobody unauthenticated gets megabytes buffered. The handler picks the principal up from here.
     */
    const admitted = new WeakMap<FastifyRequest, Principal>();
    const admitBeforeBody = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
      try {
        admitted.set(request, await admit(request as FastifyRequest<{ Params: { tenant: string } }>));
      } catch (error) {
        if (!(error instanceof GatewayHttpError)) throw error;
        sendError(reply, error, null, traceIdOf(request));
        // Its body, unread, is drained as the raw path drains a refused one: up to the limit (re-review: these routes
        // left it to Node, which read a chunked body without bound).
        discardBody(request.raw, options.bodyLimitBytes);
      }
    };
    const admittedPrincipal = (request: FastifyRequest): Principal => {
      const principal = admitted.get(request);
      // Only reached when the hook admitted the request (a refused one is answered there).
      if (principal === undefined) throw unauthenticated();
      return principal;
    };

    const sessionFrom = (request: FastifyRequest, principal: Principal): Promise<SessionRecord> => sessionOf(request.headers, principal);

    type TenantRequest = FastifyRequest<{ Params: { tenant: string } }>;

    /** A route whose caller mistakes (GatewayHttpError) are answered as JSON-RPC errors; anything else goes to Fastify's handler. */
    const answering =
      <R extends FastifyRequest>(handler: (request: R, reply: FastifyReply, traceId: string) => Promise<FastifyReply>) =>
      async (request: R, reply: FastifyReply): Promise<FastifyReply> => {
        const traceId = traceIdOf(request);
        try {
          return await handler(request, reply, traceId);
        } catch (error) {
          if (!(error instanceof GatewayHttpError)) throw error;
          sendError(reply, error, null, traceId);
          return reply;
        }
      };

    scope.post('/t/:tenant/mcp', { onRequest: admitBeforeBody }, async (request: TenantRequest, reply) => {
      // Requests normally arrive through the raw fast path below; this route serves what it leaves to Fastify
      // (odd URL shapes the router still takes, `inject`). Both run the same handler on the raw response, and both
      // admit the caller before reading the body.
      reply.hijack();
      const principal = admittedPrincipal(request);
      await handlePost({ tenant: request.params.tenant, headers: request.headers, body: typeof request.body === 'string' ? request.body : '', ip: request.ip, traceId: traceIdOf(request), principal }, reply.raw);
      return reply;
    });

    // A method neither transport defines on one of its endpoints: 405 naming the ones it takes (RFC 9110 §15.5.6),
    // answered in onRequest, before any body is read (one declared closes the connection rather than be drained).
    // HEAD among them: Fastify would run the GET handlers for it (opening a stream whose events the client never
    // receives, and which displaces its real one).
    const notAllowed = (allow: string) => async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
      if (declaresBody(request.headers)) reply.header('connection', 'close');
      return reply
        .code(405)
        .header('allow', allow)
        .header('content-type', 'application/json')
        .send(JSON.stringify(rpcError(null, JSON_RPC.INVALID_REQUEST, 'Method Not Allowed', traceIdOf(request))));
    };
    /** Every method the router takes (TRACE and QUERY among them), less those the endpoint serves and OPTIONS. */
    const refuseMethods = (url: string, served: readonly string[]) => {
      const refuse = notAllowed(served.join(', '));
      const methods = scope.supportedMethods.filter((method) => method !== 'OPTIONS' && !served.includes(method)) as HTTPMethods[];
      scope.route({ method: methods, url, onRequest: refuse, handler: refuse });
    };
    refuseMethods('/t/:tenant/mcp', ['GET', 'POST', 'DELETE']);
    refuseMethods('/t/:tenant/sse', ['GET']);
    refuseMethods('/t/:tenant/messages', ['POST']);

    // CORS preflight of a browser client: allowed origins (GATEWAY_ALLOWED_ORIGINS) get the methods and headers these
    // endpoints take; any other origin, or a Host not allowed, a 403. No credential is needed (browsers send none).
    const preflight = (methods: string) => (request: FastifyRequest, reply: FastifyReply) => {
      const problem = originProblem(request.raw.url, request.headers.host, request.headers.origin, options.origin);
      if (problem) {
        sendError(reply, new GatewayHttpError(403, GATEWAY_RPC.FORBIDDEN, problem), null, traceIdOf(request));
        return;
      }
      void reply
        .code(204)
        .header('allow', methods)
        .header('access-control-allow-methods', methods)
        .header('access-control-allow-headers', CORS_REQUEST_HEADERS)
        .header('access-control-max-age', '600')
        .send();
    };
    // A preflight has no body and no credential: one that declares a body is refused before it is read (Fastify would
    // otherwise buffer up to the body limit for anyone).
    const noBody = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
      if (!declaresBody(request.headers)) return;
      reply.header('connection', 'close');
      sendError(reply, new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, 'Bad Request: a preflight request has no body'), null, traceIdOf(request));
    };
    scope.options('/t/:tenant/mcp', { onRequest: noBody }, preflight('GET, POST, DELETE'));
    scope.options('/t/:tenant/sse', { onRequest: noBody }, preflight('GET'));
    scope.options('/t/:tenant/messages', { onRequest: noBody }, preflight('POST'));

    scope.get(
      '/t/:tenant/mcp',
      { exposeHeadRoute: false },
      answering(async (request: TenantRequest, reply, traceId) => {
        if (closing) throw shuttingDown();
        const principal = await admit(request);
        if (!acceptsEventStream(request.headers.accept)) {
          throw new GatewayHttpError(406, GATEWAY_RPC.NOT_ACCEPTABLE, 'Not Acceptable: the client must accept text/event-stream');
        }
        const record = await sessionFrom(request, principal);
        const version = requestProtocolVersion(request.headers['mcp-protocol-version']);
        if (!version.ok) throw new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, 'Bad Request: unsupported MCP-Protocol-Version');
        // Resuming the stream of a POST: what the agent missed, then the rest live until the response. One whose
        // response was sent, or that this session has no log of (expired, another session's), has nothing left to
        // resume: 405, on which the SDK client stops resuming it. Not a stream: closed at once, the client reconnects
        // again and again; kept as the session's standalone stream, it closed the agent's own one, which reconnected
        // and closed this one in turn, once a second for as long as the session lived (an SDK client resumes a POST
        // stream that ended with an error answer). The replay log unreachable: 503, try again.
        const lastEventId = parseEventId(headerOf(request, 'last-event-id'));
        const replay = options.replay;
        let unreachable = false;
        const readLog = () =>
          lastEventId && replay
            ? replay.read(record.id, lastEventId.streamId, lastEventId.seq).catch(() => {
                unreachable = true;
                return undefined;
              })
            : Promise.resolve(undefined);
        // A standalone stream's log is read once the new stream is attached (below), so nothing sent in between is lost.
        let replayed = lastEventId?.kind === 'p' ? await readLog() : undefined;
        // An empty entry ends a stream whose request the agent cancelled (no answer): nothing to resume for.
        const anything = (entries: readonly ReplayEntry[]) => entries.some((entry) => entry.data !== '');
        let resumePost =
          lastEventId?.kind === 'p' &&
          replayed !== undefined &&
          (anything(replayed) ||
            !(await (replay?.finished(record.id, lastEventId.streamId) ?? Promise.resolve(true)).catch(() => {
              unreachable = true;
              return true;
            })));
        if (lastEventId?.kind === 'p' && replayed !== undefined && !resumePost) {
          // Nothing to replay and the stream over: the agent has its answer, unless the answer was logged between the
          // read and the look at the stream's end (a replica finishing the call just then). Read once more: a logged
          // answer stays, so what comes now is the agent's.
          const again = await readLog();
          if (again !== undefined && anything(again)) {
            replayed = again;
            resumePost = true;
          }
        }
        if (lastEventId?.kind === 'p' && !resumePost) {
          if (unreachable) throw new GatewayHttpError(503, GATEWAY_RPC.UNAVAILABLE, 'The stream cannot be resumed just now; try again shortly', { 'retry-after': '1' });
          throw new GatewayHttpError(405, JSON_RPC.INVALID_REQUEST, 'Method Not Allowed: nothing is left to resume on this stream (its answer was sent, or it is unknown)', { allow: 'POST, DELETE' });
        }
        // A standalone stream another GET of the session took the place of (a second client on the session): 409, on
        // which the SDK client stops after its retries. Taking the place back instead closed the other client's stream,
        // which reconnected in turn, each evicting the other once a second for as long as both ran.
        if (lastEventId?.kind === 's' && (await replay?.replaced?.(record.id, lastEventId.streamId).catch(() => false)) === true) {
          throw new GatewayHttpError(409, JSON_RPC.INVALID_REQUEST, 'Conflict: another stream of this session took the place of the one being resumed');
        }
        if (resumePost && (resumedStreams.get(record.id) ?? 0) >= MAX_RESUMED_STREAMS_PER_SESSION) {
          throw new GatewayHttpError(429, GATEWAY_RPC.RATE_LIMITED, `Too many resumed streams open for this session (at most ${MAX_RESUMED_STREAMS_PER_SESSION})`, { 'retry-after': '1' });
        }
        if (getStreams >= maxGetStreams) {
          throw new GatewayHttpError(503, GATEWAY_RPC.UNAVAILABLE, 'Too many SSE streams open on this gateway; try again shortly', { 'retry-after': '5' });
        }
        const owner = principalKey(principal);
        if ((getStreamsPerPrincipal.get(owner) ?? 0) >= maxGetStreamsPerPrincipal) {
          throw new GatewayHttpError(429, GATEWAY_RPC.RATE_LIMITED, `Too many SSE streams open for this client (at most ${maxGetStreamsPerPrincipal})`, { 'retry-after': '5' });
        }
        if ((getStreamsPerTenant.get(principal.tenantId) ?? 0) >= maxGetStreamsPerTenant) {
          throw new GatewayHttpError(429, GATEWAY_RPC.RATE_LIMITED, `Too many SSE streams open for this tenant (at most ${maxGetStreamsPerTenant})`, { 'retry-after': '5' });
        }
        refuseIfRevoked(principal);
        reply.hijack();
        // The client went while the session and replay log were looked up: no stream for it (attached, it would
        // displace the session's real standalone stream).
        if (reply.raw.closed) return reply;
        getStreams += 1;
        count(getStreamsPerPrincipal, owner, 1);
        count(getStreamsPerTenant, principal.tenantId, 1);
        reply.raw.once('close', () => {
          getStreams -= 1;
          count(getStreamsPerPrincipal, owner, -1);
          count(getStreamsPerTenant, principal.tenantId, -1);
        });
        const headers = { 'mcp-session-id': record.id };
        if (resumePost && lastEventId && replayed) {
          resumePostStream(reply.raw, headers, record, lastEventId.streamId, lastEventId.seq, replayed, principal, traceId);
          return reply;
        }
        // A new standalone stream. After a standalone stream's Last-Event-ID, what it missed comes first: read once this
        // stream is the session's (attached, so the older one, if parked here, stops taking messages), with what is sent
        // to it meanwhile held back until then. An id that is unknown, expired or of another session replays nothing.
        const id = newStreamId('s');
        const prime = primesStreams(record.protocolVersion);
        const asked = lastEventId?.kind === 's' && replay !== undefined ? lastEventId : undefined;
        // The stream the agent resumes was resumed here already by the session's current stream, of which the agent got
        // no event id: that stream is what it resumes, from its start.
        const chained = asked === undefined ? undefined : engine.standaloneResuming(record.id, asked.streamId);
        const resumed = asked === undefined || chained === undefined ? asked : { ...asked, streamId: chained, seq: 0 };
        const log = replay?.open(record.id, id);
        const stream = track(new EventStream(reply.raw, headers, options.keepAliveMs, log, id, logger, prime && resumed === undefined, resumed !== undefined), principal);
        const detach = engine.attachStandalone(record, stream, resumed?.streamId, asked?.streamId);
        // The agent's connection lost (not ended here): the stream stays the session's for a while, logging what comes,
        // so a reconnect with its last event id gets those messages too (ADR 0007).
        stream.onClose(() => stream.park(STANDALONE_PARK_MS, detach));
        if (resumed !== undefined && replay !== undefined) {
          // What the older stream logged after the agent's last id, up to its end marker: it stops taking messages once
          // this one is announced (at once if it was here; on another replica when the announcement gets there), so
          // nothing comes between the two. Bounded: a replica that never hears of this one (a lost publish), or a log
          // that cannot be read, costs the agent at most STANDALONE_HANDOVER_MS of waiting, and what came after it.
          const missed: ReplayEntry[] = [];
          const stop = new AbortController();
          stream.onClose(() => stop.abort());
          let deadline: NodeJS.Timeout | undefined;
          await Promise.race([
            replay.follow(record.id, resumed.streamId, resumed.seq, (entry) => missed.push(entry), stop.signal).catch(() => 'gone'),
            new Promise((resolve) => {
              deadline = setTimeout(resolve, STANDALONE_HANDOVER_MS);
              deadline.unref();
            }),
          ]);
          clearTimeout(deadline);
          stop.abort();
          stream.resumeAfter(missed, prime);
        }
        return reply;
      }),
    );

    scope.delete<{ Params: { tenant: string } }>(
      '/t/:tenant/mcp',
      { onRequest: admitBeforeBody },
      answering(async (request: TenantRequest, reply, traceId) => {
        const principal = admittedPrincipal(request);
        const record = await sessionFrom(request, principal);
        if (!requestProtocolVersion(request.headers['mcp-protocol-version']).ok) {
          throw new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, 'Bad Request: unsupported MCP-Protocol-Version');
        }
        try {
          await engine.end(record, traceId);
        } catch (error) {
          if (!(error instanceof SessionNotEndedError)) throw error;
          // The session store out of reach: the session goes on, and the agent may try again (not a 500: nothing was wrong
          // with the request, and nothing was ended).
          logger.warn({ err: error.cause, traceId }, 'session not ended: the session store failed');
          throw new GatewayHttpError(503, GATEWAY_RPC.UNAVAILABLE, 'The session could not be ended right now; try again shortly', { 'retry-after': '1' });
        }
        void reply.code(200).send();
        return reply;
      }),
    );

    // ------------------------------------------------------------ legacy HTTP+SSE (2024-11-05 clients)

    scope.get(
      '/t/:tenant/sse',
      { exposeHeadRoute: false },
      answering(async (request: TenantRequest, reply, traceId) => {
        if (closing) throw shuttingDown();
        const principal = await admit(request);
        if (!acceptsEventStream(request.headers.accept)) {
          throw new GatewayHttpError(406, GATEWAY_RPC.NOT_ACCEPTABLE, 'Not Acceptable: the client must accept text/event-stream');
        }
        if (legacy.size >= maxLegacyStreams) {
          throw new GatewayHttpError(503, GATEWAY_RPC.UNAVAILABLE, 'Too many legacy SSE streams open on this gateway; try again shortly', { 'retry-after': '5' });
        }
        const owner = principalKey(principal);
        if ((legacyPerPrincipal.get(owner) ?? 0) >= maxLegacyPerPrincipal) {
          throw new GatewayHttpError(429, GATEWAY_RPC.RATE_LIMITED, `Too many legacy SSE streams open for this client (at most ${maxLegacyPerPrincipal})`, { 'retry-after': '5' });
        }
        if ((legacyPerTenant.get(principal.tenantId) ?? 0) >= maxLegacyPerTenant) {
          throw new GatewayHttpError(429, GATEWAY_RPC.RATE_LIMITED, `Too many legacy SSE streams open for this tenant (at most ${maxLegacyPerTenant})`, { 'retry-after': '5' });
        }
        const sessionId = newSessionId();
        refuseIfRevoked(principal);
        reply.hijack();
        const stream = track(new EventStream(reply.raw, {}, options.keepAliveMs, undefined, undefined, logger), principal);
        const entry: LegacyStream = { principal, stream, record: undefined, initializing: false, inFlight: 0 };
        legacy.set(sessionId, entry);
        count(legacyPerPrincipal, owner, 1);
        count(legacyPerTenant, principal.tenantId, 1);
        // A stream whose session never initialises is closed: nothing else would (the session's idle timeout starts
        // with initialize, and the keep-alives hold proxies open). An initialize under way is waited for, and looked at
        // again: one that fails leaves the stream as uninitialised as before.
        const closeIfUninitialised = () => {
          if (entry.record) return;
          if (entry.initializing) {
            uninitialised = setTimeout(closeIfUninitialised, legacyInitMs);
            uninitialised.unref();
            return;
          }
          stream.close();
        };
        let uninitialised = setTimeout(closeIfUninitialised, legacyInitMs);
        uninitialised.unref();
        stream.onClose(() => {
          clearTimeout(uninitialised);
          legacy.delete(sessionId);
          count(legacyPerPrincipal, owner, -1);
          count(legacyPerTenant, principal.tenantId, -1);
          if (entry.record) void engine.end(entry.record, traceId).catch(() => undefined);
        });
        stream.event('endpoint', `/t/${encodeURIComponent(request.params.tenant)}/messages?sessionId=${sessionId}`);
        return reply;
      }),
    );

    scope.post<{ Params: { tenant: string }; Querystring: { sessionId?: string } }>(
      '/t/:tenant/messages',
      { onRequest: admitBeforeBody },
      answering(async (request: FastifyRequest<{ Params: { tenant: string }; Querystring: { sessionId?: string } }>, reply, traceId) => {
        const principal = admittedPrincipal(request);
        if (!isJsonContentType(request.headers['content-type'])) {
          throw new GatewayHttpError(415, GATEWAY_RPC.UNSUPPORTED_MEDIA_TYPE, 'Unsupported Media Type: Content-Type must be application/json');
        }
        if (hasContentCoding(request.headers['content-encoding'])) throw encodedBody();
        // Authenticated from the headers, before the body came: a key revoked meanwhile runs nothing.
        refuseIfRevoked(principal);
        const sessionId = request.query.sessionId;
        if (typeof sessionId !== 'string') throw new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, 'Bad Request: sessionId is required');
        const entry = legacy.get(sessionId);
        const owner = entry?.principal;
        // Legacy SSE sessions live on the replica holding the stream (see ADR 0007).
        if (!entry || !owner || owner.tenantId !== principal.tenantId || owner.kind !== principal.kind || owner.id !== principal.id) {
          throw unknownSession();
        }
        let parsed: unknown;
        try {
          parsed = JSON.parse(typeof request.body === 'string' ? request.body : '');
        } catch {
          throw new GatewayHttpError(400, JSON_RPC.PARSE_ERROR, 'Parse error');
        }
        if (Array.isArray(parsed)) {
          // As on Streamable HTTP, batches are the negotiated protocol's (2025-03-26 only): a session that chose it on
          // this transport must be able to send them (that version: MUST support receiving batches).
          if (!entry.record || !allowsBatches(entry.record.protocolVersion)) {
            throw new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, 'Invalid Request: batches are not supported in this protocol version');
          }
          refuseBatchSize(parsed);
          const inexact = inexactNumbersByElement(request.body as string);
          const items = parsed.map((value, index) => refuseInexact(classify(value), inexact?.get(index)));
          if (items.some((one) => one.kind === 'request' && one.message.method === 'initialize')) {
            throw new GatewayHttpError(400, JSON_RPC.INVALID_REQUEST, 'Invalid Request: initialize cannot be batched');
          }
          const requests = items.filter((one) => one.kind === 'request').length;
          if (closing && requests > 0) throw shuttingDown();
          if (requests > 0 && entry.inFlight + requests > MAX_LEGACY_IN_FLIGHT) throw tooManyInFlight();
          void reply.code(202).header('content-type', 'text/plain').send('Accepted');
          active += 1;
          entry.inFlight += requests;
          void handleLegacyBatch(entry, sessionId, items, principal, traceId, request.ip).finally(() => {
            active -= 1;
            entry.inFlight -= requests;
          });
          return reply;
        }
        const item = refuseInexact(classify(parsed), inexactNumbersByElement(request.body as string)?.get(0));
        if (item.kind === 'invalid') {
          // Answered with the message's id where it has a usable one, as on Streamable HTTP.
          const { code, message } = invalidMessageError(item);
          if (entry.record) endRelayedWith(entry.record, item);
          sendError(reply, new GatewayHttpError(400, code, message), item.id, traceId);
          return reply;
        }
        // As for Streamable HTTP: while shutting down, answers and notifications still go through, new requests not. A
        // refused request is answered with its id (JSON-RPC: null only when the id could not be read).
        const requests = item.kind === 'request' ? 1 : 0;
        if (item.kind === 'request' && (closing || entry.inFlight >= MAX_LEGACY_IN_FLIGHT)) {
          sendError(reply, closing ? shuttingDown() : tooManyInFlight(), item.message.id, traceId);
          return reply;
        }
        void reply.code(202).header('content-type', 'text/plain').send('Accepted');
        active += 1;
        entry.inFlight += requests;
        void handleLegacy(entry, sessionId, item, principal, traceId, request.ip).finally(() => {
          active -= 1;
          entry.inFlight -= requests;
        });
        return reply;
      }),
    );

    /**
     * The legacy session's record, as `sessionOf` looks it up for Streamable HTTP; `unavailable` when the session store
     * cannot be reached (logged as such). The POST was answered 202 already: its requests are answered on the stream
     * with "try again" (-32053), not the "Internal error" an unexpected failure gets, which clients take as final (found
     * by review), and the stream stays open.
     */
    async function legacySession(sessionId: string, principal: Principal, traceId: string): Promise<SessionRecord | undefined | 'unavailable'> {
      try {
        return await engine.session(sessionId, principal);
      } catch (error) {
        logger.warn({ err: error, traceId }, 'legacy session not looked up: the session store failed');
        return 'unavailable';
      }
    }

    const storeUnavailable = (id: JsonRpcId, traceId: string): JsonRpcResponse =>
      rpcError(id, GATEWAY_RPC.UNAVAILABLE, 'The session cannot be looked up right now; try again shortly', traceId, { retryAfterSeconds: 1 });

    /**
     * A batch on an initialised legacy session: its messages are handled together and the answers to its requests go
     * out as one batch on the stream (JSON-RPC 2.0 §6; an invalid element gets its own Invalid Request).
     */
    async function handleLegacyBatch(entry: LegacyStream, sessionId: string, items: readonly Classified[], principal: Principal, traceId: string, clientIp: string): Promise<void> {
      // A request its own batch cancels gets no answer, whatever becomes of the batch.
      const cancelled = cancelledInBatch(items);
      const answered = (item: Classified): item is Classified & { kind: 'request' } => item.kind === 'request' && !cancelled.has(item.message.id);
      try {
        const record = await legacySession(sessionId, principal, traceId);
        if (record === 'unavailable') {
          const answers = items.flatMap((item) => (answered(item) ? [storeUnavailable(item.message.id, traceId)] : []));
          if (answers.length > 0) entry.stream.sendBatch(answers);
          return;
        }
        if (!record) {
          entry.stream.close();
          return;
        }
        // A key revoked during the lookup (its stream closed by the reload meanwhile): nothing of the batch runs.
        if (isRevoked(principal)) return;
        const invalidAnswer = (item: Classified & { kind: 'invalid' }): JsonRpcResponse => {
          const { code, message } = invalidMessageError(item);
          return rpcError(item.id, code, message, traceId);
        };
        const refused = items.flatMap((item) => (item.kind === 'invalid' ? [invalidAnswer(item)] : []));
        for (const item of items) if (item.kind === 'notification' && item.message.method === 'notifications/cancelled') forgetCancelled(record.id, item.message.params?.['requestId']);
        // Withdrawn if its key goes while it runs: the stream may be another key's. Its requests' own messages do not
        // stream (a batch's answer is one message), and once withdrawn their upstreams' questions are refused.
        const post = new LegacyPost(entry.stream, false);
        const requestIds = items.flatMap((item) => (answered(item) ? [item.message.id] : []));
        if (requestIds.length > 0) openPost(post, record.id, principal, requestIds, true, refused);
        try {
          const answers = await Promise.all(
            items.map(async (item): Promise<JsonRpcResponse | undefined> => {
              if (item.kind === 'invalid') {
                endRelayedWith(record, item);
                return invalidAnswer(item);
              }
              if (item.kind === 'notification') engine.notification(record, item.message);
              else if (item.kind === 'response') engine.answer(record, item.message);
              else if (answered(item)) {
                return withheldIfGone(principal, await engine.request(record, item.message, post, traceId, clientIp, principal.credentialId));
              }
              return undefined;
            }),
          );
          post.answer(answers.filter((answer): answer is JsonRpcResponse => answer !== undefined && !unanswerable(answer)), true);
        } finally {
          closePost(post);
        }
      } catch (error) {
        const errorId = randomBytes(8).toString('hex');
        logger.error({ err: error, traceId, errorId }, 'legacy SSE batch failed');
        const failed = items.flatMap((item) => (answered(item) ? [rpcError(item.message.id, JSON_RPC.INTERNAL_ERROR, 'Internal error', traceId, { errorId })] : []));
        if (failed.length > 0) entry.stream.sendBatch(failed);
      }
    }

    async function handleLegacy(entry: LegacyStream, sessionId: string, item: Classified, principal: Principal, traceId: string, clientIp: string): Promise<void> {
      try {
        if (item.kind === 'request' && item.message.method === 'initialize') {
          if (entry.record || entry.initializing) {
            entry.stream.send(rpcError(item.message.id, JSON_RPC.INVALID_REQUEST, 'the session is already initialised', traceId));
            return;
          }
          // Set before the first await: messages are handled concurrently (each POST is answered 202 at once).
          entry.initializing = true;
          try {
            const { response } = await engine.initialize(principal, item.message, traceId, sessionId);
            if ('result' in response) entry.record = await engine.session(sessionId, principal);
            entry.stream.send(response);
          } finally {
            entry.initializing = false;
          }
          // The stream went while the session was being set up: its close saw no session to end, so end it here.
          if (entry.record && !entry.stream.canStream) {
            await engine.end(entry.record, traceId);
            return;
          }
          // The legacy stream is also the session's channel for messages tied to no request (list_changed...).
          if (entry.record) entry.stream.onClose(engine.attachStandalone(entry.record, entry.stream));
          return;
        }
        if (!entry.record) {
          if (item.kind !== 'request') return;
          // Pings are the one request a client may send before initialize is answered, and they are to be answered
          // promptly: not refused while the upstreams are still being connected.
          if (item.message.method === 'ping') entry.stream.send({ jsonrpc: '2.0', id: item.message.id, result: {} });
          else entry.stream.send(rpcError(item.message.id, JSON_RPC.INVALID_REQUEST, 'the session is not initialised', traceId));
          return;
        }
        // Looked up on every message, as a Streamable HTTP request is: that keeps the record's idle TTL moving (this
        // transport has no other per-message session lookup) and notices a session that expired or was ended.
        const record = await legacySession(sessionId, principal, traceId);
        if (record === 'unavailable') {
          if (item.kind === 'request') entry.stream.send(storeUnavailable(item.message.id, traceId));
          return;
        }
        if (!record) {
          if (item.kind === 'request') entry.stream.send(rpcError(item.message.id, GATEWAY_RPC.NOT_FOUND, 'Session not found', traceId));
          entry.stream.close();
          return;
        }
        // A key revoked during the lookup (its stream closed by the reload meanwhile): the message goes nowhere.
        if (isRevoked(principal)) return;
        if (item.kind === 'notification') {
          if (item.message.method === 'notifications/cancelled' && openPosts.size > 0) forgetCancelled(record.id, item.message.params?.['requestId']);
          engine.notification(record, item.message);
        } else if (item.kind === 'response') engine.answer(record, item.message);
        else if (item.kind === 'request') {
          // Its messages go to the session's stream, which may be another key's: withdrawn if this POST's key goes.
          // Before, a call posted with a key revoked while it ran still sent its progress and result to the stream.
          const post = new LegacyPost(entry.stream);
          openPost(post, record.id, principal, [item.message.id], false, []);
          try {
            const response = await engine.request(record, item.message, post, traceId, clientIp, principal.credentialId);
            if (!unanswerable(response)) post.answer([withheldIfGone(principal, response)], false);
          } finally {
            closePost(post);
          }
        }
      } catch (error) {
        // The POST was answered 202 already: a request's answer is due on the stream all the same (JSON-RPC), or the
        // client waits for it until its own timeout. Same words as the Streamable HTTP transport's 500.
        const errorId = randomBytes(8).toString('hex');
        logger.error({ err: error, traceId, errorId }, 'legacy SSE message failed');
        if (item.kind === 'request') entry.stream.send(rpcError(item.message.id, JSON_RPC.INTERNAL_ERROR, 'Internal error', traceId, { errorId }));
      }
    }
  });

  const WRITER_LOST = 'The gateway replica handling this request stopped before answering it; whether the upstream acted on it is unknown';

  function resumePostStream(
    res: ServerResponse,
    headers: Record<string, string>,
    record: SessionRecord,
    streamId: string,
    afterSeq: number,
    replayed: readonly ReplayEntry[],
    principal: Principal,
    traceId: string,
  ): void {
    const stream = track(new EventStream(res, headers, options.keepAliveMs, undefined, undefined, logger), principal);
    // The original response, and an earlier resume of it, stop sending once this one is known (here at once, on other
    // replicas over the bus): each message goes out on one stream.
    const sessionId = record.id;
    const token = randomBytes(8).toString('hex');
    stream.onClose(engine.postStreams.follow(streamId, { sessionId, token, end: () => stream.close() }));
    engine.postStreamResumed(record, streamId, token);
    // Each resumed stream follows the replay log (a Redis connection or a poll): counted per session while open.
    resumedStreams.set(sessionId, (resumedStreams.get(sessionId) ?? 0) + 1);
    stream.onClose(() => {
      const open = (resumedStreams.get(sessionId) ?? 1) - 1;
      if (open > 0) resumedStreams.set(sessionId, open);
      else resumedStreams.delete(sessionId);
    });
    const primes = primesStreams(record.protocolVersion);
    let last = afterSeq;
    for (const entry of replayed) {
      stream.replay(`${streamId}_${entry.seq}`, entry.data, primes);
      last = entry.seq;
      if (entry.final) {
        stream.close();
        return;
      }
    }
    const replay = options.replay;
    if (!replay) return;
    const stop = new AbortController();
    stream.onClose(() => stop.abort());
    const followed = (entry: ReplayEntry) => {
      last = entry.seq;
      stream.replay(`${streamId}_${entry.seq}`, entry.data, primes);
    };
    void replay
      .follow(sessionId, streamId, last, followed, stop.signal)
      .catch(() => 'gone' as const)
      .then(async (outcome) => {
        // The replica answering the stream died (its lease lapsed with no answer logged): the answers will never come,
        // so they are given here, as errors (the agent would otherwise wait for its own timeout). Logged as the stream's
        // last entries, and sent under their ids: a resume from there is told nothing is left (405). Sent without ids,
        // an SDK client (which takes only results as answers) resumed from an older id and met the lost writer again,
        // or from none, which opened a standalone stream in place of the session's own, until the log expired.
        if (outcome === 'lost') {
          const ids = (await replay.pendingRequests(sessionId, streamId).catch(() => undefined)) ?? [];
          logger.warn({ traceId, streamId, requests: ids.length }, 'resumed stream lost: the replica answering it stopped');
          const log = ids.length > 0 ? replay.open(sessionId, streamId, undefined, true) : undefined;
          ids.forEach((id, index) => {
            const data = JSON.stringify(rpcError(id, JSON_RPC.INTERNAL_ERROR, WRITER_LOST, traceId));
            last += 1;
            log?.append(last, data, index === ids.length - 1);
            stream.replay(`${streamId}_${last}`, data);
          });
        }
        stream.close();
      });
  }

  return {
    stopAccepting: () => {
      closing = true;
    },
    get active() {
      return active;
    },
    get openStreams() {
      return streams.size;
    },
    closeStreams: async () => {
      closing = true;
      quiet.close();
      // A legacy session lives as long as its stream: it ends now, its upstream sessions with it. Left to the streams'
      // close events, it ended after the connector had shut down: the record went, the upstream sessions stayed open
      // on their servers, and no replica could end them any more.
      const ending: Promise<unknown>[] = [];
      for (const entry of legacy.values()) {
        const record = entry.record;
        entry.record = undefined;
        if (record !== undefined) ending.push(engine.end(record, 'shutdown').catch(() => undefined));
      }
      for (const stream of streams.keys()) stream.close();
      streams.clear();
      await Promise.all(ending);
    },
    revalidateStreams: () => {
      let ended = 0;
      for (const [stream, principal] of [...streams]) {
        // Closed only for a credential known to be gone: one that cannot be checked right now keeps its stream.
        if (principal.credentialId === undefined || authenticator.stillValid(principal.credentialId, principal) !== false) continue;
        stream.close();
        streams.delete(stream);
        ended += 1;
      }
      // Every POST of such a credential, streaming or not yet: its calls' later messages would make it a stream.
      for (const [responder, post] of [...openPosts]) {
        if (post.principal.credentialId === undefined || authenticator.stillValid(post.principal.credentialId, post.principal) !== false) continue;
        withdrawPost(responder, post);
        ended += 1;
      }
      if (ended > 0) logger.info({ ended }, 'closed SSE streams whose credential is no longer valid');
      return ended;
    },
  };
}
