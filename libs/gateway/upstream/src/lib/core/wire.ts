import {
  JSON_RPC,
  UpstreamRpcError,
  UpstreamUnavailableError,
  type CancelSignal,
  type JsonRpcId,
  type JsonRpcRequest,
} from '@portcullis/gateway/mcp';

/*
 * Serialisation of the few messages the connector writes. Hand-assembled strings: no wrapper object
 * per message, and the caller's params are stringified exactly once.
 */

const idJson = (id: JsonRpcId): string => (typeof id === 'number' ? String(id) : JSON.stringify(id));

export function encodeRequest(
  id: JsonRpcId,
  method: string,
  params: Record<string, unknown> | undefined,
): string {
  return params === undefined
    ? `{"jsonrpc":"2.0","id":${idJson(id)},"method":${JSON.stringify(method)}}`
    : `{"jsonrpc":"2.0","id":${idJson(id)},"method":${JSON.stringify(method)},"params":${JSON.stringify(params)}}`;
}

export function encodeNotification(method: string, params: Record<string, unknown> | undefined): string {
  return params === undefined
    ? `{"jsonrpc":"2.0","method":${JSON.stringify(method)}}`
    : `{"jsonrpc":"2.0","method":${JSON.stringify(method)},"params":${JSON.stringify(params)}}`;
}

export function encodeCancelled(requestId: JsonRpcId, reason: string): string {
  return `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":${idJson(requestId)},"reason":${JSON.stringify(reason)}}}`;
}

export function encodeResult(id: JsonRpcId, result: Record<string, unknown>): string {
  return `{"jsonrpc":"2.0","id":${idJson(id)},"result":${JSON.stringify(result)}}`;
}

export function encodeError(id: JsonRpcId, code: number, message: string, data?: unknown): string {
  const error = data === undefined ? { code, message } : { code, message, data };
  return `{"jsonrpc":"2.0","id":${idJson(id)},"error":${JSON.stringify(error)}}`;
}

export type ServerRequestHandler = (
  request: JsonRpcRequest,
  signal: AbortSignal,
  context?: ServerRequestContext,
) => Promise<Record<string, unknown>>;

/** What the transport knows of where a server request came from. */
export interface ServerRequestContext {
  /**
   * Handed to one of several calls of the same caller that could each have made it (a connection JSON-RPC gives no
   * link on): it is that caller's, but not surely that call's, so it must not end with that call.
   */
  readonly shared?: boolean;
}

/**
 * Runs a handler for a request the upstream sent (sampling, elicitation, roots) and writes the answer.
 * No handler answers "method not found"; a thrown UpstreamRpcError becomes that JSON-RPC error; any
 * other failure a generic internal error (its message may carry gateway internals, so it is not sent).
 * A `ping` is answered here at once, handler or not: it checks the connection, which is the gateway's (and MCP allows
 * it at any time, during the handshake too, when no handler is set yet).
 */
export function answerServerRequest(
  request: JsonRpcRequest,
  handler: ServerRequestHandler | undefined,
  write: (text: string) => void,
  inFlight: Map<JsonRpcId, AbortController>,
): void {
  if (request.method === 'ping') {
    write(encodeResult(request.id, {}));
    return;
  }
  if (handler === undefined) {
    write(encodeError(request.id, JSON_RPC.METHOD_NOT_FOUND, `Method not found: ${request.method}`));
    return;
  }
  // An id already in flight: the second request would take the first's place in `inFlight`, so a cancellation could
  // no longer reach the first, and the first's settling would drop the second's entry. Refused, as the first is still
  // to be answered under that id (MCP: a requester never reuses an id within its session).
  if (inFlight.has(request.id)) {
    write(encodeError(request.id, JSON_RPC.INVALID_REQUEST, 'Request id is already in use by a request still in flight'));
    return;
  }
  const controller = new AbortController();
  inFlight.set(request.id, controller);
  let promise: Promise<Record<string, unknown>>;
  try {
    promise = handler(request, controller.signal);
  } catch (error) {
    promise = Promise.reject(error);
  }
  // The answer is the agent's own JSON: parsed at any depth, it may be too deep to serialise again. Then the upstream
  // gets an internal error for its request instead; the throw must not escape (this callback's promise is not awaited,
  // and an unhandled rejection ends the process).
  const answer = (encode: () => string): void => {
    let text: string;
    try {
      text = encode();
    } catch {
      text = encodeError(request.id, JSON_RPC.INTERNAL_ERROR, 'The answer could not be relayed');
    }
    write(text);
  };
  // Its own entry only: once cancelled (or the session closed) the id may be in use by a later request.
  const settle = (): void => {
    if (inFlight.get(request.id) === controller) inFlight.delete(request.id);
  };
  promise.then(
    (result) => {
      settle();
      if (!controller.signal.aborted) answer(() => encodeResult(request.id, result));
    },
    (error: unknown) => {
      settle();
      if (controller.signal.aborted) return;
      if (error instanceof UpstreamRpcError) answer(() => encodeError(request.id, error.code, error.message, error.data));
      else write(encodeError(request.id, JSON_RPC.INTERNAL_ERROR, 'Internal error'));
    },
  );
}

