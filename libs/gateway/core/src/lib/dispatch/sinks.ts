import type { ServerResponse } from 'node:http';
import { sseFrame, type JsonRpcId, type JsonRpcMessage, type JsonRpcResponse } from '@portcullis/gateway/mcp';
import { isStackExhausted } from '@portcullis/shared/util-errors';
import { eventId, newStreamId, REPLACED_MARK, type ReplayEntry, type ReplayLog, type StreamLog } from './replay-log';
import { GATEWAY_RPC, isOwnRateLimitRefusal } from '../http/gateway-error';
import { ByteBufferPool, encodeJson, isLargeListing } from '../http/json-bytes';

/** Buffers for large listing answers, reused across responses once their writes have finished. */
const listingBuffers = new ByteBufferPool();

/**
 * Most bytes an SSE response may hold unsent in the gateway (written, not yet taken by the socket). An agent that
 * stops reading its stream while the gateway keeps writing to it would otherwise grow the heap without bound; past
 * this its connection is dropped (a resumable stream's messages stay in the replay log for a resume).
 */
export const MAX_UNSENT_BYTES = 8 * 1024 * 1024;

/**
 * Writes `chunk` (or ends with it) unless the response is already too far behind, more than `max` waiting unsent;
 * then drops the connection. Judged before the write: one large message (a 10 MiB result) to an agent that reads
 * goes out whole.
 */
export function writeBounded(
  res: Pick<ServerResponse, 'destroyed' | 'writableEnded' | 'writableLength' | 'write' | 'end' | 'destroy'>,
  chunk: string,
  final = false,
  max = MAX_UNSENT_BYTES,
): boolean {
  if (res.destroyed || res.writableEnded) return false;
  if (res.writableLength > max) {
    res.destroy();
    return false;
  }
  if (final) res.end(chunk);
  else res.write(chunk);
  return true;
}

/** The `retry` a priming event announces: how long an agent waits before resuming a stream that broke off. */
export const RESUME_RETRY_MS = 1_000;

/**
 * The priming event of a resumable stream (2025-11-25 agents, see `primesStreams`): the id of the position before its
 * first message, and the reconnection delay. Resuming from it replays the whole stream.
 */
export const primingFrame = (streamId: string): string => `id: ${eventId(streamId, 0)}\nretry: ${RESUME_RETRY_MS}\ndata: \n\n`;

/** Where messages related to one agent request go besides its response (progress, server requests, logs). */
export interface MessageSink {
  /** False when the agent cannot receive extra messages for this request (JSON-only, batch, closed stream). */
  readonly canStream: boolean;
  /**
   * `early`: relayed over the replica bus before this stream's own announcement came back, so an older stream of the
   * session parked on another replica may have logged it too (see `EventStream.resumeAfter`). Other sinks ignore it.
   */
  send(message: JsonRpcMessage, early?: boolean): boolean;
  /**
   * Ends a long-lived stream (its session is over). `replaced`: another stream, not resuming this one, took its place
   * (its log says so: a resume of it is then refused, see the GET route).
   */
  close?(reason?: 'replaced'): void;
  /** The stream's id (what its SSE event ids begin with), for a stream that has one. */
  readonly id?: string;
  /**
   * The request's answer was withdrawn from the agent (its credential went while it ran): nothing more of the request
   * reaches the agent, on this stream or any other (an upstream's question is refused, not sent to the session's).
   */
  readonly withdrawn?: boolean;
  /** A stream whose agent's connection is gone, kept a while for its return (`EventStream.park`): no one listens now. */
  readonly away?: boolean;
  /** Another replica's stream, reached over the replica bus: `send` hands the message on, not to the agent itself. */
  readonly remote?: boolean;
}

export const NO_STREAM: MessageSink = { canStream: false, send: () => false };

/** What a credential's going ends while it runs (see `openPosts` in mcp-routes.ts). */
export interface WithdrawablePost {
  /** Answers the requests still due with `response` (the refusal), and lets nothing more of them through. */
  withdraw(response: JsonRpcResponse | readonly JsonRpcResponse[]): void;
  /** Lets nothing more of the requests through, with nothing to answer. */
  abandon(): void;
}

/**
 * A legacy HTTP+SSE messages POST while its requests run: they are answered on the session's stream, which may be
 * another key's of the same agent client, so the POST's own key going (revoked, expired) withdraws them as it withdraws
 * a Streamable HTTP POST: each request still due is answered with the refusal, and nothing more of them (progress, an
 * upstream's question, the result) reaches the stream.
 */
export class LegacyPost implements MessageSink, WithdrawablePost {
  private withdrawnHere = false;

