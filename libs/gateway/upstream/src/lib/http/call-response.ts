import { StringDecoder } from 'node:string_decoder';
import {
  SseParser,
  UpstreamRpcError,
  type JsonRpcId,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
  type SseEvent,
} from '@portcullis/gateway/mcp';
import { errors } from '../core/wire';
import { CallHold, FREE_BYTES_PER_CALL, type HeldAnswers } from './held-answers';
import { mediaTypeOf, parseMessages } from './event-stream';
import { Exchange, headerValue, type RawHeaders } from './http-pool';
import { MAX_REFUSAL_BYTES, REFUSAL_READ_MS, refusesSession } from './session-refusal';

export interface CallResponseHandlers {
  readonly maxBytes: number;
  /** Where the replica counts the bytes of answers held while they arrive, and whose (see `HeldAnswers`). */
  readonly heldAnswers?: HeldAnswers;
  readonly tenantId?: string;
  /** The request carried an Mcp-Session-Id, so a 404 means the upstream forgot the session. */
  readonly hasSession: boolean;
  /** The response named the upstream's session (asked for on initialize only). */
  readonly sessionId?: (sessionId: string) => void;
  notification(notification: JsonRpcNotification): void;
  serverRequest(request: JsonRpcRequest): void;
  /** The upstream answered 404 to a known session. */
  expired(): void;
  /**
   * The upstream answered: the call's JSON-RPC response came, or a status other than 200 (below 500 the breaker resets,
   * 5xx counts). A 200 alone is no answer: a server that sends its headers before it runs the call (the SDK's, answering
   * with SSE) and then hangs reset the count before each timeout, and its circuit never opened.
   */
  reachable(healthy: boolean): void;
  /** The request failed before any response (connect error, refused address, reset socket). */
  failed(error: NodeJS.ErrnoException): void;
  /** Called once with the outcome of the call, unless `failed` was. */
  settle(error: unknown, result: Record<string, unknown> | undefined): void;
  /**
   * The upstream took the call (200), and the gateway gives up on it without an answer because of how the response
   * came (a broken or oversized stream, one that ended unanswered and cannot be resumed, a content type that is neither
   * JSON nor SSE): the upstream may still be running it, and should be told. Called right after `settle`.
   */
  abandoned?(): void;
  /**
   * The SSE stream ended or broke before the answer, after an event with an id (SEP-1699: a 2025-11-25 server may
   * close a stream it primed, and the client resumes it with a GET carrying `Last-Event-ID`). True: the caller
   * resumes the call on a new exchange (this one reports nothing more). False, or absent: the call fails.
   * `progressed`: this stream carried an event id other than the one it resumed from.
   */
  resume?(lastEventId: string, retryMs: number | undefined, progressed: boolean): boolean;
}

/**
 * An upstream's Mcp-Session-Id: visible ASCII (MCP), at most 1,024 characters. The gateway's own session ids have 43
 * and the SDK's 36; this leaves room for the signed tokens some servers use, and keeps small the agent session record
 * that names one per upstream.
 */
const SESSION_ID = /^[\x21-\x7e]{1,1024}$/;

/**
 * How the body of the response is read: dropped (the call is already answered), as JSON, as SSE, or as a 400's reason
 * (`refusal`: whether the upstream refused the session, see `rejectStatus`).
 */
type BodyKind = 'skip' | 'json' | 'sse' | 'refusal';


/**
 * Reads the HTTP response to one POSTed JSON-RPC request (Streamable HTTP) as undici delivers it: a
 * JSON body with the response, or an SSE stream carrying notifications and server requests about this
 * request and, last, its response. Messages that arrive after the response are still delivered, for
 * `LINGER_MS`; then the request and its socket are dropped.
 */
export class CallResponse extends Exchange {
  private started = false;
  /** The upstream took the call: this exchange got 200. */
  private taken = false;
  private answered = false;
  /** The answer created a task (MCP 2025-11-25): progress on its token may go on after it. */
  private becameTask = false;
  /** Nothing more is read or reported: the body ended or broke, or the call was aborted. */
  private finished = false;
  private body: BodyKind = 'skip';
  private chunks: Buffer[] = [];
  private size = 0;
  private decoder: StringDecoder | undefined;
  private parser: SseParser | undefined;
  /** This call's count in `heldAnswers`, once its answer held more than `FREE_BYTES_PER_CALL`. */
  private hold: CallHold | undefined;
  /** How long a 400's body is waited for (`refusal`): decided on what came by then. */
  private refusalTimer: NodeJS.Timeout | undefined;
  /** How much of a 400's body is read: its reason, or (JSON) an error answering the call (`rejectStatus`). */
  private refusalLimit = MAX_REFUSAL_BYTES;

