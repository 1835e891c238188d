import type { ClientRequest, OutgoingHttpHeaders } from 'node:http';
import type {
  ClientIdentity,
  JsonRpcId,
  JsonRpcNotification,
  JsonRpcRequest,
  UpstreamRequestOptions,
  UpstreamServerInfo,
  UpstreamSession,
  UpstreamSessionState,
} from '@portcullis/gateway/mcp';
import { maskResult, maskUpstreamError } from '@portcullis/gateway/mcp';
import { initializeParams, resumedInfo, toServerInfo } from '../core/handshake';
import { RequestMultiplexer, type Written } from '../core/request-multiplexer';
import {
  logFields,
  notifyQuietly,
  type DisposableSession,
  type NotificationHandler,
  type SessionContext,
} from '../core/session-base';
import {
  abortAll,
  answerServerRequest,
  cancelServerRequest,
  encodeNotification,
  errors,
  QUIET_POST_TIMEOUT_MS,
  QuietPosts,
  type ServerRequestHandler,
} from '../core/wire';
import { configuredHeaders } from './streamable-http-session';
import { CallHold } from './held-answers';
import { ANSWERS_HELD, consumeEventStream, contentTypeOf, parseMessages } from './event-stream';
import {
  dispatch,
  headerLines,
  isConnectError,
  openStream,
  StatusExchange,
  type HttpTarget,
} from './http-pool';

export interface LegacySseContext extends SessionContext {
  readonly target: HttpTarget;
}

/**
 * Decides whether the message endpoint an SSE upstream announced may be used: it must resolve (against
 * the stream URL) to the stream's own origin. Anything else would let an upstream make the gateway
 * POST (with the upstream's credentials) to a host of its choosing.
 */
export function resolveEndpoint(announced: string, streamUrl: URL): URL | undefined {
  let endpoint: URL;
  try {
    endpoint = new URL(announced.trim(), streamUrl);
  } catch {
    return undefined;
  }
  return endpoint.origin === streamUrl.origin ? endpoint : undefined;
}

/**
 * One session over the 2024-11-05 HTTP+SSE transport: a long-lived GET stream carries everything the
 * upstream says; our messages are POSTed to the endpoint it announced. Responses are matched to calls
 * by id (RequestMultiplexer). Per-replica: it cannot be resumed elsewhere, so `resume` reconnects.
 */
export class LegacySseSession implements UpstreamSession, DisposableSession {
  readonly upstreamId: string;
  info: UpstreamServerInfo;
  private readonly mux: RequestMultiplexer<LegacySseSession>;
  /** Headers of every POSTed message, as the flat list undici takes. */
  private readonly headerLines: string[];
  private endpointPath = '';
  private stream: ClientRequest | undefined;
  private closed = false;
  /** Told once when the session ends (the stream broke, or it was closed or disposed). */
  private closedHandler: (() => void) | undefined;
  private notificationHandler: NotificationHandler | undefined;
  private serverRequestHandler: ServerRequestHandler | undefined;
  private readonly serverRequests = new Map<JsonRpcId, AbortController>();
  /** POSTs under way (`post`), let go of when their call is given up or the session ends. */
  private readonly posting = new Set<() => void>();
  /** Answers to the upstream's requests under way (`QuietPosts`). */
  private readonly quietPosts = new QuietPosts(() =>
    this.ctx.logger.warn(logFields(this.ctx.config), 'upstream sends more requests than it takes answers for; dropping answers'),
  );

  constructor(private readonly ctx: LegacySseContext) {
    this.upstreamId = ctx.config.id;
    this.info = resumedInfo('2024-11-05', ctx.config.name);
    this.headerLines = headerLines({
      ...configuredHeaders(ctx.config.headers),
      'content-type': 'application/json',
    });
    this.mux = new RequestMultiplexer<LegacySseSession>({
      // A message no call waits on (a cancellation) is bounded as the answers to the upstream's requests are.
      // Sent as the session's other messages of its own accord are (`QuietPosts`: bounded in number and in time).
      write: (text, quiet) =>
        quiet === true ? this.quietPosts.send(() => this.post(text, Math.min(this.ctx.config.callTimeoutMs, QUIET_POST_TIMEOUT_MS))) : this.post(text),
      onTimeout: (sentAt) => ctx.breaker.failure(sentAt),
      onAnswer: () => ctx.breaker.success(),
      rpcError: (error) => maskUpstreamError(ctx.config, error),
      result: (result) => maskResult(ctx.config, result),
      // The connection is this session's alone.
      taskProgress: (_owner, notification) => notifyQuietly(this.notificationHandler, notification, this.ctx),
    });
    ctx.registry.add(this);
  }