  /**
   * `streams`: whether the requests' own messages (progress, an upstream's questions) go on the stream; a batch's do
   * not (as on Streamable HTTP), but its withdrawal still refuses them rather than sending them to the session's stream.
   */
  constructor(
    private readonly stream: MessageSink & { sendBatch(responses: readonly JsonRpcResponse[]): boolean },
    private readonly streams = true,
  ) {}

  get canStream(): boolean {
    return this.streams && !this.withdrawnHere && this.stream.canStream;
  }

  get withdrawn(): boolean {
    return this.withdrawnHere;
  }

  get away(): boolean | undefined {
    return this.stream.away;
  }

  send(message: JsonRpcMessage, early?: boolean): boolean {
    return this.canStream && this.stream.send(message, early);
  }

  /** The requests' answers, unless they were withdrawn. */
  answer(responses: readonly JsonRpcResponse[], batch: boolean): void {
    if (this.withdrawnHere || responses.length === 0) return;
    if (batch) this.stream.sendBatch(responses);
    else for (const response of responses) this.stream.send(response);
  }

  withdraw(response: JsonRpcResponse | readonly JsonRpcResponse[]): void {
    if (this.withdrawnHere) return;
    this.withdrawnHere = true;
    if ('jsonrpc' in response) this.stream.send(response);
    else this.stream.sendBatch(response);
  }

  abandon(): void {
    this.withdrawnHere = true;
  }
}

/** Where the sinks report an answer they had to replace (pino-compatible). */
export interface SinkLogger {
  warn(obj: object, msg: string): void;
}

const REPLACED = 'an upstream answer nested too deeply to relay was answered as an internal error';

/**
 * In place of answers too deeply nested to serialise (JSON.parse took an upstream's result at any depth;
 * JSON.stringify recurses): an internal error for each such answer, with its id, so the agent gets an answer and not
 * a 500. In a batch only the answers that cannot be serialised are replaced; the others go out as they are.
 */
function unrelayable(response: JsonRpcResponse | readonly JsonRpcResponse[]): JsonRpcResponse | JsonRpcResponse[] {
  const one = (r: JsonRpcResponse): JsonRpcResponse => ({
    jsonrpc: '2.0',
    id: r.id,
    error: { code: -32603, message: 'Internal error: the upstream answer is nested too deeply to relay' },
  });
  if ('jsonrpc' in response) return one(response);
  return response.map((r) => {
    try {
      JSON.stringify(r);
      return r;
    } catch (error) {
      if (!isStackExhausted(error)) throw error;
      return one(r);
    }
  });
}

/** The SSE comment written to a stream (or a POST's answer) that has been quiet for a while. */
export const KEEP_ALIVE_FRAME = ': keep-alive\n\n';

/**
 * Keeps quiet POST responses alive. A call may go minutes without a byte (a slow tool, a call held for a person's
 * approval), and the load balancers and proxies agents sit behind close connections idle for far less (60 s is a
 * common default). A response is never quiet for more than `quietMs`: one that has written nothing for between half
 * and all of it is turned into an SSE stream (which a POST's answer may always be: agents must accept both) and gets
 * a comment, then another whenever it has been quiet that long again. A resumable stream opens with its priming
 * event, so an agent whose connection is cut anyway can resume it; until the answer its replay log is renewed at the
 * same pace, whether the agent is connected or away.
 *
 * One timer for all responses (every `quietMs / 2`, unref'd): a response is added and removed as a Set member, not
 * given a timer of its own, so the calls that answer at once pay next to nothing for it.
 */
export class QuietResponses {
  private readonly watched = new Set<PostResponder>();
  private readonly timer: NodeJS.Timeout;

  constructor(readonly quietMs: number) {
    this.timer = setInterval(() => this.tick(), Math.max(1, Math.floor(quietMs / 2)));
    this.timer.unref();
  }

  watch(responder: PostResponder): void {
    this.watched.add(responder);
  }

  unwatch(responder: PostResponder): void {
    this.watched.delete(responder);
  }

  /** Responses watched (specs). */
  get size(): number {
    return this.watched.size;
  }

  /** Every half `quietMs`: each response's tick (see PostResponder.quietTick); those with nothing left to keep go. */
  private tick(): void {
    for (const responder of this.watched) {
      try {
        if (!responder.quietTick()) this.watched.delete(responder);
      } catch {
        // A response in a state it should never be in: it goes, and the others are still kept alive.
        this.watched.delete(responder);
        responder.release();
      }
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.watched.clear();
  }
}

/**
 * The POST streams this replica writes, by stream id, while they run, and the resumes of them it serves. An agent that
 * resumes one (a GET with its `Last-Event-ID`, on this replica or another) reads the rest from the replay log: the
 * original response stops taking messages then (`PostResponder.detach`), and so does an earlier resume of it still
 * open (the agent gave up on that one too), or each message would go out on both (MCP: a message goes out on one of
 * the client's streams). Stream ids are unique across replicas; the session is checked too.
 */
export class PostStreams {
  private readonly running = new Map<string, PostResponder>();
  /** Resumes served here, by the stream they follow: their session, token and how to end them. */
  private readonly following = new Map<string, Set<PostStreamFollower>>();