  /** `resumedFrom`: the event id this exchange (a GET) resumes the call's stream from. */
  constructor(
    private readonly id: JsonRpcId,
    private readonly handlers: CallResponseHandlers,
    private readonly resumedFrom?: string,
  ) {
    super();
  }

  /** Ends the exchange early (timeout, cancellation, session closed); the call settles with `error` if it has not yet. */
  abort(error: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.bodyDone();
    this.answer(error, undefined);
    this.abortRequest();
  }

  protected responseStarted(status: number, headers: RawHeaders): void {
    if (this.finished || status < 200) return;
    this.started = true;
    if (this.handlers.sessionId !== undefined) {
      const sessionId = headerValue(headers, 'mcp-session-id');
      if (sessionId !== undefined && sessionId !== '') {
        // Sent back as a header on every request and kept in every agent session's record (Redis): MCP allows visible
        // ASCII only, and an id no header can carry, or a huge one, is refused here rather than fail each request.
        if (!SESSION_ID.test(sessionId)) {
          this.break('the session id is not visible ASCII of at most 1,024 characters');
          return;
        }
        this.handlers.sessionId(sessionId);
      }
    }
    if (status !== 200) {
      this.rejectStatus(status, headers);
      return;
    }
    this.taken = true;
    const type = mediaTypeOf(headerValue(headers, 'content-type'));
    if (type === 'text/event-stream') {
      this.body = 'sse';
      this.decoder = new StringDecoder('utf8');
      this.parser = new SseParser(this.handlers.maxBytes);
    } else if (type === 'application/json') this.body = 'json';
    else {
      // No MCP server's answer (a web server's or a proxy's page at its URL): a failure for its circuit, as a 5xx is.
      // Before, it counted as nothing, and an upstream answering every call so was never dropped (found by review).
      this.handlers.reachable(false);
      this.protocolErrorIfUnanswered('unexpected content type');
    }
  }

  protected override responseData(chunk: Buffer): void {
    if (this.finished) return;
    if (this.body === 'refusal') {
      this.chunks.push(chunk);
      this.size += chunk.length;
      // At most MAX_OWN_ERROR_BYTES: within what any call may hold uncounted (FREE_BYTES_PER_CALL).
      if (this.size >= this.refusalLimit) {
        this.finished = true;
        this.bodyDone();
        this.refused();
        this.abortRequest();
      }
    } else if (this.body === 'json') {
      this.size += chunk.length;
      if (this.size > this.handlers.maxBytes) this.break('the response body broke');
      else if (this.size > FREE_BYTES_PER_CALL && !this.held(this.size)) this.refuseHeld();
      else this.chunks.push(chunk);
    } else if (this.body === 'sse') {
      this.pushEvents((this.decoder as StringDecoder).write(chunk));
      const parser = this.parser as SseParser;
      if (!this.finished && (this.hold !== undefined || parser.heldBytes > FREE_BYTES_PER_CALL) && !this.held(parser.heldBytes)) this.refuseHeld();
    }
  }

  /** Counts `size` bytes held for this call's answer; false when the replica or the tenant holds too much already. */
  private held(size: number): boolean {
    const answers = this.handlers.heldAnswers;
    if (answers === undefined) return true;
    this.hold ??= new CallHold(answers, this.handlers.tenantId ?? '');
    return this.hold.hold(size);
  }

  /** The answer cannot be held: the call fails as overloaded, and the upstream is told it was abandoned. */
  private refuseHeld(): void {
    this.finished = true;
    this.bodyDone();
    if (!this.answered) {
      this.answer(errors.answersHeld(), undefined);
      if (this.taken) this.handlers.abandoned?.();
    }
    this.abortRequest();
  }

  protected override bodyDone(): void {
    super.bodyDone();
    this.hold?.release();
  }

  protected override responseEnded(): void {
    this.bodyDone();
    if (this.finished) return;
    this.finished = true;
    if (this.body === 'refusal') this.refused();
    else if (this.body === 'json') {
      const { chunks } = this;
      this.chunks = [];
      this.deliver(
        chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8'),
      );
      // A JSON body that is not the call's answer: as broken as a page that is no JSON at all.
      if (!this.answered) this.handlers.reachable(false);
      this.protocolErrorIfUnanswered('the response did not answer the request');
    } else if (this.body === 'sse' && !this.resumed()) {
      this.protocolErrorIfUnanswered('the response stream ended without an answer');
    }
  }