  /** Opens the stream, waits for the endpoint, then initialize + initialized, within connectTimeoutMs. */
  async handshake(identity: ClientIdentity): Promise<void> {
    const timeoutMs = this.ctx.config.connectTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    try {
      await this.openStream(timeoutMs);
      const result = await this.mux.request(
        this,
        'initialize',
        initializeParams(identity),
        undefined,
        Math.max(1, deadline - Date.now()),
      );
      this.info = toServerInfo(result);
      // Within the handshake's deadline too: an upstream that never takes this POST held up every agent initialize of
      // the tenant for callTimeoutMs (up to an hour) instead of connectTimeoutMs.
      await this.post(encodeNotification('notifications/initialized', undefined), Math.max(1, deadline - Date.now()));
    } catch (error) {
      this.dispose();
      throw (error as { reason?: unknown }).reason === 'timeout' ? errors.connectTimeout() : error;
    }
  }

  state(): UpstreamSessionState {
    return { sessionId: null, protocolVersion: this.info.protocolVersion };
  }

  request(
    method: string,
    params: Record<string, unknown> | undefined,
    options?: UpstreamRequestOptions,
  ): Promise<Record<string, unknown>> {
    if (this.closed) return Promise.reject(errors.closed());
    const { breaker } = this.ctx;
    if (!breaker.tryPass()) return Promise.reject(errors.circuitOpen());
    const probe = breaker.probe;
    const answered = this.mux.request(this, method, params, options, options?.timeoutMs ?? this.ctx.config.callTimeoutMs);
    if (probe === 0) return answered;
    // As the half-open probe, a call that failed without a verdict on the upstream's health (its POST refused with a
    // 4xx, given up by the agent) leaves the slot to the next call instead of holding every call for another
    // cool-down; a timeout or a 5xx reopened the circuit already, and an answer closed it: this then does nothing.
    return answered.catch((error: unknown) => {
      breaker.probeEnded(probe);
      throw error;
    });
  }

  async notify(method: string, params?: Record<string, unknown>): Promise<void> {
    if (this.closed) throw errors.closed();
    await this.post(encodeNotification(method, params));
  }

  onNotification(handler: (notification: JsonRpcNotification) => void): void {
    this.notificationHandler = handler;
  }

  onServerRequest(
    handler: (request: JsonRpcRequest, signal: AbortSignal) => Promise<Record<string, unknown>>,
  ): void {
    this.serverRequestHandler = handler;
  }

  onClosed(handler: () => void): void {
    this.closedHandler = handler;
  }

  async close(): Promise<void> {
    this.dispose();
  }

