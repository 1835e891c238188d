import {
  UpstreamRpcError,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
  type UpstreamRequestOptions,
} from '@portcullis/gateway/mcp';
import { abortReason, encodeCancelled, encodeRequest, errors, isTaskAugmented, type ServerRequestContext, type ServerRequestHandler } from './wire';

const SHARED: ServerRequestContext = { shared: true };

interface Call<Owner> {
  readonly id: number;
  readonly owner: Owner;
  /** MCP forbids cancelling `initialize`: a call that gives up on it only stops waiting. */
  readonly cancellable: boolean;
  readonly options: UpstreamRequestOptions | undefined;
  /** The caller's own progress token, when we replaced it with `id` on the way out. */
  readonly progressToken: unknown;
  readonly resolve: (result: Record<string, unknown>) => void;
  readonly reject: (error: unknown) => void;
  timer: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;
  /** What carried the request, while it may still be under way (`Written.abort`). */
  written: Written | undefined;
  /** Not given up when its owner goes (`cancelOwner`): its answer still matters to the connection (a subscribe). */
  readonly outlivesOwner: boolean;
  /** Task-augmented (MCP 2025-11-25): an answer that creates a task keeps its progress token valid (`taskTokens`). */
  readonly augmented: boolean;
  /** How long it may run: once given up, the server may still work on it this long (`cancelOwner`). */
  readonly timeoutMs: number;
  /** When it was made (performance.now()): a timeout says nothing of a circuit that opened or closed since (`onTimeout`). */
  readonly sentAt: number;
}

/** A progress token of a call answered with a task, kept for the task's progress (`RequestMultiplexer.taskTokens`). */
interface TaskToken<Owner> {
  readonly owner: Owner;
  readonly progressToken: unknown;
  readonly until: number;
}

/** Most task tokens a connection keeps (the oldest go first); and how long one lasts at most, or when no ttl is given. */
const MAX_TASK_TOKENS = 1_000;
const MAX_TASK_TOKEN_MS = 24 * 60 * 60_000;
const DEFAULT_TASK_TOKEN_MS = 60 * 60_000;
/** The longest a task left behind by an owner that went counts as its work still running (`cancelOwner`). */
const TASK_WORK_MS = DEFAULT_TASK_TOKEN_MS;

/**
 * A write under way, for a transport where each message is an exchange of its own (legacy SSE's POSTs): `abort` lets
 * go of it once the call it carried is given up (a timeout, a cancellation, the session closing), instead of holding
 * a pooled connection until the exchange's own bound.
 */
export type Written = Promise<void> & {
  abort?(): void;
  /** False while the message has not reached the upstream's connection (queued for a socket): nothing to cancel. */
  reachedUpstream?(): boolean;
};

/** How long a call's message may still be under way after its answer came (the upstream answered on its stream). */
const ANSWERED_WRITE_GRACE_MS = 1_000;

export interface MultiplexerHooks<Owner = unknown> {
  /**
   * Sends one serialised message. A rejected promise fails the call it carried (when there is one). `quiet`: a message
   * no call waits on (a cancellation), which the transport may bound more tightly.
   */
  write(text: string, quiet?: boolean): void | Written;
  /** A call made at `sentAt` (performance.now()) timed out (the breaker counts it, unless the circuit changed since). */
  onTimeout?(sentAt: number): void;
  /** A call of `owner` got its response (the breaker resets). */
  onAnswer?(owner: Owner): void;
  /** An error response's message and data as the caller gets them (the upstream's secrets masked). */
  rpcError?(error: UpstreamRpcError): UpstreamRpcError;
  /** A result as the caller gets it (the upstream's secrets masked: `maskResult`). */
  result?(result: Record<string, unknown>): Record<string, unknown>;
  /**
   * Progress of a task an owner's call created, after that call was answered, with the owner's token restored: for
   * that owner's session-level handler only (its session tells the agent), never another's.
   */
  taskProgress?(owner: Owner, notification: JsonRpcNotification): void;
}

export type ServerRequestRoute<Owner> =
  | { readonly kind: 'call'; readonly owner: Owner; readonly handler: ServerRequestHandler }
  /** Calls of this one owner are in flight, none with a handler of its own. */
  | { readonly kind: 'owner'; readonly owner: Owner }
  | { readonly kind: 'none' }
  | { readonly kind: 'ambiguous' };