  protected responseFailed(error: Error): void {
    this.bodyDone();
    if (this.finished) return;
    this.finished = true;
    if (!this.started) {
      this.answered = true;
      this.handlers.failed(error);
      return;
    }
    if (this.body === 'sse' && this.resumed()) return;
    if (this.body === 'refusal') this.refused();
    else this.protocolErrorIfUnanswered(this.body === 'sse' ? 'the response stream broke' : 'the response body broke');
  }

  /** Hands an unanswered call whose stream can be resumed to `handlers.resume`; true if it took it. */
  private resumed(): boolean {
    // Where the stream could be resumed from, and after how long: read off the parser only now (nothing per event).
    const lastEventId = this.parser?.lastEventId ?? this.resumedFrom;
    if (this.answered || lastEventId === undefined || this.handlers.resume === undefined) return false;
    if (!this.handlers.resume(lastEventId, this.parser?.reconnectionTime, lastEventId !== this.resumedFrom)) return false;
    this.answered = true;
    return true;
  }

  private rejectStatus(status: number, headers: RawHeaders): void {
    if (status === 404 && this.handlers.hasSession) {
      this.sessionForgotten();
      return;
    }
    // A 400 to a request with a session id may be a server's way of saying it does not know the session (see
    // `refusesSession`): its body says, read first (bounded). Before, the call failed as a protocol error, and so did every
    // later one, the upstream session never started again (found by review). With or without a session, the body may
    // also be the call's own JSON-RPC error, which is the upstream's answer to pass on.
    if (status === 400 && this.resumedFrom === undefined) {
      this.body = 'refusal';
      // A JSON body may be the call's own error with a whole validation report in its data: read as far as an answer
      // may go (found by re-review: cut at 4 KiB, it was no JSON, and became "HTTP 400" or even a refused session).
      if (mediaTypeOf(headerValue(headers, 'content-type')) === 'application/json') this.refusalLimit = Math.min(this.handlers.maxBytes, MAX_OWN_ERROR_BYTES);
      // A body that never ends is not waited for: decided on what came (re-review: the call hung to its timeout).
      this.refusalTimer = setTimeout(() => {
        if (this.finished) return;
        this.finished = true;
        this.bodyDone();
        this.refused();
        this.abortRequest();
      }, REFUSAL_READ_MS);
      return;
    }
    this.handlers.reachable(status < 500);
    this.answer(errors.protocol(`HTTP ${status}`), undefined);
    // A resume refused: the call itself was taken, and may still be running.
    if (this.resumedFrom !== undefined) this.handlers.abandoned?.();
  }

  /**
   * The upstream does not know the session. `session_expired` says it ran nothing: the gateway sends the request again on
   * a new session. A GET resuming a call's stream comes after the upstream took the call (200), which may have run: it
   * must not run twice.
   */
  private sessionForgotten(): void {
    this.handlers.reachable(true);
    this.handlers.expired();
    this.answer(this.resumedFrom === undefined ? errors.sessionExpired() : errors.sessionLost(), undefined);
  }

  /**
   * The body of a 400 (or as much of it as was read) decides: a session refused, the call's own JSON-RPC error (the
   * upstream's code, message and data, as a 200 would have carried them), or the request's fault, as a protocol error.
   * Before, an upstream that answers a call's invalid params with a 400 had its error replaced by "HTTP 400".
   */
  private refused(): void {
    clearTimeout(this.refusalTimer);
    const { chunks } = this;
    this.chunks = [];
    if (this.answered) return;
    const body = Buffer.concat(chunks).subarray(0, this.refusalLimit);
    // The call's own error first: whatever it says of a session, it answers the call.
    const own = this.id === null ? undefined : ownErrorIn(body.toString('utf8'), this.id);
    if (own !== undefined) {
      this.settleWith(own);
      return;
    }
    if (this.handlers.hasSession && refusesSession(body.subarray(0, MAX_REFUSAL_BYTES).toString('utf8'), this.id ?? undefined)) {
      this.sessionForgotten();
      return;
    }
    this.handlers.reachable(true);
    this.answer(errors.protocol('HTTP 400'), undefined);
  }

  private pushEvents(text: string): void {
    let events: SseEvent[];
    try {
      events = (this.parser as SseParser).push(text);
    } catch {
      // An event over maxBytes: stop reading (and drop the socket) rather than buffer without bound.
      this.break('the response stream broke');
      return;
    }
    for (const event of events) {
      // 2025-11-25 servers open with an event that has an id and empty data (a resumption point).
      if (event.event === 'message' && event.data !== '') this.deliver(event.data);
      if (this.finished) return;
    }
  }