  add(streamId: string, responder: PostResponder): void {
    this.running.set(streamId, responder);
  }

  remove(streamId: string, responder: PostResponder): void {
    if (this.running.get(streamId) === responder) this.running.delete(streamId);
  }

  /** A resume of `streamId` served here, until the returned function is called (its stream closed). */
  follow(streamId: string, follower: PostStreamFollower): () => void {
    let followers = this.following.get(streamId);
    if (followers === undefined) this.following.set(streamId, (followers = new Set()));
    followers.add(follower);
    return () => {
      followers.delete(follower);
      if (followers.size === 0 && this.following.get(streamId) === followers) this.following.delete(streamId);
    };
  }

  /**
   * The agent resumed stream `streamId` of session `sessionId` (the resume `token`): its original response, if written
   * here, ends, and every other resume of it served here.
   */
  resumed(sessionId: string, streamId: string, token: string | undefined): void {
    const responder = this.running.get(streamId);
    if (responder?.sessionId === sessionId) responder.detach();
    // A notice without a token (malformed, or from a replica that sends none) cannot tell the new resume from the
    // others: they stay.
    if (token === undefined) return;
    for (const follower of [...(this.following.get(streamId) ?? [])]) {
      if (follower.sessionId === sessionId && follower.token !== token) follower.end();
    }
  }

  /** Streams running and resumes followed (specs). */
  get size(): number {
    return this.running.size + this.following.size;
  }
}

/** A resume of a POST stream served by this replica (`PostStreams.follow`). */
export interface PostStreamFollower {
  readonly sessionId: string;
  /** Names this resume among the resumes of the stream. */
  readonly token: string;
  /** Ends it: a later resume of the same stream took over. */
  end(): void;
}

/** What a PostResponder needs besides its response and session; every part optional. */
export interface PostResponderOptions {
  /** Makes the response resumable once it is a stream (see replay-log). */
  readonly replay?: ReplayLog;
  /** Where, and under which trace, an answer replaced as unrelayable is reported. */
  readonly logger?: SinkLogger;
  readonly traceId?: string;
  /** A resumable stream opens with a priming event (2025-11-25 agents, see `primesStreams`). */
  readonly prime?: boolean;
  /** Keeps the response alive while it waits for its answer (absent: it may stay silent until the answer). */
  readonly quiet?: QuietResponses;
  /**
   * The requests the response answers. Their ids go with the replay log (read only if the response turns into a
   * stream), for a replica resuming it to answer them if this one dies first. (A batch, 2025-03-26 only, is never
   * resumable: those agents get no priming event, and a batch's answers come all at once.)
   */
  readonly requests?: readonly { readonly id: JsonRpcId }[];
  /** How long the answer, written whole, gets to reach the agent before the connection is dropped (`ANSWER_GRACE_MS`). */
  readonly answerGraceMs?: number;
  /** Where the response, once a resumable stream, is found when the agent resumes it (see `PostStreams`). */
  readonly streams?: PostStreams;
}

/**
 * The response to one Streamable HTTP POST: plain JSON when the answer is the only message, switched
 * to an SSE stream (with event ids) the moment anything must be sent before the answer, or once it has been quiet for
 * a while (see QuietResponses). With a replay log the stream is resumable: once the agent has an event id, losing the
 * connection no longer ends the stream — messages keep going to the log, and a GET with `Last-Event-ID` picks them up
 * (see replay-log).
 */
export class PostResponder implements MessageSink {
  private state: 'pending' | 'sse' | 'done' = 'pending';
  /** Event ids are minted only once the response turns into a stream (most responses never do). */
  private streamId = '';
  private seq = 0;
  private log: StreamLog | undefined;
  /** An event id of the stream went out (a priming event or a message): the agent can resume from it. */
  private idSent = false;
  /** QuietResponses' ticks since this response last wrote anything. */
  private quietTicks = 0;
  private readonly replay: ReplayLog | undefined;
  private readonly logger: SinkLogger | undefined;
  private readonly traceId: string | undefined;
  private readonly prime: boolean;
  private readonly quiet: QuietResponses | undefined;
  private readonly requests: PostResponderOptions['requests'];
  private readonly answerGraceMs: number;
  private readonly streams: PostStreams | undefined;