/**
 * Many callers (gateway-side sessions) over one upstream connection that carries JSON-RPC both ways
 * (a stdio process, a legacy SSE stream). Every outgoing request gets this connection's next id, so
 * ids never collide whoever sent them; a response finds its caller by that id. A caller's
 * `_meta.progressToken` is replaced by the same id on the way out and restored on the progress
 * notifications coming back, so progress reaches the right caller even when two callers picked the
 * same token. Timeouts and aborts send `notifications/cancelled` with our id.
 */
export class RequestMultiplexer<Owner> {
  private nextId = 1;
  private readonly calls = new Map<number, Call<Owner>>();
  /**
   * The calls answered with a task (MCP 2025-11-25), by the id that stood for their progress token: the server reports
   * the task's progress under that token for the task's lifetime. Before, the token was forgotten with the answer and
   * every later progress of the task dropped. Kept for the task's ttl (bounded), or until its owner goes.
   */
  private readonly taskTokens = new Map<number, TaskToken<Owner>>();
  /**
   * Per owner, until when work of its may still run at the server: calls given up (a timeout, its agent's cancellation;
   * not those that outlive their owner) and tasks it created (those with a token are in `taskTokens` too). Emptied
   * when the connection's work dies with it (`failAll`) and for an owner that goes (`cancelOwner`).
   */
  private readonly workUntil = new Map<Owner, number>();

  constructor(private readonly hooks: MultiplexerHooks<Owner>) {}

  get pending(): number {
    return this.calls.size;
  }

  request(
    owner: Owner,
    method: string,
    params: Record<string, unknown> | undefined,
    options: UpstreamRequestOptions | undefined,
    timeoutMs: number,
    outlivesOwner = false,
  ): Promise<Record<string, unknown>> {
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const id = this.nextId++;
    let progressToken: unknown;
    let outgoing = params;
    const meta = params?.['_meta'] as Record<string, unknown> | undefined;
    if (meta !== undefined && meta !== null && meta['progressToken'] !== undefined) {
      progressToken = meta['progressToken'];
      outgoing = { ...params, _meta: { ...meta, progressToken: id } };
    }
    const augmented = isTaskAugmented(params);
    return new Promise((resolve, reject) => {
      const call: Call<Owner> = {
        id,
        owner,
        // Nor a task-augmented request: MCP 2025-11-25 cancels those with tasks/cancel, once the task is known.
        cancellable: method !== 'initialize' && !augmented,
        options,
        progressToken,
        resolve,
        reject,
        timer: undefined,
        onAbort: undefined,
        written: undefined,
        outlivesOwner,
        augmented,
        timeoutMs,
        sentAt: performance.now(),
      };
      this.calls.set(id, call);
      call.timer = setTimeout(() => this.giveUp(call, 'timeout', errors.timeout()), timeoutMs);
      if (signal !== undefined) {
        call.onAbort = () => this.giveUp(call, 'cancelled by the client', abortReason(signal));
        signal.addEventListener('abort', call.onAbort, { once: true });
      }
      let written: void | Written;
      try {
        written = this.hooks.write(encodeRequest(id, method, outgoing));
      } catch (error) {
        this.fail(id, error);
        return;
      }
      if (written !== undefined) {
        if (written.abort !== undefined && this.calls.has(id)) call.written = written;
        written.then(
          () => void (call.written = undefined),
          (error: unknown) => {
            call.written = undefined;
            this.fail(id, error);
          },
        );
      }
    });
  }

  /** Settles the call a response answers. False when no call has that id (late, or not ours). */
  handleResponse(message: JsonRpcResponse): boolean {
    const id = message.id;
    if (typeof id !== 'number') return false;
    const call = this.calls.get(id);
    if (call === undefined) return false;
    this.finish(call);
    // Answered while the message that carried it is still under way (an upstream that answers on its stream and never
    // ends the POST): let go of it shortly, or it holds its connection to its own bound.
    const written = call.written;
    if (written?.abort !== undefined) setTimeout(() => written.abort?.(), ANSWERED_WRITE_GRACE_MS).unref();
    this.hooks.onAnswer?.(call.owner);
    if ('error' in message) {
      const error = new UpstreamRpcError(message.error.code, message.error.message, message.error.data);
      call.reject(this.hooks.rpcError?.(error) ?? error);
    }
    else {
      if (call.augmented) this.keepTaskToken(call, message.result);
      call.resolve(this.hooks.result?.(message.result) ?? message.result);
    }
    return true;
  }

