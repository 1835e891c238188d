import { isReservedUpstreamHeader } from '@portcullis/contracts/api';
import type { ClientRequest, OutgoingHttpHeaders } from 'node:http';
import type {
  ClientIdentity,
  JsonRpcId,
  JsonRpcNotification,
  JsonRpcRequest,
  JsonRpcResponse,
  UpstreamRequestOptions,
  UpstreamServerInfo,
  UpstreamSession,
  UpstreamSessionState,
} from '@portcullis/gateway/mcp';
import { endpointOf, maskResult, maskUpstreamError, MAX_EVENT_ID_CHARS, UpstreamRpcError } from '@portcullis/gateway/mcp';
import { initializeParams, toServerInfo } from '../core/handshake';
import {
  logFields,
  notifyQuietly,
  type DisposableSession,
  type NotificationHandler,
  type SessionContext,
} from '../core/session-base';
import {
  abortAll,
  abortReason,
  answerServerRequest,
  cancelServerRequest,
  encodeCancelled,
  encodeNotification,
  encodeRequest,
  errors,
  isTaskAugmented,
  QUIET_POST_TIMEOUT_MS,
  QuietPosts,
  type ServerRequestHandler,
} from '../core/wire';
import { CallResponse, type CallResponseHandlers } from './call-response';
import { CallHold } from './held-answers';
import { readRefusal, refusesSession } from './session-refusal';
import { consumeEventStream, contentTypeOf, parseMessages } from './event-stream';
import {
  dispatch,
  headerLines,
  isConnectError,
  openStream,
  StatusExchange,
  type HttpTarget,
} from './http-pool';

/**
 * An upstream's configured headers as sent: names the connector owns (`isReservedUpstreamHeader`, refused when
 * configured since; rows from before may hold them) are left out.
 */
export function configuredHeaders(headers: Readonly<Record<string, string>>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name of Object.keys(headers)) {
    if (!isReservedUpstreamHeader(name)) out[name.toLowerCase()] = headers[name];
  }
  return out;
}

/** Failed reconnects of a standalone stream in a row after which it is reported (once), and retried less often. */
const STANDALONE_RETRIES_REPORTED = 5;
/** Reconnect delays of a standalone stream that keeps failing (it is never given up on): doubling from, up to. */
const STANDALONE_BACKOFF_MS = { initial: 500, max: 60_000 };
/** A standalone stream open at least this long counts as working: its end starts the reconnect backoff afresh. */
const STANDALONE_STABLE_MS = 10_000;
/**
 * How long requests wait for the session's first standalone GET to be answered before they go out (see
 * `firstStandalone`).
 */
const FIRST_STANDALONE_WAIT_MS = 1_000;

export interface StreamableHttpContext extends SessionContext {
  readonly target: HttpTarget;
  /** Request ids toward the upstream: unique across this connector (and, by a random base, replicas). */
  readonly nextId: () => number;
  /** See `UpstreamConnectorOptions.standaloneBackoffMs`. */
  readonly standaloneBackoffMs?: { readonly initial: number; readonly max: number };
}

/**
 * One MCP session over Streamable HTTP. Stateless on this side apart from the upstream's session id
 * and protocol version, so any replica can continue it (`resume`). Every message is one POST through
 * the origin's keep-alive pool; the answer is JSON or an SSE stream scoped to that request.
 */