  /** `sessionId`: echoed as `Mcp-Session-Id` on the response. */
  constructor(
    private readonly res: ServerResponse,
    readonly sessionId: string,
    options: PostResponderOptions = {},
  ) {
    this.streams = options.streams;
    this.replay = options.replay;
    this.logger = options.logger;
    this.traceId = options.traceId;
    this.prime = options.prime ?? false;
    this.quiet = options.quiet;
    this.requests = options.requests;
    this.answerGraceMs = options.answerGraceMs ?? ANSWER_GRACE_MS;
    this.quiet?.watch(this);
  }

  get canStream(): boolean {
    if (this.state === 'done') return false;
    return this.resumable || !this.res.destroyed;
  }

  /** The agent holds an event id of this stream and can resume it after a disconnect. */
  get resumable(): boolean {
    return this.state === 'sse' && this.log !== undefined && this.idSent;
  }

  /**
   * QuietResponses' tick; false once there is nothing left to keep. The second tick in a row without a write brings a
   * keep-alive, or, for an agent that has gone but can resume, renews the stream's replay log: the answer may be
   * minutes away (a held call), and must still be there when the agent comes back for it.
   */
  quietTick(): boolean {
    if (this.state === 'done') return false;
    const open = !this.res.destroyed && !this.res.writableEnded;
    if (!open && !this.resumable) return false;
    if (this.quietTicks++ >= 1) {
      this.quietTicks = 0;
      if (!open) this.log?.keep?.();
      else if (this.state === 'pending') this.openStream(true);
      // A stream the agent can resume from its priming event's id stays resumable while it waits.
      else if (this.idSent) this.log?.keep?.();
      if (open) writeBounded(this.res, KEEP_ALIVE_FRAME);
    }
    return true;
  }

  /**
   * The response as a stream. `quiet`: opened by a keep-alive, with no message to follow at once: the log is made now,
   * so that the priming event's id can be resumed from before any message is logged.
   */
  private openStream(quiet = false): void {
    // `x-accel-buffering: no`: a buffering reverse proxy (nginx and its kin) in front passes each event on at once, the
    // keep-alives of a quiet call too, rather than holding them until its buffer fills.
    this.res.writeHead(200, ['mcp-session-id', this.sessionId, 'content-type', 'text/event-stream', 'cache-control', 'no-cache, no-transform', 'connection', 'keep-alive', 'x-accel-buffering', 'no']);
    this.state = 'sse';
    this.streamId = newStreamId('p');
    this.log = this.replay?.open(this.sessionId, this.streamId, this.requests?.map(({ id }) => id));
    if (this.log !== undefined) this.streams?.add(this.streamId, this);
    if (this.prime && this.log !== undefined && writeBounded(this.res, primingFrame(this.streamId))) {
      this.idSent = true;
      if (quiet) this.log.keep?.();
    }
  }

  /** Already a stream (its status and headers are sent): an answer now goes out as its last event. */
  get streaming(): boolean {
    return this.state === 'sse';
  }

  /**
   * The request's handling ended without an answer (it failed after the response became a stream, or had nothing to
   * answer): no more keep-alives, and a stream left open is cut, as its answer will never come. (Where the request's
   * id is known, answering it with an error through `finish` is better: an agent resuming the stream gets that.)
   */
  release(): void {
    this.quiet?.unwatch(this);
    if (this.state === 'done') return;
    if (this.state === 'sse') {
      this.ended();
      if (!this.res.writableEnded) this.res.destroy();
    }
  }

  /** No longer a running stream. */
  private ended(): void {
    if (this.state === 'sse') this.streams?.remove(this.streamId, this);
    this.state = 'done';
  }

  /**
   * The agent resumed this stream with a GET (its `Last-Event-ID`), which reads the rest from the replay log: the
   * original response ends, its messages going to the log only, as for an agent that went. Sent on both, each message
   * reached an agent still reading the original twice.
   */
  detach(): void {
    if (this.state !== 'sse' || this.res.writableEnded || this.res.destroyed) return;
    this.res.end();
  }

  get done(): boolean {
    return this.state === 'done';
  }

  /**
   * Ends the response without the answer: the agent cancelled the request (MCP: no answer to a cancelled request). A
   * response not yet a stream ends as an empty one (a request must get JSON or an event stream; with no event id, no
   * client resumes it). A stream ends too, its replay log closed with an empty final entry, so a resume finds nothing
   * left (405) instead of waiting for an answer that will not come.
   */
  abandon(): void {
    this.quiet?.unwatch(this);
    if (this.state === 'done') return;
    if (this.state === 'pending') {
      if (!this.res.destroyed) {
        this.res.writeHead(200, ['mcp-session-id', this.sessionId, 'content-type', 'text/event-stream', 'cache-control', 'no-cache, no-transform']);
        this.res.end();
      }
    } else {
      this.log?.append(++this.seq, '', true);
      if (!this.res.destroyed && !this.res.writableEnded) this.res.end();
    }
    this.ended();
  }