  /**
   * Ends the session at once; its calls under way fail with `reason` (default: closed). `forgotten`: the upstream
   * answered a POST 404, so the POSTs still awaiting their status are left to finish: their own 404 says nothing of
   * theirs ran (session_expired: sent again on a new session), a 202 that it was taken (closed: nothing is left to
   * answer it). Before, they were aborted, and a call the upstream had refused too failed as closed, never sent again
   * (found by re-review).
   */
  dispose(reason?: Error, forgotten = false): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.registry.delete(this);
    this.stream?.destroy();
    this.stream = undefined;
    if (forgotten) {
      this.mux.failTaken(reason ?? errors.closed());
    } else {
      this.mux.failAll(reason ?? errors.closed());
      // POSTs still under way (their calls failed above, or no call waits on them) let go of their connections.
      for (const abort of [...this.posting]) abort();
    }
    abortAll(this.serverRequests);
    const closedHandler = this.closedHandler;
    this.closedHandler = undefined;
    closedHandler?.();
  }

  private openStream(timeoutMs: number): Promise<void> {
    const { target, config, logger } = this.ctx;
    const sentAt = performance.now();
    return new Promise<void>((resolve, reject) => {
      let waiting = true;
      const fail = (error: unknown): void => {
        if (!waiting) return;
        waiting = false;
        clearTimeout(timer);
        reject(error);
      };
      const timer = setTimeout(() => {
        this.ctx.breaker.failure(sentAt);
        fail(errors.timeout());
      }, timeoutMs);
      const headers: OutgoingHttpHeaders = {
        ...configuredHeaders(config.headers),
        accept: 'text/event-stream',
      };
      try {
        this.stream = openStream(
          target,
          headers,
          (res) => {
            const status = res.statusCode ?? 0;
            if (status !== 200 || contentTypeOf(res.headers) !== 'text/event-stream') {
              res.destroy(); // its body is not wanted, and may never end
              if (status >= 500) this.ctx.breaker.failure(sentAt);
              fail(errors.protocol(`HTTP ${status} on the event stream`));
              return;
            }
            consumeEventStream(
              res,
              this.ctx.maxMessageBytes,
              this.ctx.config.callTimeoutMs,
              (event) => {
                if (event.event === 'endpoint') {
                  if (!waiting) return;
                  const endpoint = resolveEndpoint(event.data, target.url);
                  if (endpoint === undefined) {
                    logger.warn(
                      logFields(config),
                      'upstream announced a message endpoint on another origin; refused',
                    );
                    fail(errors.protocol('message endpoint on another origin'));
                    return;
                  }
                  this.endpointPath = `${endpoint.pathname}${endpoint.search}`;
                  waiting = false;
                  clearTimeout(timer);
                  resolve();
                  return;
                }
                if (event.event === 'message' && event.data !== '') this.receive(event.data);
              },
              (error) => {
                fail(errors.protocol('the event stream ended before announcing an endpoint'));
                if (!this.closed) {
                  logger.info({ ...logFields(config), broken: error !== null }, 'upstream event stream ended');
                  // Every answer comes on this stream: its calls fail for what broke it.
                  this.dispose((error as NodeJS.ErrnoException | null)?.code === ANSWERS_HELD ? errors.answersHeld() : undefined);
                }
              },
              this.ctx.heldAnswers === undefined ? undefined : new CallHold(this.ctx.heldAnswers, this.ctx.config.tenantId),
            );
          },
          (error) => {
            if (isConnectError(error) || error.code === 'EPORTCULLIS_ADDRESS_REFUSED')
              this.ctx.breaker.failure(sentAt);
            logger.debug({ ...logFields(config), code: error.code }, 'upstream event stream failed');
            fail(errors.connectFailed(error));
            this.dispose();
          },
        );
      } catch (error) {
        // A configured header Node refuses to send (a control character, stored before the API refused them): a failed
        // connect like any other, not a TypeError out of the connector.
        logger.warn({ ...logFields(config), code: (error as { code?: unknown }).code }, 'could not send the event stream request');
        fail(errors.connectFailed(error));
      }
    });
  }

  private receive(data: string): void {
    for (const classified of parseMessages(data) ?? []) {
      switch (classified.kind) {
        case 'response':
          this.mux.handleResponse(classified.message);
          break;
        case 'notification': {
          const notification = classified.message;
          if (notification.method === 'notifications/cancelled')
            cancelServerRequest(notification.params, this.serverRequests);
          else {
            const unrouted = this.mux.routeNotification(notification);
            if (unrouted !== undefined) notifyQuietly(this.notificationHandler, unrouted, this.ctx);
          }
          break;
        }
        case 'request': {
          const route = this.mux.routeServerRequest(classified.message);
          const handler = route.kind === 'call' ? route.handler : this.serverRequestHandler;
          answerServerRequest(
            classified.message,
            handler,
            (text) => this.quietPosts.send(() => this.post(text, Math.min(this.ctx.config.callTimeoutMs, QUIET_POST_TIMEOUT_MS))),
            this.serverRequests,
          );
          break;
        }
        case 'invalid':
          // Meant as the answer to a call in flight (result and error both, neither, a malformed error): the call ends
          // now with the protocol error, as over Streamable HTTP, rather than at its timeout (found by review).
          if (classified.answer === true && typeof classified.id === 'number') this.mux.fail(classified.id, errors.protocol(`invalid response: ${classified.reason}`));
          break;
        default:
          break;
      }
    }
  }

  /**
   * POSTs one message to the announced endpoint; resolves once it was accepted (202) within `timeoutMs`. `abort` on the
   * promise lets go of the POST (its call was given up): it settles as closed.
   */
  private post(body: string, timeoutMs = this.ctx.config.callTimeoutMs): Written {
    if (this.closed) return Promise.reject(errors.closed());
    let abort: () => void = () => undefined;
    let reached: () => boolean = () => false;
    const sentAt = performance.now();
    const posted: Written = new Promise<void>((resolve, reject) => {
      const exchange = new StatusExchange((error, status) => {
        clearTimeout(timer);
        this.posting.delete(abort);
        if (error !== null) {
          if (isConnectError(error)) this.ctx.breaker.failure(sentAt);
          reject(errors.connectFailed(error));
        } else if (status >= 200 && status < 300) {
          // Taken by a session that is over meanwhile (forgotten: see `dispose`): no answer can come for it.
          if (this.closed) reject(errors.closed());
          else resolve();
        } else if (status === 404) {
          reject(errors.sessionExpired());
          // After the multiplexer has failed the call this POST carried as session_expired (its handler is queued
          // first): dispose fails the calls whose POSTs were taken as closed.
          queueMicrotask(() => this.dispose(undefined, true));
        } else {
          // A 5xx counts toward the breaker as it does from a Streamable HTTP upstream (ADR 0008); a 4xx is the message's.
          if (status >= 500) this.ctx.breaker.failure(sentAt);
          reject(errors.protocol(`HTTP ${status}`));
        }
      });
      // The upstream must take the message in time (its answer comes on the stream, later).
      const timer = setTimeout(() => {
        exchange.abort();
        this.posting.delete(abort);
        this.ctx.breaker.failure(sentAt);
        reject(errors.timeout());
      }, timeoutMs);
      abort = () => {
        if (!this.posting.delete(abort)) return;
        clearTimeout(timer);
        exchange.abort();
        reject(errors.closed());
      };
      reached = () => exchange.reachedSocket;
      this.posting.add(abort);
      dispatch(this.ctx.target, 'POST', this.headerLines, body, exchange, this.endpointPath);
    });
    posted.abort = abort;
    posted.reachedUpstream = reached;
    return posted;
  }
}