export class StreamableHttpSession implements UpstreamSession, DisposableSession {
  readonly upstreamId: string;
  info: UpstreamServerInfo;
  private sessionId: string | null;
  private protocolVersion: string;
  private postHeaders: OutgoingHttpHeaders;
  /** postHeaders as the flat list that messages are sent with. */
  private postHeaderLines: string[];
  private readonly baseHeaders: OutgoingHttpHeaders;
  private initialized: boolean;
  private closed = false;
  private expired = false;
  private notificationHandler: NotificationHandler | undefined;
  private serverRequestHandler: ServerRequestHandler | undefined;
  private closedHandler: (() => void) | undefined;
  private readonly serverRequests = new Map<JsonRpcId, AbortController>();
  /** Answers and cancellations under way upstream (`QuietPosts`). */
  private readonly quietPosts = new QuietPosts(() =>
    this.ctx.logger.warn(logFields(this.ctx.config), 'upstream sends more requests than it takes answers for; dropping answers'),
  );
  private readonly inFlight = new Set<CallResponse>();
  /**
   * Calls waiting out a `retry` before resuming their stream (SEP-1699), by request id: each settles with the error
   * it is given, or with its answer should the upstream put that on the standalone stream meanwhile.
   */
  private readonly resuming = new Map<
    JsonRpcId,
    { readonly cancel: (error: unknown) => void; readonly answer: (message: JsonRpcResponse) => void; readonly broken: (reason: string) => void }
  >();
  private standalone: ClientRequest | undefined;
  private standaloneState: 'none' | 'connecting' | 'open' | 'unsupported' | 'failed' = 'none';
  /** 409s to the standalone GET since it was last open (another holder of the session has the one stream allowed). */
  private standaloneConflicts = 0;
  private standaloneRetries = 0;
  /** When the standalone stream last opened (200 text/event-stream), until it ends. */
  private standaloneOpenedAt: number | undefined;
  private standaloneTimer: NodeJS.Timeout | undefined;
  private lastEventId: string | undefined;
  /** The `retry` the standalone stream last named, and whether the one that just ended cleanly brought a new event id. */
  private standaloneRetryMs: number | undefined;
  private standaloneProgressed = false;
  /** Whether someone listens for the standalone stream's messages (`listen`): it is open only while so. */
  private listening = false;
  /** Counts the standalone streams stopped (`listen(false)`): a stopped one's late callbacks see another value. */
  private standaloneGeneration = 0;
  /**
   * While the session's first standalone GET is under way (at most FIRST_STANDALONE_WAIT_MS): requests wait for it to
   * be answered. What an upstream sends on that stream about no request (an SDK server's `server.request`, say an
   * elicitation a tool asks for that way) is dropped by it while the stream is not open yet: a call sent on a pooled
   * socket overtook the GET's new connection under load, and its elicitation was lost, the call waiting out its
   * timeout (found by investigating a conformance scenario that failed once under the full suite's load).
   */
  private firstStandalone: { readonly answered: Promise<void>; readonly end: () => void } | undefined;
  private firstStandaloneAsked = false;

  constructor(
    private readonly ctx: StreamableHttpContext,
    state: UpstreamSessionState,
    info: UpstreamServerInfo,
    initialized: boolean,
  ) {
    this.upstreamId = ctx.config.id;
    this.info = info;
    this.sessionId = state.sessionId;
    this.protocolVersion = state.protocolVersion;
    this.initialized = initialized;
    this.baseHeaders = configuredHeaders(ctx.config.headers);
    this.postHeaders = this.buildHeaders();
    this.postHeaderLines = headerLines(this.postHeaders);
    ctx.registry.add(this);
  }

  /** initialize + notifications/initialized, within the upstream's connectTimeoutMs. */
  async handshake(identity: ClientIdentity): Promise<void> {
    const deadline = Date.now() + this.ctx.config.connectTimeoutMs;
    let result: Record<string, unknown>;
    try {
      result = await this.request('initialize', initializeParams(identity), {
        timeoutMs: this.ctx.config.connectTimeoutMs,
      });
    } catch (error) {
      throw isTimeout(error) ? errors.connectTimeout() : error;
    }
    this.info = toServerInfo(result);
    this.protocolVersion = this.info.protocolVersion;
    this.initialized = true;
    this.setHeaders();
    await this.post(
      encodeNotification('notifications/initialized', undefined),
      Math.max(1, deadline - Date.now()),
    );
  }

  state(): UpstreamSessionState {
    const endpoint = endpointOf(this.ctx.config);
    return endpoint === undefined
      ? { sessionId: this.sessionId, protocolVersion: this.protocolVersion }
      : { sessionId: this.sessionId, protocolVersion: this.protocolVersion, endpoint };
  }