  send(message: JsonRpcMessage): boolean {
    if (!this.canStream) return false;
    // Serialised first: a message that cannot be must not turn the response into a stream (and a replay log) for nothing.
    let data: string;
    try {
      data = JSON.stringify(message);
    } catch (error) {
      // An upstream's message nested too deeply to serialise is not relayed (the sender learns it was not delivered).
      if (isStackExhausted(error)) return false;
      throw error;
    }
    if (this.state === 'pending') this.openStream();
    this.write(this.logged(data, false), false);
    return true;
  }

  /**
   * The answer. A plain JSON response goes out as one write: status line, headers and body together
   * (a flat header list skips Node's per-header bookkeeping).
   */
  private withdrawnAnswer = false;

  get withdrawn(): boolean {
    return this.withdrawnAnswer;
  }

  /** Ends the stream with `response` (errors in place of what the request would have answered); see `withdrawn`. */
  withdraw(response: JsonRpcResponse | readonly JsonRpcResponse[]): void {
    if (this.state === 'done') return;
    this.withdrawnAnswer = true;
    this.finish(response);
  }

  finish(response: JsonRpcResponse | readonly JsonRpcResponse[]): void {
    if (this.state === 'done') return;
    this.quiet?.unwatch(this);
    try {
      this.answer(response);
    } catch (error) {
      // Nothing was written: the answer is serialised before any write.
      if (!isStackExhausted(error)) throw error;
      this.logger?.warn({ traceId: this.traceId }, REPLACED);
      this.answer(unrelayable(response));
    }
  }

  private answer(response: JsonRpcResponse | readonly JsonRpcResponse[]): void {
    if (this.state === 'sse') {
      // One event per answer, even for a batch: SSE readers (the SDK's among them) take one message per event. All
      // are serialised before any is logged or written (one that cannot be leaves nothing half sent), and go out in
      // one write: the bound on unsent bytes is for agents that stop reading, not for the gateway's own burst.
      const answers = 'jsonrpc' in response ? [response] : response;
      const data = answers.map((answer) => JSON.stringify(answer));
      this.write(data.map((one, i) => this.logged(one, i === data.length - 1)).join(''), true);
      dropIfUnread(this.res, this.answerGraceMs);
    } else if (!this.res.destroyed) {
      if (isLargeListing(response)) {
        // Item by item into a reused buffer (see json-bytes.ts); it goes back to the pool once written.
        const { buffer, length } = encodeJson(response, listingBuffers);
        this.res.writeHead(200, ['mcp-session-id', this.sessionId, 'content-type', 'application/json', 'content-length', String(length)]);
        this.res.end(buffer.subarray(0, length), () => listingBuffers.give(buffer));
      } else {
        const body = JSON.stringify(response);
        const headers = ['mcp-session-id', this.sessionId, 'content-type', 'application/json', 'content-length', String(Buffer.byteLength(body))];
        const retryAfter = rateLimitedRetryAfter(response);
        if (retryAfter === undefined) this.res.writeHead(200, headers);
        else this.res.writeHead(429, [...headers, 'retry-after', retryAfter]);
        this.res.end(body);
      }
      dropIfUnread(this.res, this.answerGraceMs);
    }
    this.ended();
  }

  /** The next event of the stream: logged (resumable), returned as its SSE frame. */
  private logged(data: string, final: boolean): string {
    // Without a replay log (GATEWAY_SSE_REPLAY_MAX_BYTES=0) an event gets no id: one would tell the client it may resume
    // the stream from there, and nothing could be replayed.
    if (this.log === undefined) return sseFrame(data);
    const seq = ++this.seq;
    this.log.append(seq, data, final);
    return sseFrame(data, eventId(this.streamId, seq));
  }