/** Messages one upstream session may have on their way upstream at once that the gateway sends of its own accord. */
export const MAX_QUIET_POSTS = 64;
/** How long such a message may take to be accepted (a 202, normally at once). */
export const QUIET_POST_TIMEOUT_MS = 30_000;

/**
 * Bounds what a session posts upstream of its own accord over HTTP: answers to the upstream's requests (a `ping`, a
 * method nobody handles, the agent's relayed answer) and cancellations. Each is one POST, queued in the connection
 * pool with a timer, for a message the upstream sent in a few bytes: an upstream flooding its stream with pings and
 * taking its POSTs slowly would otherwise fill the replica's memory for every tenant. Past `MAX_QUIET_POSTS` under
 * way a message is dropped (the upstream sees its request go unanswered) and `onDrop` is told, once until the queue
 * empties again.
 */
export class QuietPosts {
  private pending = 0;
  private dropping = false;

  constructor(private readonly onDrop: () => void) {}

  send(post: () => Promise<void>): void {
    if (this.pending >= MAX_QUIET_POSTS) {
      if (!this.dropping) {
        this.dropping = true;
        this.onDrop();
      }
      return;
    }
    this.pending += 1;
    post()
      .catch(() => undefined)
      .finally(() => {
        this.pending -= 1;
        if (this.pending === 0) this.dropping = false;
      });
  }

  /** Under way now (for tests). */
  get size(): number {
    return this.pending;
  }
}

/** Handles `notifications/cancelled` the upstream sends about one of its own requests. */
export function cancelServerRequest(
  params: Record<string, unknown> | undefined,
  inFlight: Map<JsonRpcId, AbortController>,
): void {
  const id = params?.['requestId'];
  if (typeof id !== 'string' && typeof id !== 'number') return;
  const controller = inFlight.get(id);
  if (controller === undefined) return;
  inFlight.delete(id);
  controller.abort(new Error('cancelled by the upstream'));
}

export function abortAll(inFlight: Map<JsonRpcId, AbortController>): void {
  for (const controller of inFlight.values()) controller.abort(new Error('upstream session closed'));
  inFlight.clear();
}

/** A task-augmented request (MCP 2025-11-25: `params.task`): cancelled with `tasks/cancel`, never `notifications/cancelled`. */
export const isTaskAugmented = (params: Record<string, unknown> | undefined): boolean =>
  typeof params?.['task'] === 'object' && params['task'] !== null;

/** What a rejected call carries when the caller's signal aborted it. */
export function abortReason(signal: CancelSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError');
}

export const errors = {
  closed: () => new UpstreamUnavailableError('closed', 'The upstream session is closed'),
  circuitOpen: () =>
    new UpstreamUnavailableError('circuit_open', 'The upstream is failing; not trying it for a while'),
  timeout: () => new UpstreamUnavailableError('timeout', 'The upstream did not answer in time'),
  overloaded: () =>
    new UpstreamUnavailableError('overloaded', 'The upstream is not taking requests as fast as they come; try again shortly'),
  answersHeld: () =>
    new UpstreamUnavailableError('overloaded', 'The gateway holds too many large upstream answers at the moment; try again shortly'),
  connectTimeout: () =>
    new UpstreamUnavailableError('timeout', 'The upstream did not complete the handshake in time'),
  sessionExpired: () =>
    new UpstreamUnavailableError('session_expired', 'The upstream no longer knows this session'),
  /**
   * The upstream forgot the session after it took the call (200): the call may have run, or may be running. Not
   * `session_expired`, on which the gateway opens a new session and sends the request again (it ran nothing then).
   */
  sessionLost: () =>
    new UpstreamUnavailableError('protocol_error', 'The upstream lost the session while the call was under way'),
  protocol: (what: string) =>
    new UpstreamUnavailableError('protocol_error', `The upstream broke the protocol: ${what}`),
  connectFailed: (cause?: unknown) =>
    new UpstreamUnavailableError(
      'connect_failed',
      'Could not reach the upstream',
      cause === undefined ? undefined : { cause: sanitiseCause(cause) },
    ),
};

/**
 * Network errors carry the address (`connect ECONNREFUSED 10.0.0.5:443`). The cause kept on our error
 * holds only the error code, so nothing that may reach an agent names the upstream's address.
 */
function sanitiseCause(cause: unknown): unknown {
  const code = (cause as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? { code } : undefined;
}