  request(
    method: string,
    params: Record<string, unknown> | undefined,
    options?: UpstreamRequestOptions,
  ): Promise<Record<string, unknown>> {
    if (this.closed) return Promise.reject(errors.closed());
    if (this.expired) return Promise.reject(errors.sessionExpired());
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (this.firstStandalone !== undefined && method !== 'initialize') return this.afterFirstStandalone(this.firstStandalone.answered, method, params, options);
    const id = this.ctx.nextId();
    // Before the breaker: params that cannot be written (nested past the stack) throw here, and a call that never went
    // out must not take the half-open probe slot (it kept it for a whole cool-down, refusing every call; found by review).
    const body = encodeRequest(id, method, params);
    const { breaker } = this.ctx;
    if (!breaker.tryPass()) return Promise.reject(errors.circuitOpen());
    const probe = breaker.probe;
    const sentAt = performance.now();
    const adoptSessionId = this.sessionId === null && method === 'initialize';
    // Never `notifications/cancelled` for initialize (MCP), nor for a task-augmented request (tasks/cancel, by the caller).
    const cancellable = method !== 'initialize' && !isTaskAugmented(params);

    return new Promise((resolve, reject) => {
      let settled = false;
      let resumeTimer: NodeJS.Timeout | undefined;
      let cancelResume: ((error: unknown) => void) | undefined;
      let resumesWithoutProgress = 0;
      /** The `retry` the call's streams last named: it holds for later streams that name none (as in EventSource). */
      let retryAfterMs: number | undefined;
      const settle = (error: unknown, result: Record<string, unknown> | undefined): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (resumeTimer !== undefined) clearTimeout(resumeTimer);
        if (cancelResume !== undefined) this.resuming.delete(id);
        if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
        this.inFlight.delete(call);
        // As the half-open probe, a call that ends without a verdict on the upstream's health (given up by its agent, a
        // reset socket) leaves the slot to the next call: held, every call was refused for another whole cool-down
        // (found by review). An answer closed the circuit and a failure reopened it already: this then does nothing.
        if (probe !== 0) breaker.probeEnded(probe);
        if (error === null && result !== undefined) resolve(maskResult(this.ctx.config, result));
        else reject(error instanceof UpstreamRpcError ? maskUpstreamError(this.ctx.config, error) : error);
      };
      const giveUp = (reason: string, error: unknown): void => {
        if (settled) return;
        settle(error, undefined);
        call.abort(error);
        // MCP: only a request that was issued is cancelled. One still queued for a socket never reached the upstream.
        if (cancellable && posted.reachedSocket) this.sendQuietly(encodeCancelled(id, reason));
      };
      const timer = setTimeout(() => {
        breaker.failure(sentAt);
        giveUp('timeout', errors.timeout());
      }, options?.timeoutMs ?? this.ctx.config.callTimeoutMs);
      const onAbort =
        signal === undefined ? undefined : () => giveUp('cancelled by the client', abortReason(signal));
      if (onAbort !== undefined) signal?.addEventListener('abort', onAbort, { once: true });

      const handlers: CallResponseHandlers = {
        maxBytes: this.ctx.maxMessageBytes,
        heldAnswers: this.ctx.heldAnswers,
        tenantId: this.ctx.config.tenantId,
        hasSession: this.sessionId !== null,
        sessionId: adoptSessionId ? (sessionId) => this.adoptSessionId(sessionId) : undefined,
        notification: (notification) => this.deliver(notification, options?.onNotification),
        serverRequest: (request) =>
          this.answer(request, options?.onServerRequest ?? this.serverRequestHandler),
        expired: () => this.markExpired(),
        reachable: (healthy) => (healthy ? breaker.success() : breaker.failure(sentAt)),
        failed: (error) => {
          // No retry on a reset: undici checks an idle pooled socket before reusing it, and a POST
          // that may have arrived is not safe to send twice.
          this.ctx.logger.debug(
            { ...logFields(this.ctx.config), code: error.code },
            'upstream request failed',
          );
          if (isConnectError(error) || error.code === 'EPORTCULLIS_ADDRESS_REFUSED') breaker.failure(sentAt);
          settle(errors.connectFailed(error), undefined);
        },
        settle,
        // MCP: a client that gives up on a request tells the server, which may still be running it (a retry by the
        // agent would otherwise run it twice). Never for initialize.
        abandoned: () => {
          if (cancellable) this.sendQuietly(encodeCancelled(id, 'the response could not be read'));
        },
        // SEP-1699: the upstream closed the call's stream before answering, after giving it an event id. Resumed
        // with a GET from that id after the stream's `retry` delay, within the call's timeout; a stream that closes
        // again without a new event counts against MAX_RESUMES_WITHOUT_PROGRESS.
        resume: (lastEventId, retryMs, progressed) => {
          // A server without sessions may close a primed stream too: resuming needs the event id, not a session.
          if (settled || this.closed || this.expired) return false;
          if (!HEADER_SAFE_EVENT_ID.test(lastEventId)) return false;
          resumesWithoutProgress = progressed ? 0 : resumesWithoutProgress + 1;
          if (resumesWithoutProgress > MAX_RESUMES_WITHOUT_PROGRESS) return false;
          if (retryMs !== undefined) retryAfterMs = retryMs;
          this.inFlight.delete(call);
          // While it waits the call has no exchange in flight: dispose() settles it through `resuming`.
          cancelResume = (error) => settle(error, undefined);
          this.resuming.set(id, {
            cancel: cancelResume,
            answer: (message) => settle(...outcomeOf(message)),
            // The upstream took the call and may still run it: told it was given up, as when its own stream breaks.
            broken: (reason) => giveUp('the response could not be read', errors.protocol(`invalid response: ${reason}`)),
          });
          resumeTimer = setTimeout(
            () => {
              resumeTimer = undefined;
              if (cancelResume !== undefined) this.resuming.delete(id);
              cancelResume = undefined;
              if (settled) return;
              if (this.closed || this.expired) {
                // Not `session_expired` (nothing ran, send it again): the upstream took this call, which may have run.
                settle(this.closed ? errors.closed() : errors.sessionLost(), undefined);
                return;
              }
              call = new CallResponse(id, handlers, lastEventId);
              this.inFlight.add(call);
              dispatch(this.ctx.target, 'GET', this.resumeHeaderLines(lastEventId), undefined, call);
            },
            Math.min(Math.max(retryAfterMs ?? DEFAULT_RESUME_DELAY_MS, MIN_RESUME_DELAY_MS), MAX_RESUME_DELAY_MS),
          );
          return true;
        },
      };
      let call = new CallResponse(id, handlers);
      /** The POST that carried the request (`call` becomes the GET of a resume). */
      const posted = call;
      this.inFlight.add(call);
      dispatch(this.ctx.target, 'POST', this.postHeaderLines, body, call);
    });
  }

  /** `request`, once the session's first standalone GET was answered (`firstStandalone`), or at once if aborted meanwhile. */
  private afterFirstStandalone(
    answered: Promise<void>,
    method: string,
    params: Record<string, unknown> | undefined,
    options: UpstreamRequestOptions | undefined,
  ): Promise<Record<string, unknown>> {
    const signal = options?.signal;
    return new Promise((resolve, reject) => {
      const onAbort = (): void => reject(abortReason(signal as AbortSignal));
      signal?.addEventListener('abort', onAbort, { once: true });
      void answered.then(() => {
        signal?.removeEventListener('abort', onAbort);
        if (signal?.aborted) return;
        // A request that cannot be written (params nested too deeply to serialise) throws: the caller is told, as when
        // it is sent at once, rather than left waiting on a promise nothing settles.
        try {
          this.request(method, params, options).then(resolve, reject);
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  /** A call's answer the upstream put on the standalone stream: the call's, whether its stream is open or to be resumed. */
  private answeredOnStandalone(message: JsonRpcResponse): void {
    const waiting = this.resuming.get(message.id as JsonRpcId);
    if (waiting !== undefined) {
      this.ctx.breaker.success();
      waiting.answer(message);
      return;
    }
    for (const call of this.inFlight) if (call.answeredElsewhere(message)) return;
  }

  /**
   * A malformed answer (its id known) on the standalone stream: the call it answers fails now as a protocol error, as
   * on the call's own stream. Before, it was dropped and the call waited out its timeout (found by review).
   */
  private brokenOnStandalone(id: JsonRpcId, reason: string): void {
    const waiting = this.resuming.get(id);
    if (waiting !== undefined) {
      waiting.broken(reason);
      return;
    }
    for (const call of this.inFlight) if (call.brokenElsewhere(id, reason)) return;
  }

  /** Requests go out again without waiting (`firstStandalone`): the GET was answered, failed or stopped, or took too long. */
  private endFirstStandaloneWait(): void {
    const wait = this.firstStandalone;
    this.firstStandalone = undefined;
    wait?.end();
  }

  /** The headers of a GET that resumes a call's stream from `lastEventId`. */
  private resumeHeaderLines(lastEventId: string): string[] {
    const headers: OutgoingHttpHeaders = { ...this.postHeaders, accept: 'text/event-stream', 'last-event-id': lastEventId };
    delete headers['content-type'];
    return headerLines(headers);
  }

  async notify(method: string, params?: Record<string, unknown>): Promise<void> {
    if (this.closed) throw errors.closed();
    if (this.expired) throw errors.sessionExpired();
    const text = encodeNotification(method, params);
    const { breaker } = this.ctx;
    if (!breaker.tryPass()) throw errors.circuitOpen();
    const probe = breaker.probe;
    try {
      await this.post(text, this.ctx.config.callTimeoutMs);
    } finally {
      // A notification taken (or refused) says nothing of calls being answered: as the half-open probe, it leaves the
      // slot to the next call. Failures (a timeout, 5xx) reopened the circuit already; this then does nothing.
      if (probe !== 0) breaker.probeEnded(probe);
    }
  }

  onNotification(handler: (notification: JsonRpcNotification) => void): void {
    this.notificationHandler = handler;
  }

  /**
   * The standalone GET stream is held only while someone listens for what it carries (the engine: while the agent
   * listens). Held for every session whether or not its agent listened, it took a socket of the upstream's per session
   * and replica, outside the pool's bound (ADR 0007). Stopped, it is asked for again with the last event id it saw, so
   * an upstream that keeps its events replays what came meanwhile. `listen(true)` while waiting out a 409 asks again
   * at once.
   */
  listen(on: boolean): void {
    if (on && this.listening && this.standaloneConflicts > 0 && this.standaloneTimer !== undefined && this.standaloneState === 'none') {
      // Waiting out a 409 (another holder of the session had its one stream), and told it may be free now: asked at once.
      clearTimeout(this.standaloneTimer);
      this.standaloneTimer = undefined;
      this.standaloneState = 'none';
      this.openStandaloneStream();
      return;
    }
    if (on === this.listening) return;
    this.listening = on;
    if (on) {
      this.openStandaloneStream();
      return;
    }
    this.standaloneGeneration += 1;
    this.endFirstStandaloneWait();
    if (this.standaloneTimer !== undefined) clearTimeout(this.standaloneTimer);
    this.standaloneTimer = undefined;
    const stream = this.standalone;
    this.standalone = undefined;
    stream?.destroy();
    // An upstream without the stream (405) or one that refused it for good is not asked again.
    if (this.standaloneState !== 'unsupported' && this.standaloneState !== 'failed') this.standaloneState = 'none';
    this.standaloneRetries = 0;
    this.standaloneConflicts = 0;
    this.standaloneOpenedAt = undefined;
    this.standaloneProgressed = false;
  }

  /** Called once when the upstream forgets this session (404): it cannot be used or resumed any more. */
  onClosed(handler: () => void): void {
    this.closedHandler = handler;
  }

  onServerRequest(
    handler: (request: JsonRpcRequest, signal: AbortSignal) => Promise<Record<string, unknown>>,
  ): void {
    this.serverRequestHandler = handler;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const sessionId = this.sessionId;
    this.dispose();
    if (sessionId === null || this.expired) return;
    await new Promise<void>((resolve) => {
      const exchange = new StatusExchange(() => {
        clearTimeout(timer);
        resolve();
      });
      const timer = setTimeout(() => {
        exchange.abort();
        resolve();
      }, this.ctx.config.connectTimeoutMs);
      dispatch(this.ctx.target, 'DELETE', this.postHeaderLines, undefined, exchange);
    });
  }

  /** Drops everything local without telling the upstream, so another replica can still resume it. */
  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.registry.delete(this);
    this.endFirstStandaloneWait();
    if (this.standaloneTimer !== undefined) clearTimeout(this.standaloneTimer);
    this.standalone?.destroy();
    this.standalone = undefined;
    for (const call of [...this.inFlight]) call.abort(errors.closed());
    this.inFlight.clear();
    for (const { cancel } of [...this.resuming.values()]) cancel(errors.closed());
    this.resuming.clear();
    abortAll(this.serverRequests);
  }

  private buildHeaders(): OutgoingHttpHeaders {
    const headers: OutgoingHttpHeaders = {
      ...this.baseHeaders,
      accept: 'application/json, text/event-stream',
      'content-type': 'application/json',
    };
    if (this.sessionId !== null) headers['mcp-session-id'] = this.sessionId;
    if (this.initialized) headers['mcp-protocol-version'] = this.protocolVersion;
    return headers;
  }

  private setHeaders(): void {
    this.postHeaders = this.buildHeaders();
    this.postHeaderLines = headerLines(this.postHeaders);
  }

  private adoptSessionId(sessionId: string): void {
    this.sessionId = sessionId;
    this.setHeaders();
  }

  private markExpired(): void {
    if (this.expired) return;
    this.expired = true;
    this.ctx.logger.info(logFields(this.ctx.config), 'upstream session expired');
    // Nothing is left to end at shutdown: out of the connector's registry, so a session the gateway drops for a new
    // one is not held (with its handlers, and the agent session they reach) for the life of the process. Calls still
    // in flight on it end with their own 404s.
    this.ctx.registry.delete(this);
    this.endFirstStandaloneWait();
    if (this.standaloneTimer !== undefined) clearTimeout(this.standaloneTimer);
    this.standalone?.destroy();
    const handler = this.closedHandler;
    this.closedHandler = undefined;
    try {
      handler?.();
    } catch (error) {
      this.ctx.logger.warn({ ...logFields(this.ctx.config), err: error }, 'upstream session close handler failed');
    }
  }

  private deliver(notification: JsonRpcNotification, perCall: NotificationHandler | undefined): void {
    if (notification.method === 'notifications/cancelled') {
      cancelServerRequest(notification.params, this.serverRequests);
      return;
    }
    notifyQuietly(perCall ?? this.notificationHandler, notification, this.ctx);
  }

  private answer(request: JsonRpcRequest, handler: ServerRequestHandler | undefined): void {
    answerServerRequest(request, handler, (text) => this.sendQuietly(text), this.serverRequests);
  }

  /** POSTs a notification or a response; resolves on 2xx (202 Accepted, normally). */
  private post(body: string, timeoutMs: number): Promise<void> {
    const sentAt = performance.now();
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (error: unknown): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (error === null) resolve();
        else reject(error);
      };
      const exchange = new StatusExchange((error, status) => {
        if (error !== null) {
          if (isConnectError(error)) this.ctx.breaker.failure(sentAt);
          finish(errors.connectFailed(error));
        } else if (status >= 200 && status < 300) {
          // Not counted as the upstream's health: a server that takes notifications but answers no call (each timed
          // out call's notifications/cancelled got 202) would otherwise reset the failure count after every timeout.
          // Nor does it free the half-open probe's slot: most of these (answers to the upstream's pings, cancellations)
          // never took it, and freed it let every call through (`notify` frees the one it took).
          finish(null);
        } else if (status === 404 && this.sessionId !== null) {
          this.markExpired();
          finish(errors.sessionExpired());
        } else {
          if (status >= 500) this.ctx.breaker.failure(sentAt);
          finish(errors.protocol(`HTTP ${status}`));
        }
      });
      const timer = setTimeout(() => {
        exchange.abort();
        this.ctx.breaker.failure(sentAt);
        finish(errors.timeout());
      }, timeoutMs);
      dispatch(this.ctx.target, 'POST', this.postHeaderLines, body, exchange);
    });
  }

  private sendQuietly(body: string): void {
    if (this.closed || this.expired) return;
    this.quietPosts.send(() =>
      this.post(body, Math.min(this.ctx.config.callTimeoutMs, QUIET_POST_TIMEOUT_MS)).catch((error: unknown) => {
        this.ctx.logger.debug(
          { ...logFields(this.ctx.config), reason: (error as { reason?: string }).reason },
          'could not deliver a message upstream',
        );
      }),
    );
  }

  /**
   * The optional GET stream for messages that belong to no request. Opened while someone listens for
   * them (`listen`); 405 means the upstream has none, which is fine. Reconnects with backoff and Last-Event-ID.
   */
  private openStandaloneStream(): void {
    if (this.closed || this.expired || this.sessionId === null || !this.listening) return;
    if (this.standaloneState !== 'none') return;
    this.standaloneState = 'connecting';
    if (!this.firstStandaloneAsked) {
      this.firstStandaloneAsked = true;
      let resolve!: () => void;
      const answered = new Promise<void>((settle) => (resolve = settle));
      const timer = setTimeout(() => this.endFirstStandaloneWait(), FIRST_STANDALONE_WAIT_MS);
      timer.unref();
      this.firstStandalone = {
        answered,
        end: () => {
          clearTimeout(timer);
          resolve();
        },
      };
    }
    const headers: OutgoingHttpHeaders = { ...this.postHeaders, accept: 'text/event-stream' };
    delete headers['content-type'];
    if (this.lastEventId !== undefined) headers['last-event-id'] = this.lastEventId;
    try {
      this.openStandalone(headers);
    } catch (error) {
      // Runs from a timer: nothing above would catch it. The stream is retried (or given up) like a failed connect.
      this.ctx.logger.warn({ ...logFields(this.ctx.config), err: error }, 'could not open the upstream standalone stream');
      this.retryStandalone();
    }
  }

  private openStandalone(headers: OutgoingHttpHeaders): void {
    // A reset after the response began is reported both by the request and by the response: one reconnect for it.
    let ended = false;
    // A stream stopped since (nobody listens any more) neither reconnects nor takes its place again.
    const generation = this.standaloneGeneration;
    const retry = () => {
      if (ended || generation !== this.standaloneGeneration) return;
      ended = true;
      this.retryStandalone();
    };
    this.standalone = openStream(
      this.ctx.target,
      headers,
      (res) => {
        const status = res.statusCode ?? 0;
        this.endFirstStandaloneWait();
        if (generation !== this.standaloneGeneration) {
          res.destroy();
          return;
        }
        // A refusal's body is not wanted, and one that never ends would hold its socket for good (every retry another):
        // the connection is closed instead of drained.
        if (status === 405) {
          res.destroy();
          this.standaloneState = 'unsupported';
          return;
        }
        if (status === 404) {
          res.destroy();
          this.markExpired();
          return;
        }
        if (status === 409) {
          // The upstream allows one such stream a session, and another holder of this session has it: a replica that
          // served the agent's requests and opened it then (SDK servers answer 409). Asked again with the backoff, so
          // the stream comes here once that replica lets the session go (its messages reach the agent over the bus
          // meanwhile); given up, the agent listening here heard nothing once the other replica had released it.
          res.destroy();
          this.standaloneConflicts += 1;
          retry();
          return;
        }
        // An answer asking again will not change (401, 403, 406, a page that is no event stream, a redirect): reported,
        // and not asked again. Server errors, timeouts and rate limits are retried.
        const refusedForGood = () => {
          ended = true;
          this.standalone = undefined;
          this.standaloneState = 'failed';
          this.ctx.logger.warn({ ...logFields(this.ctx.config), status }, 'upstream refused the standalone stream; its session-level messages will not arrive');
        };
        if (status === 400 && this.sessionId !== null) {
          // Some servers say so for a session they do not know (see `refusesSession`): the session is over, as on a 404,
          // and a listening agent's next stream comes on a new one (re-review: the stream was given up for good).
          readRefusal(res, (text) => {
            if (generation !== this.standaloneGeneration) return;
            if (refusesSession(text)) this.markExpired();
            else refusedForGood();
          });
          return;
        }
        if (status !== 200 || contentTypeOf(res.headers) !== 'text/event-stream') {
          res.destroy();
          if (status < 500 && status !== 408 && status !== 429) {
            refusedForGood();
            return;
          }
          retry();
          return;
        }
        this.standaloneState = 'open';
        this.standaloneOpenedAt = Date.now();
        this.standaloneConflicts = 0;
        const resumedFrom = this.lastEventId;
        consumeEventStream(
          res,
          this.ctx.maxMessageBytes,
          this.ctx.config.callTimeoutMs,
          (event) => {
            if (generation !== this.standaloneGeneration) return;
            // Sent back as a header on reconnect: an id no header can carry (a control character, "€") is not kept
            // (Node refuses such a header value by throwing, which in the reconnect timer took the replica down).
            if (event.id !== undefined) this.lastEventId = HEADER_SAFE_EVENT_ID.test(event.id) ? event.id : undefined;
            if (event.event !== 'message' || event.data === '') return;
            for (const classified of parseMessages(event.data) ?? []) {
              if (classified.kind === 'notification') this.deliver(classified.message, undefined);
              else if (classified.kind === 'request')
                this.answer(classified.message, this.serverRequestHandler);
              // MCP keeps answers off this stream; an upstream that puts one there (its call's stream gone) still
              // answers that call, whose own stream would otherwise wait out its timeout.
              else if (classified.kind === 'response') this.answeredOnStandalone(classified.message);
              else if (classified.answer === true && classified.id !== null) this.brokenOnStandalone(classified.id, classified.reason);
            }
          },
          (error, position) => {
            // An event with an id but no data (a priming event) is never delivered, yet moves where to resume from.
            if (position.lastEventId !== undefined) {
              this.lastEventId = HEADER_SAFE_EVENT_ID.test(position.lastEventId) ? position.lastEventId : undefined;
            }
            // Only a clean end is SEP-1699 polling; a reset, a stalled or oversized event is a failure and backs off.
            this.standaloneProgressed = error === null && this.lastEventId !== undefined && this.lastEventId !== resumedFrom;
            if (position.retryMs !== undefined) this.standaloneRetryMs = position.retryMs;
            retry();
          },
          this.ctx.heldAnswers === undefined ? undefined : new CallHold(this.ctx.heldAnswers, this.ctx.config.tenantId),
        );
      },
      retry,
      this.ctx.config.connectTimeoutMs,
    );
  }

  /** The wait before the next reconnect of a standalone stream that failed `standaloneRetries` times in a row. */
  private standaloneBackoff(): number {
    const { initial, max } = this.ctx.standaloneBackoffMs ?? STANDALONE_BACKOFF_MS;
    return Math.min(max, initial * 2 ** Math.min(this.standaloneRetries, 30));
  }

  private retryStandalone(): void {
    this.endFirstStandaloneWait();
    this.standalone = undefined;
    if (this.closed || this.expired) return;
    // Only a stream that stayed open a while starts the backoff afresh: one that the upstream accepts and closes at
    // once would otherwise be asked for again every second for the life of the session.
    const openedAt = this.standaloneOpenedAt;
    this.standaloneOpenedAt = undefined;
    // SEP-1699: a server that names a `retry` may close a stream it gave an id, and expects the client back after that
    // delay (polling). A stream that brought a new id is such a close, not a failure: no backoff.
    const polled = this.standaloneProgressed && this.standaloneRetryMs !== undefined;
    this.standaloneProgressed = false;
    if (polled) {
      this.standaloneRetries = 0;
      this.standaloneState = 'none';
      const delay = Math.min(Math.max(this.standaloneRetryMs ?? 0, MIN_STANDALONE_POLL_MS), MAX_RESUME_DELAY_MS);
      this.standaloneTimer = setTimeout(() => {
        this.standaloneTimer = undefined;
        this.openStandaloneStream();
      }, delay);
      this.standaloneTimer.unref();
      return;
    }
    if (openedAt !== undefined && Date.now() - openedAt >= STANDALONE_STABLE_MS) this.standaloneRetries = 0;
    this.standaloneRetries += 1;
    // Never given up for a server error or a broken connection (a rolling deploy, a restart): the session's list
    // changes, resource updates and requests would otherwise stop for good while its calls work again.
    // Not for conflicts alone: another replica holding the stream is no failure.
    if (this.standaloneRetries === STANDALONE_RETRIES_REPORTED && this.standaloneConflicts < this.standaloneRetries) {
      this.ctx.logger.warn(logFields(this.ctx.config), 'upstream standalone stream keeps failing; still reconnecting, at most a minute apart');
    }
    this.standaloneState = 'none';
    this.standaloneTimer = setTimeout(() => {
      this.standaloneTimer = undefined;
      this.openStandaloneStream();
    }, this.standaloneBackoff());
    this.standaloneTimer.unref();
  }
}

/** A call's stream that the upstream keeps closing without sending anything new is given up after this many resumes. */
const MAX_RESUMES_WITHOUT_PROGRESS = 3;
/** Wait before resuming a call's stream when the upstream named no `retry`, and the most any `retry` makes it wait. */
const DEFAULT_RESUME_DELAY_MS = 1_000;
/** However short the `retry`, a call's stream is not resumed sooner than this (a `retry: 0` upstream cannot spin us). */
const MIN_RESUME_DELAY_MS = 50;
const MAX_RESUME_DELAY_MS = 10_000;
/** The shortest wait before reopening a standalone stream the upstream closed while polling, whatever its `retry`. */
const MIN_STANDALONE_POLL_MS = 250;

/**
 * An SSE event id that can go back as a `Last-Event-ID` header unchanged: printable ASCII, spaces and tabs inside but
 * not at either end (a header parser trims those, and the upstream would read another id), at most the SSE parser's
 * `MAX_EVENT_ID_CHARS`. Not bytes past ASCII: a header carries them as Latin-1, the upstream reads UTF-8. Before, ids
 * with a space or past 256 characters (a JSON position, a signed token) were never resumed.
 */
const HEADER_SAFE_EVENT_ID = new RegExp(`^[\\x21-\\x7e](?:[\\t\\x20-\\x7e]{0,${MAX_EVENT_ID_CHARS - 2}}[\\x21-\\x7e])?$`);

/** A JSON-RPC answer as a call settles with it (`settle`'s arguments). */
const outcomeOf = (message: JsonRpcResponse): [unknown, Record<string, unknown> | undefined] =>
  'error' in message ? [new UpstreamRpcError(message.error.code, message.error.message, message.error.data), undefined] : [null, message.result];

const isTimeout = (error: unknown): boolean => (error as { reason?: unknown } | null)?.reason === 'timeout';