  private write(frames: string, final: boolean): void {
    if (this.res.destroyed || this.res.writableEnded) return;
    this.quietTicks = 0;
    if (writeBounded(this.res, frames, final)) this.idSent = true;
  }
}

/**
 * The longest `Retry-After` sent: a rate limit's longest window (a day). Within it the header says what the refusal's
 * `retryAfterSeconds` says; before, it stopped at an hour, and a client honouring it came back to a day's window 22
 * hours early, to be refused again.
 */
const MAX_RETRY_AFTER_SECONDS = 86_400;

/**
 * A single rate-limit refusal of the gateway's own answered as plain JSON goes out as HTTP 429 with `Retry-After` (the
 * JSON-RPC error is the body). Batches and streams stay 200: their other messages are not refused. An upstream's error
 * with the same code stays a 200 (`isOwnRateLimitRefusal`): SDK clients treat a non-2xx POST as a transport failure.
 */
export function rateLimitedRetryAfter(response: JsonRpcResponse | readonly JsonRpcResponse[]): string | undefined {
  if (!('jsonrpc' in response) || !('error' in response) || response.error.code !== GATEWAY_RPC.RATE_LIMITED) return undefined;
  if (!isOwnRateLimitRefusal(response)) return undefined;
  const data = response.error.data;
  const seconds = typeof data === 'object' && data !== null ? (data as Record<string, unknown>)['retryAfterSeconds'] : undefined;
  return typeof seconds === 'number' && Number.isFinite(seconds) && seconds >= 0 ? String(Math.min(MAX_RETRY_AFTER_SECONDS, Math.ceil(seconds))) : '1';
}

/** A long-lived SSE stream: the standalone GET stream, or a legacy HTTP+SSE session's stream. */
export class EventStream implements MessageSink {
  private seq = 0;
  private readonly keepAlive: NodeJS.Timeout;
  /** Ended by the gateway (`close`): a replaced stream, a revoked key, the session's end, a shutdown. */
  private closedHere = false;
  /** Parked (see `park`): the agent's connection is gone, messages go on to the replay log; called when parking ends. */
  private parked: { readonly timer: NodeJS.Timeout; readonly done: () => void } | undefined;
  /**
   * Held (see `resumeAfter`): messages sent meanwhile, serialised but not yet numbered, logged or written (`early` as
   * `send` was told), sent once what the agent missed went first.
   */
  private held: { readonly data: string; readonly early: boolean }[] | undefined;
  private heldBytes = 0;
  /** The stream takes no more messages (see `whenDone`). */
  private ended = false;
  private doneHandlers: (() => void)[] | undefined;
  /** The characters of the writes not yet handed to the kernel whole (see `write`). */
  private unsentChars = 0;
  /** Of those, the writes handed to the socket together, going out now: not counted against the bound. */
  private goingOutChars = 0;