  /** The body cannot be read on: answer with a protocol error (if not answered yet) and drop the request. */
  private break(what: string): void {
    this.finished = true;
    this.bodyDone();
    this.protocolErrorIfUnanswered(what);
    this.abortRequest();
  }

  private deliver(text: string): void {
    const messages = parseMessages(text);
    if (messages === undefined) return;
    for (const classified of messages) {
      switch (classified.kind) {
        case 'response':
          // An error with a null id is the server's word that it could not read a request: on a request's own stream,
          // this one's (JSON-RPC 2.0 §5), not to be dropped while the call waits out its timeout.
          if (!this.answered && (classified.message.id === this.id || (classified.message.id === null && 'error' in classified.message))) this.settleWith(classified.message);
          break;
        case 'notification':
          // Progress stops with the answer (MCP), unless the answer made the call a task (its token holds for the task's
          // lifetime); the stream read on briefly after it may still carry some.
          if (this.answered && !this.becameTask && classified.message.method === 'notifications/progress') break;
          this.handlers.notification(classified.message);
          break;
        case 'request':
          this.handlers.serverRequest(classified.message);
          break;
        case 'invalid':
          // A malformed answer to this call fails it now, as stdio and legacy SSE fail one: an upstream holding the
          // stream open would otherwise leave it to its timeout (and its circuit breaker to count a timeout).
          if (!this.answered && classified.answer === true && classified.id === this.id) this.break(`invalid response: ${classified.reason}`);
          break;
        default:
          break;
      }
    }
  }

  /**
   * The answer to this call, if `message` is it and none came yet, found on another stream of the session (the
   * standalone GET): whether it was.
   */
  answeredElsewhere(message: JsonRpcResponse): boolean {
    if (this.answered || message.id !== this.id) return false;
    this.settleWith(message);
    return true;
  }

  /**
   * A malformed answer to this call (its id known), found on another stream of the session (the standalone GET): the
   * call fails now as a protocol error, as one on its own stream does, rather than waiting out its timeout.
   */
  brokenElsewhere(id: JsonRpcId, reason: string): boolean {
    if (this.answered || id !== this.id) return false;
    // The upstream answered it, so it has the call, whether or not this exchange got its 200 yet (a POST whose status
    // is still to come, a GET resuming the call's stream): it is told the call was given up (re-review: only a 200
    // here told it).
    const told = this.taken;
    this.break(`invalid response: ${reason}`);
    if (!told) this.handlers.abandoned?.();
    return true;
  }

  private settleWith(message: JsonRpcResponse): void {
    this.handlers.reachable(true);
    if ('error' in message)
      this.answer(
        new UpstreamRpcError(message.error.code, message.error.message, message.error.data),
        undefined,
      );
    else {
      this.becameTask = typeof message.result['task'] === 'object' && message.result['task'] !== null;
      this.answer(null, message.result);
    }
  }

  /** Settles the call once; later outcomes (a stream ending after the answer) are dropped. */
  /**
   * Settles with a protocol error unless the call was answered already. The error is built only when it is
   * needed: an Error captures a stack trace, which would cost every successful call tens of microseconds.
   */
  private protocolErrorIfUnanswered(what: string): void {
    if (this.answered) return;
    this.answer(errors.protocol(what), undefined);
    // Taken by the upstream: this exchange's 200 (a resumed stream's GET gets one only after the call's POST did).
    if (this.taken) this.handlers.abandoned?.();
  }

  private answer(error: unknown, result: Record<string, unknown> | undefined): void {
    if (this.answered) return;
    this.answered = true;
    this.handlers.settle(error, result);
    // Answered with the body still open (an SSE stream, an error body): read on only briefly.
    if (!this.finished) this.linger();
  }
}

/** The most of a 400's JSON body read for an error answering the call (a validation report in its data). */
const MAX_OWN_ERROR_BYTES = FREE_BYTES_PER_CALL;

/** A JSON-RPC error answering request `id`, if `text` is one (a single message, not a batch); else undefined. */
function ownErrorIn(text: string, id: string | number): JsonRpcResponse | undefined {
  const messages = parseMessages(text);
  if (messages?.length !== 1) return undefined;
  const [classified] = messages;
  return classified?.kind === 'response' && classified.message.id === id && 'error' in classified.message ? classified.message : undefined;
}