  /** A task-augmented call answered with a task: its token goes on standing for the task's progress. */
  private keepTaskToken(call: Call<Owner>, result: Record<string, unknown>): void {
    const task = result['task'];
    if (typeof task !== 'object' || task === null || typeof (task as Record<string, unknown>)['taskId'] !== 'string') return;
    const ttl = (task as Record<string, unknown>)['ttl'];
    const lasts = typeof ttl === 'number' && Number.isFinite(ttl) && ttl > 0 ? Math.min(ttl, MAX_TASK_TOKEN_MS) : DEFAULT_TASK_TOKEN_MS;
    const now = Date.now();
    // Work of its owner's that runs on, with or without a token (`cancelOwner`).
    this.noteWork(call.owner, now + Math.min(lasts, TASK_WORK_MS));
    // Only a task whose call carried a token has progress to route (a tokenless one takes no place here: found by
    // re-review, a session creating many pushed out other sessions' tokens).
    if (call.progressToken === undefined) return;
    if (this.taskTokens.size >= MAX_TASK_TOKENS) this.taskTokens.delete(this.taskTokens.keys().next().value as number);
    this.taskTokens.set(call.id, { owner: call.owner, progressToken: call.progressToken, until: now + lasts });
  }

  /**
   * Delivers a progress notification to the call it is about, with the caller's own token restored.
   * Returns undefined when it was delivered or dropped, otherwise the notification for the transport's
   * session-level handler (a progress one restored, when its call has no handler of its own).
   *
   * Every token that goes out is one of this connection's ids, so progress naming no call in flight that
   * asked for it (late, or made up) is dropped: passed on, it would reach the agent under the gateway's
   * number, which the agent may be using for a request of its own (MCP: progress names only the tokens of
   * active requests).
   */
  routeNotification(notification: JsonRpcNotification): JsonRpcNotification | undefined {
    if (notification.method !== 'notifications/progress') return notification;
    const token = notification.params?.['progressToken'];
    const call = typeof token === 'number' ? this.calls.get(token) : undefined;
    if (call === undefined && typeof token === 'number') {
      this.routeTaskProgress(token, notification);
      return undefined;
    }
    if (call === undefined || call.progressToken === undefined) return undefined;
    const restored: JsonRpcNotification = {
      ...notification,
      params: { ...notification.params, progressToken: call.progressToken },
    };
    const deliver = call.options?.onNotification;
    if (deliver === undefined) return restored;
    deliver(restored);
    return undefined;
  }

  /** Progress under the token of a call answered with a task: to that call's owner, its own token restored. */
  private routeTaskProgress(token: number, notification: JsonRpcNotification): void {
    const kept = this.taskTokens.get(token);
    if (kept === undefined) return;
    if (Date.now() >= kept.until) {
      this.taskTokens.delete(token);
      return;
    }
    this.hooks.taskProgress?.(kept.owner, { ...notification, params: { ...notification.params, progressToken: kept.progressToken } });
  }

  /**
   * JSON-RPC gives a server request no link to the call that caused it. Any call in flight may have (a server asks
   * `roots/list` while it lists resources, as well as during a tool call), so every one counts, with a handler of its
   * own or not: if they all belong to one owner, the oldest of them with a handler gets it, or (none has one) that
   * owner's session-level handler (`owner`); if there is none in flight, the transport falls back to its own; if
   * several owners could have caused it, it is ambiguous and must be refused rather than shown to the wrong agent.
   * Before, only calls with a handler counted: one owner's tool call was asked what another's listing had caused, and
   * its agent's answer (its roots) went into the other's listing. `standing` says what a call's owner is: `asked`
   * (an agent's session, the default); `ignored` (the connection's own bookkeeping, restoring what its sessions hold:
   * as if not in flight); `gone` (a session that left, whose call outlives it): such a call does not stand in the way
   * of an owner's call with a handler, but with nothing else in flight the request may be its, and it is refused
   * (ambiguous), never put to the transport's fallback (another session).
   */
  routeServerRequest(_request: JsonRpcRequest, standing: (owner: Owner) => 'asked' | 'ignored' | 'gone' = () => 'asked'): ServerRequestRoute<Owner> {
    let owner: Owner | undefined;
    let chosen: Call<Owner> | undefined;
    // Every call of the owner, with a handler or not: any of them may have asked.
    let candidates = 0;
    let uncounted = false;
    for (const call of this.calls.values()) {
      const stands = standing(call.owner);
      if (stands !== 'asked') {
        if (stands === 'gone') uncounted = true;
        continue;
      }
      if (owner === undefined) owner = call.owner;
      else if (owner !== call.owner) return { kind: 'ambiguous' };
      candidates += 1;
      if (call.options?.onServerRequest === undefined) continue;
      chosen ??= call;
    }
    if (owner === undefined) return uncounted ? { kind: 'ambiguous' } : { kind: 'none' };
    const handler = chosen?.options?.onServerRequest;
    if (chosen === undefined || handler === undefined) return { kind: 'owner', owner };
    // Several calls of the owner: any of them may have asked, so the request is not tied to the oldest one's end (it
    // was cancelled when that call finished while the one that asked still waited for the answer).
    return candidates === 1
      ? { kind: 'call', owner: chosen.owner, handler }
      : { kind: 'call', owner: chosen.owner, handler: (request, signal) => handler(request, signal, SHARED) };
  }