  /**
   * `log`: makes the stream resumable (Streamable HTTP standalone streams; not the legacy transport). `prime`: a
   * resumable stream opens with a priming event.
   */
  constructor(
    private readonly res: ServerResponse,
    headers: Readonly<Record<string, string>>,
    keepAliveMs: number,
    private readonly log?: StreamLog,
    readonly id: string = newStreamId('s'),
    private readonly logger?: SinkLogger,
    prime = false,
    hold = false,
  ) {
    if (hold) this.held = [];
    res.writeHead(200, { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    if (prime && log !== undefined) res.write(primingFrame(id));
    else res.flushHeaders();
    this.keepAlive = setInterval(() => this.write(KEEP_ALIVE_FRAME), keepAliveMs);
    this.keepAlive.unref();
    res.on('close', () => {
      clearInterval(this.keepAlive);
      // After the response's other close listeners (the route's, which may park the stream).
      queueMicrotask(() => {
        if (this.parked === undefined) this.end();
      });
    });
    // The client may have gone while the request waited (a session lookup, the replay log): the response's 'close'
    // has then fired already and never comes again, so nothing would ever end what is tied to this stream.
    if (res.closed) {
      clearInterval(this.keepAlive);
      queueMicrotask(() => this.end());
    }
  }

  get canStream(): boolean {
    return this.parked !== undefined || (!this.res.destroyed && !this.res.writableEnded);
  }

  get away(): boolean {
    return this.parked !== undefined;
  }

  /**
   * The agent's connection closed: a resumable stream the gateway did not end itself stays the session's stream for up
   * to `ms`, its messages (notifications, an upstream's requests) going to the replay log only, so that the agent
   * reconnecting with its last event id gets them (MCP: the server MAY replay messages sent while a stream was broken).
   * `done` runs when parking ends: the time is up, or `close` (a new stream took over, the session ended). A stream
   * that cannot be resumed, or was ended here, is done at once.
   */
  park(ms: number, done: () => void): void {
    if (this.log === undefined || this.closedHere || this.ended || this.parked !== undefined) {
      done();
      return;
    }
    const timer = setTimeout(() => this.unpark(), ms);
    timer.unref();
    this.parked = { timer, done };
  }

  private unpark(reason?: 'replaced'): void {
    const parked = this.parked;
    if (parked === undefined) return;
    this.parked = undefined;
    clearTimeout(parked.timer);
    this.end(reason);
    parked.done();
  }

  /**
   * Runs `handler` once the stream takes no more messages: closed here, its connection gone and not parked, or its
   * parking over. (Its 'close' is earlier for a parked stream, which a revoked key or a shutdown must still end.)
   */
  whenDone(handler: () => void): void {
    if (this.ended) queueMicrotask(handler);
    else (this.doneHandlers ??= []).push(handler);
  }

  /**
   * No more messages: a resumable stream's log gets a final entry, so that a replica resuming it (a reconnect
   * elsewhere, reading what it missed) knows it has all of it (see `follow` in the GET route). Empty, or
   * `REPLACED_MARK` when another stream took its place.
   */
  private end(reason?: 'replaced'): void {
    if (this.ended) return;
    this.ended = true;
    if (this.log !== undefined) {
      // Ended while it held messages back (the agent went again during the handover): they are logged, for its return.
      for (const { data } of this.held ?? []) this.log.append(++this.seq, data, false);
      if (this.held !== undefined) this.held = [];
      this.log.append(++this.seq, reason === 'replaced' ? REPLACED_MARK : '', true);
    }
    const handlers = this.doneHandlers ?? [];
    this.doneHandlers = undefined;
    for (const handler of handlers) handler();
  }

  /**
   * A stream opened with `hold` resumes an earlier one: `missed` (that stream's entries after the agent's last event
   * id) are written first, as this stream's own events (numbered and logged here), then the priming event (`prime`),
   * then the messages sent to this one while the log was read. Attached before the read, it loses none of what came
   * meanwhile, in order. Under their old ids, the agent's last id stayed the older stream's until a message of this
   * one's came: an agent that takes no priming event, away again before that, resumed the older stream once more, and
   * what this one had logged while parked was lost with it (found by review).
   *
   * A message relayed over the bus before this stream's announcement came back (`early`) reached the older stream too,
   * if it was still parked on another replica then (the bus delivers in one order everywhere, and that replica closes it
   * on the announcement): it is left out here when the older stream logged the same text. (A second, identical
   * notification is all that can be lost that way: a list change or a log line the agent had word for word.)
   */
  resumeAfter(missed: readonly ReplayEntry[], prime: boolean): void {
    const held = this.held ?? [];
    this.held = undefined;
    this.heldBytes = 0;
    const early = held.some((item) => item.early) ? new Map<string, number>() : undefined;
    // The older stream's end marker is nothing for the agent.
    for (const entry of missed) {
      if (entry.data === '' || entry.final) continue;
      this.emitNow(entry.data);
      if (early !== undefined) early.set(entry.data, (early.get(entry.data) ?? 0) + 1);
    }
    // Nothing was replayed: the priming event gives the agent this stream's id (with no message of its own yet).
    if (prime && this.log !== undefined && this.seq === 0) this.write(primingFrame(this.id));
    for (const item of held) {
      const alsoLogged = item.early && early !== undefined ? (early.get(item.data) ?? 0) : 0;
      if (alsoLogged > 0) {
        (early as Map<string, number>).set(item.data, alsoLogged - 1);
        continue;
      }
      this.emitNow(item.data);
    }
  }

  send(message: JsonRpcMessage, early = false): boolean {
    if (!this.canStream) return false;
    let data: string;
    try {
      data = JSON.stringify(message);
    } catch (error) {
      if (!isStackExhausted(error)) throw error;
      // An answer too deeply nested to serialise becomes an internal error for its id; another message is not relayed.
      if (!('id' in message) || 'method' in message) return false;
      this.logger?.warn({ streamId: this.id }, REPLACED);
      data = JSON.stringify(unrelayable(message as JsonRpcResponse));
    }
    return this.emit(data, early);
  }

  /** One serialised message (or batch) as the stream's next event, or held back while the stream resumes another. */
  private emit(data: string, early = false): boolean {
    if (this.held === undefined) return this.emitNow(data);
    if (this.parked === undefined && (this.res.destroyed || this.res.writableEnded)) return false;
    // Bounded as unsent bytes are: held back this much, the agent is cut off rather than the process filled.
    this.heldBytes += data.length;
    if (this.heldBytes > MAX_UNSENT_BYTES) {
      this.res.destroy();
      return false;
    }
    this.held.push({ data, early });
    return true;
  }

  /**
   * Writes `chunk` unless more than MAX_UNSENT_BYTES wait behind the writes going out now; then the connection is
   * dropped (an agent that stopped reading). Counted write by write, not by `writableLength`, which counts a write
   * whole until its last byte is taken: a message sent while a 10 MiB answer was still being read cut the stream (and
   * a legacy session with it). A write made with nothing unsent goes out at once; once what was going out is done, the
   * socket is handed every write queued behind it in one batch (their callbacks come together, in order).
   */
  private write(chunk: string): boolean {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return false;
    if (this.unsentChars - this.goingOutChars > MAX_UNSENT_BYTES) {
      res.destroy();
      return false;
    }
    const size = chunk.length;
    if (this.unsentChars === 0) this.goingOutChars = size;
    this.unsentChars += size;
    res.write(chunk, () => {
      this.unsentChars -= size;
      this.goingOutChars -= size;
      if (this.goingOutChars <= 0) this.goingOutChars = this.unsentChars;
    });
    return true;
  }

  /** Writes one serialised message as the stream's next event, logged for replay first. */
  private emitNow(data: string): boolean {
    if (this.log === undefined) return this.write(sseFrame(data));
    const seq = ++this.seq;
    this.log.append(seq, data, false);
    // Parked: logged for the agent's return, nothing to write to.
    if (this.parked !== undefined) return true;
    return this.write(sseFrame(data, eventId(this.id, seq)));
  }

  /**
   * Answers to a batch, as one batch in one event (JSON-RPC 2.0 §6). An answer too deeply nested to serialise makes
   * them go one by one instead, each as `send` would.
   */
  sendBatch(responses: readonly JsonRpcResponse[]): boolean {
    if (!this.canStream) return false;
    let data: string;
    try {
      data = JSON.stringify(responses);
    } catch (error) {
      if (!isStackExhausted(error)) throw error;
      return responses.map((response) => this.send(response)).every(Boolean);
    }
    return this.emit(data);
  }

  /**
   * A message of another stream being replayed or resumed here, under its original event id. `primes`: the agent reads
   * events with empty data (2025-11-25, see `primesStreams`).
   */
  replay(id: string, data: string, primes = true): void {
    // An empty entry ends a stream without an answer (`PostResponder.abandon`): only its id goes, as a priming event's
    // does. Without it an SDK client that resumed with a GET, seeing the stream end with no new id, reconnected with
    // none: a new standalone stream, which closed the session's own, which reconnected in turn, forever. An older
    // agent takes empty data for a malformed message (found by review): it gets the id alone, which moves its last
    // event id and dispatches nothing.
    if (data === '') {
      this.write(primes ? `id: ${id}\ndata: \n\n` : `id: ${id}\n\n`);
      return;
    }
    this.write(sseFrame(data, id));
  }

  /** A raw event (the legacy transport's `endpoint` event). */
  event(name: string, data: string): void {
    this.write(sseFrame(data, undefined, name));
  }

  /** Runs `handler` when the stream ends; at once (next microtask) if it has ended already. */
  onClose(handler: () => void): void {
    if (this.res.closed) queueMicrotask(handler);
    else this.res.on('close', handler);
  }

  /**
   * Ends the stream. What is still unsent gets `CLOSE_GRACE_MS` to go; then the connection is dropped. An agent that
   * stopped reading otherwise never let the end through: the response's 'close' never came, so a stream closed for a
   * revoked key kept its session and its places for as long as the agent held the connection.
   */
  close(reason?: 'replaced'): void {
    this.closedHere = true;
    clearInterval(this.keepAlive);
    this.unpark(reason);
    this.end(reason);
    if (this.res.writableEnded) return;
    this.res.end();
    if (this.res.writableLength === 0 || this.res.destroyed) return;
    const res = this.res;
    const drop = setTimeout(() => res.destroy(), CLOSE_GRACE_MS);
    drop.unref();
    res.once('close', () => clearTimeout(drop));
  }
}

/** How long an ended stream's unsent bytes get to reach an agent before its connection is dropped. */
export const CLOSE_GRACE_MS = 2_000;

/**
 * How long an answer written whole may wait with none of its unsent bytes taken: past it, the connection is dropped with
 * whatever is still unsent. An agent that never read kept the answer in the gateway's memory for as long as it held the
 * connection open (40 such connections held 122 MiB of one large listing); one that reads, however slowly, keeps going.
 */
export const ANSWER_GRACE_MS = 30_000;

/**
 * What the socket's handle still has to hand the kernel of the writes under way (libuv's write queue), or infinity when
 * it does not say. A large answer goes out as one write, which the stream counts whole in `writableLength` until the
 * last of it is taken: its progress shows here only.
 */
function kernelQueue(res: ServerResponse): number {
  const size = (res.socket as unknown as { _handle?: { writeQueueSize?: unknown } } | null)?._handle?.writeQueueSize;
  return typeof size === 'number' ? size : Number.POSITIVE_INFINITY;
}

/**
 * Drops the connection once what `res` still holds unsent has not moved for `graceMs` (nothing held: no timer). Looked
 * at every `graceMs`: an agent reading slowly but steadily (16 MiB over a slow link) gets its answer whole.
 */
function dropIfUnread(res: ServerResponse, graceMs: number): void {
  if (res.destroyed || res.writableLength === 0) return;
  let unsent = res.writableLength;
  let queued = kernelQueue(res);
  let timer: NodeJS.Timeout;
  const look = (): void => {
    if (res.destroyed || res.writableLength === 0) return;
    const nowQueued = kernelQueue(res);
    if (res.writableLength >= unsent && nowQueued >= queued) {
      res.destroy();
      return;
    }
    unsent = res.writableLength;
    queued = nowQueued;
    timer = setTimeout(look, graceMs);
    timer.unref();
  };
  timer = setTimeout(look, graceMs);
  timer.unref();
  res.once('close', () => clearTimeout(timer));
}