  fail(id: number, error: unknown): void {
    const call = this.calls.get(id);
    if (call === undefined) return;
    this.finish(call);
    call.reject(error);
  }

  /**
   * Gives up on every call of an owner that is going (its session closed), telling the upstream as a timeout or an
   * abort does: on a connection other owners go on using, the server would otherwise run on tools whose results
   * nobody will take. Never throws, whatever the connection's state. Returns until when work of the owner's may still
   * run at the server (calls given up now or lately, tasks it created; 0 for none).
   */
  cancelOwner(owner: Owner, reason: string, error: unknown): number {
    const now = Date.now();
    // What of the owner's may run on at the server after it went: its calls given up now or lately (a server may ignore
    // the cancellation), and its tasks (found by re-review: a task, or a call its agent had cancelled, left nothing).
    let until = this.workUntil.get(owner) ?? 0;
    this.workUntil.delete(owner);
    for (const [token, kept] of [...this.taskTokens]) if (kept.owner === owner) this.taskTokens.delete(token);
    for (const call of [...this.calls.values()]) {
      // Settled meanwhile by what an earlier cancellation's write set off: nothing left to end.
      if (call.owner !== owner || call.outlivesOwner || !this.calls.has(call.id)) continue;
      this.finish(call);
      call.written?.abort?.();
      this.cancelled(call, reason, error);
      until = Math.max(until, now + call.timeoutMs);
    }
    return until > now ? until : 0;
  }

  failAll(error: unknown): void {
    // The connection's work ends with it (a process that exited): no task or given-up call of anyone's runs on there
    // (found by re-review: a session leaving after a restart still counted its old work, for up to an hour).
    this.taskTokens.clear();
    this.workUntil.clear();
    for (const call of [...this.calls.values()]) {
      call.written?.abort?.();
      this.fail(call.id, error);
    }
  }

  /**
   * Fails the calls whose messages were taken (or had no acknowledgement to wait for) with `error`; a call whose message
   * is still under way is left to what becomes of it (its write's failure fails it).
   */
  failTaken(error: unknown): void {
    for (const call of [...this.calls.values()]) if (call.written === undefined) this.fail(call.id, error);
  }

  private giveUp(call: Call<Owner>, reason: string, error: unknown): void {
    if (!this.calls.has(call.id)) return;
    this.finish(call);
    // Its message may still be on its way (a POST the upstream holds): let go of it.
    call.written?.abort?.();
    if (reason === 'timeout') this.hooks.onTimeout?.(call.sentAt);
    // A call given up may still run at the server for its timeout. Not one that outlives its owner: that owner may be
    // gone for good, and would be held here (found by re-review).
    if (!call.outlivesOwner) this.noteWork(call.owner, Date.now() + call.timeoutMs);
    this.cancelled(call, reason, error);
  }

  /** Work of `owner`'s may run at the server until `until` (see `cancelOwner`); expired entries go as others come. */
  private noteWork(owner: Owner, until: number): void {
    const now = Date.now();
    for (const [other, at] of this.workUntil) if (at <= now) this.workUntil.delete(other);
    this.workUntil.set(owner, Math.max(this.workUntil.get(owner) ?? 0, until));
  }

  /** A call we stopped waiting for: `notifications/cancelled` goes upstream (not for an initialize), then it fails. */
  private cancelled(call: Call<Owner>, reason: string, error: unknown): void {
    // MCP: only a request that was issued is cancelled; one whose message never left (aborted in its queue) was not.
    if (call.cancellable && call.written?.reachedUpstream?.() !== false) {
      try {
        const written = this.hooks.write(encodeCancelled(call.id, reason), true);
        if (written !== undefined) written.catch(() => undefined);
      } catch {
        // the connection is gone; nothing to cancel
      }
    }
    call.reject(error);
  }

  private finish(call: Call<Owner>): void {
    this.calls.delete(call.id);
    if (call.timer !== undefined) clearTimeout(call.timer);
    if (call.onAbort !== undefined) call.options?.signal?.removeEventListener('abort', call.onAbort);
  }
}
