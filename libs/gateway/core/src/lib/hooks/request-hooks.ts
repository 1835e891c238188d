import type { IrRateLimit } from '@portcullis/contracts/policy-ir';
import type { CancelSignal, JsonRpcId, SessionRecord, UpstreamConfig } from '@portcullis/gateway/mcp';
import type { MessageSink } from '../dispatch/sinks';

/** The MCP object a routed request is about, named as its upstream knows it. */
export type TargetKind = 'tool' | 'prompt' | 'resource';

/** The tool whose call created a task, as its upstream names it. */
export interface TaskTool {
  readonly upstream: UpstreamConfig;
  readonly kind: 'tool';
  readonly name: string;
}

/** What the hooks know about one request of a session. */
export interface RequestInfo {
  readonly record: SessionRecord;
  readonly method: string;
  readonly requestId: JsonRpcId;
  readonly traceId: string;
  /** Set for requests routed to one upstream object (tools/call, prompts/get, resources/read, ...). */
  readonly target?: { readonly upstream: UpstreamConfig; readonly kind: TargetKind; readonly name: string };
  /**
   * Set for requests about a task (tasks/get, tasks/result, tasks/cancel): the tool whose call created it, as its
   * upstream names it. Not a call of the tool (no arguments, nothing is counted or held for it): what the policy may
   * decide again (is the tool still the principal's to use?) and the audit trail records the request as about.
   */
  readonly taskOf?: TaskTool;
  /** Tool-call / prompt arguments as the agent sent them. */
  readonly arguments?: Readonly<Record<string, unknown>>;
  /** The agent's IP address as the HTTP layer sees it (behind a trusted proxy: the forwarded one). */
  readonly clientIp?: string;
  /** The credential the request presented (an API key's id), when the transport knows it. */
  readonly credentialId?: string;
  /** The request's start (ms since the epoch). */
  readonly startedAt: number;
  /** The agent's `_meta.progressToken`, when it sent one (a hook that waits may report progress with it). */
  readonly progressToken?: string | number;
}

/** A hook's verdict on a request it let through. Every field is optional; the engine merges them in hook order. */
export interface Admission {
  /** The policy decision that let the request through (for the audit trail). */
  readonly decision?: 'allow' | 'require_approval';
  readonly reason?: string;
  readonly ruleIds?: readonly string[];
  readonly snapshotVersion?: number | null;
  readonly approvalId?: string;
  /** Rate limits of the rules that let the request through (enforced by the rate-limit hook). */
  readonly rateLimits?: readonly { readonly ruleId: string; readonly rateLimit: Readonly<IrRateLimit> }[];
  /** Arguments that replace the agent's (an approver edited them). */
  readonly arguments?: Readonly<Record<string, unknown>>;
  /**
   * Progress notifications a hook already sent the agent for this request (the approval wait's): the upstream's own
   * progress values are shifted past them, since progress must increase within a request.
   */
  readonly progressSent?: number;
  /** Called once when the request has finished, whatever the outcome (releases a concurrency slot, ...). */
  readonly release?: () => void;
  /**
   * Called once by the engine right before the request runs, after every hook admitted it and the engine's own last
   * checks passed: a rejection refuses it after all. The approval gate marks the approval used here, so an approved
   * call refused after the wait (the key revoked meanwhile, the tool's definition changed, the session ended) is not
   * recorded as executed.
   */
  readonly confirm?: () => Promise<void>;
}

/** How a request ended, for the audit trail. */
export interface RequestOutcome {
  readonly outcome: 'ok' | 'error' | 'denied' | 'rate_limited' | 'upstream_error' | 'cancelled';
  /** The merged admission; absent when a hook refused the request. */
  readonly admission?: Admission;
  /**
   * When a hook refused the request: what the hooks before it had admitted it with (the policy's decision of a call
   * then rate-limited, held for approval, or refused after its approval). Set by `composeHooks`.
   */
  readonly prior?: Admission;
  /** The refusal or error, when there was one. */
  readonly error?: { readonly code: number; readonly message: string; readonly data?: unknown };
  /** The error is the upstream's own answer (its `data` the upstream's to write), whatever the outcome is called. */
  readonly fromUpstream?: boolean;
  /** The upstream's result (tools/call, prompts/get, resources/read): for audit redaction, never changed. */
  readonly result?: Readonly<Record<string, unknown>>;
  readonly latencyMs: number;
}

/**
 * Extension points on the request path: policy, rate limits, approvals and audit plug in here without the
 * engine knowing about them. Hooks run in order; a hook refuses a request by throwing a `GatewayRequestError`
 * (its code, message and data go to the agent as the JSON-RPC error).
 */
export interface RequestHooks {
  /**
   * Before the request does any work. Synchronous answers keep the hot path free of promise hops; a hook that
   * must wait (approval, a Redis limit) returns a promise and may send progress through `sink`. `prior` is what
   * the earlier hooks admitted with (e.g. the policy decision and its rate limits).
   */
  // A property, not a method: parameters are then checked strictly, so a hook cannot narrow `signal` back to an
  // AbortSignal (it gets a Cancellation).
  admit?: (
    info: RequestInfo,
    sink: MessageSink,
    signal: CancelSignal,
    prior: Admission | undefined,
  ) => Admission | undefined | Promise<Admission | undefined>;
  /**
   * Narrows one upstream's part of a listing to what the session's principal may see. Synchronous. `fromCache`: the
   * items are a page this session's upstream session answered earlier (see `listCacheMs`), not a fresh answer.
   */
  filter?(
    record: SessionRecord,
    kind: TargetKind | 'resourceTemplate',
    upstream: UpstreamConfig,
    items: readonly Record<string, unknown>[],
    fromCache?: boolean,
  ): readonly Record<string, unknown>[];
  /**
   * Whether an item of another URI in a `resources/read` answer (a directory's file) may reach the agent: decided as a
   * read of that URI by the same request would be (its principal, time and address), without a read's side effects
   * (no limit counted, nothing audited, nothing held). Only an outright allow passes: what would be denied, or held for
   * a person's approval, is not handed over through its parent. Every hook that has it must pass. Synchronous.
   */
  alsoReadable?(info: RequestInfo, uri: string): boolean;
  /**
   * Before the answer to a request that waited upstream is handed over (`tasks/result`, which may wait up to an hour):
   * a hook refuses it now by throwing a `GatewayRequestError`, as its `admit` would have (the policy changed while it
   * waited). Synchronous; only requests that were admitted meet it.
   */
  recheck?(info: RequestInfo): void;
  /**
   * What of an upstream's `instructions` (its initialize answer's guidance for the model, as a whole) reaches this
   * session's agent: the text to relay, or undefined to leave it out. Hooks run in order, each on what the last
   * relayed; one that leaves it out ends it. Synchronous; once per upstream, when the session opens. A hook that
   * throws leaves it out (this is model-read text: failing closed costs guidance, failing open may pass an injection).
   */
  instructions?(record: SessionRecord, upstream: UpstreamConfig, text: string): string | undefined;
  /**
   * Before a message an upstream sends about a task (`notifications/tasks/status`, or a request it makes within the
   * task: elicitation, sampling) is passed on to the agent: a hook that would now refuse reading the task (its `admit`
   * with `taskOf`) throws a `GatewayRequestError`, and the message is dropped (a request is refused to the upstream).
   * `method` is the message's. Synchronous.
   */
  taskMessage?(record: SessionRecord, taskOf: TaskTool, method: string): void;
  /**
   * Before a message an upstream sends the agent outside any call of the agent's (on the upstream session's own
   * stream: a log message, a request for the agent's roots, a sampling or elicitation request, a list change): a hook
   * that keeps this upstream from the session's agent throws a `GatewayRequestError`, and the message is dropped (a
   * request is refused to the upstream with the error's code). `method` is the message's. Synchronous.
   */
  upstreamMessage?(record: SessionRecord, upstream: UpstreamConfig, method: string): void;
  /** After every request (initialize included). Must not throw or block: it is fire-and-forget. */
  completed?(info: RequestInfo, outcome: RequestOutcome): void;
}

/**
 * Holds a call that the policy says needs a human's approval until it is decided or times out. Resolves with
 * the admission to go on with (possibly edited arguments); throws a `GatewayRequestError` when the approval is
 * denied, expires or cannot be created. Implemented by the approvals feature; the policy hook calls it.
 */
export interface ApprovalGate {
  hold: (
    info: RequestInfo,
    decision: {
      readonly reason: string;
      readonly ruleIds: readonly string[];
      readonly snapshotVersion: number;
    },
    sink: MessageSink,
    signal: CancelSignal,
  ) => Promise<Admission>;
}

const merge = (into: Admission | undefined, next: Admission | undefined): Admission | undefined => {
  if (!next) return into;
  if (!into) return next;
  const first = into.release;
  const second = next.release;
  const merged: { -readonly [K in keyof Admission]: Admission[K] } = { ...into, ...next };
  if (first && second) {
    merged.release = () => {
      first();
      second();
    };
  } else if (first) merged.release = first;
  else if (second) merged.release = second;
  return merged;
};

/**
 * One `RequestHooks` out of several, run in order. If a later hook refuses, the releases of the earlier
 * admissions run before the refusal propagates, and the request's outcome carries what they admitted (`prior`).
 */
export function composeHooks(hooks: readonly RequestHooks[]): RequestHooks {
  // What the hooks before a refusing one admitted, until the refused request completes. Written only on a refusal:
  // before, it was dropped with the refusal, and a call held for approval that then ended other than approved was
  // recorded with no decision and no snapshot version.
  const refusedAfter = new WeakMap<RequestInfo, Admission>();
  const admitters: AdmitFn[] = [];
  const filters: FilterFn[] = [];
  const observers: CompletedFn[] = [];
  const recheckers: RecheckFn[] = [];
  const taskMessageCheckers: TaskMessageFn[] = [];
  const upstreamMessageCheckers: UpstreamMessageFn[] = [];
  const readChecks: AlsoReadableFn[] = [];
  const instructionGates: InstructionsFn[] = [];
  for (const hook of hooks) {
    if (hook.instructions) instructionGates.push(hook.instructions.bind(hook));
    if (hook.admit) admitters.push(hook.admit.bind(hook));
    if (hook.recheck) recheckers.push(hook.recheck.bind(hook));
    if (hook.taskMessage) taskMessageCheckers.push(hook.taskMessage.bind(hook));
    if (hook.upstreamMessage) upstreamMessageCheckers.push(hook.upstreamMessage.bind(hook));
    if (hook.alsoReadable) readChecks.push(hook.alsoReadable.bind(hook));
    if (hook.filter) filters.push(hook.filter.bind(hook));
    if (hook.completed) observers.push(hook.completed.bind(hook));
  }
  const composed: RequestHooks = {};
  if (admitters.length > 0) {
    composed.admit = (info, sink, signal) => {
      let merged: Admission | undefined;
      for (let index = 0; index < admitters.length; index++) {
        const admit = admitters[index] as AdmitFn;
        let verdict: ReturnType<AdmitFn>;
        try {
          verdict = admit(info, sink, signal, merged);
        } catch (error) {
          refused(refusedAfter, info, merged, error);
          throw error;
        }
        if (verdict instanceof Promise)
          return continueAsync(admitters.slice(index + 1), verdict, merged, info, sink, signal, refusedAfter);
        merged = merge(merged, verdict);
      }
      try {
        return approvedIfNeeded(merged);
      } catch (error) {
        refused(refusedAfter, info, merged, error);
        throw error;
      }
    };
  }
  if (filters.length > 0) {
    composed.filter = (record, kind, upstream, items, fromCache) =>
      filters.reduce((list, filter) => filter(record, kind, upstream, list, fromCache), items);
  }
  if (recheckers.length > 0) {
    composed.recheck = (info) => {
      for (const recheck of recheckers) recheck(info);
    };
  }
  if (taskMessageCheckers.length > 0) {
    composed.taskMessage = (record, taskOf, method) => {
      for (const check of taskMessageCheckers) check(record, taskOf, method);
    };
  }
  if (readChecks.length > 0) {
    composed.alsoReadable = (info, uri) => readChecks.every((check) => check(info, uri));
  }
  if (upstreamMessageCheckers.length > 0) {
    composed.upstreamMessage = (record, upstream, method) => {
      for (const check of upstreamMessageCheckers) check(record, upstream, method);
    };
  }
  if (instructionGates.length > 0) {
    composed.instructions = (record, upstream, text) => {
      let relayed: string | undefined = text;
      for (let index = 0; index < instructionGates.length && relayed !== undefined; index++) {
        relayed = (instructionGates[index] as InstructionsFn)(record, upstream, relayed);
      }
      return relayed;
    };
  }
  if (observers.length > 0) {
    composed.completed = (info, reported) => {
      // Only a refusal (no admission, not ok) looks for what was admitted before it.
      let outcome = reported;
      if (reported.admission === undefined && reported.outcome !== 'ok') {
        const prior = refusedAfter.get(info);
        if (prior !== undefined) outcome = { ...reported, prior };
      }
      for (const observe of observers) {
        try {
          observe(info, outcome);
        } catch {
          // An observer's failure must never affect the request or the other observers.
        }
      }
    };
  }
  return composed;
}

/** A hook refused the request: the earlier admissions' releases run, and what they admitted is kept for `completed`. */
/** Admissions a refusal was made after, inside the hook that refused (`refusalAfter`). */
const admittedBefore = new WeakMap<object, Admission>();

/**
 * `error`, noted as refusing a request its own hook had admitted with `admission` first (a call approved with edited
 * arguments, then refused by the policy's check after the wait): the request's outcome carries it (`prior`), so its
 * audit event records the arguments that were refused. Before, it carried what the hooks before had admitted, and the
 * event recorded the agent's arguments, which nothing had refused.
 */
export function refusalAfter<E extends object>(error: E, admission: Admission): E {
  admittedBefore.set(error, admission);
  return error;
}

function refused(refusedAfter: WeakMap<RequestInfo, Admission>, info: RequestInfo, merged: Admission | undefined, error?: unknown): void {
  const carried = typeof error === 'object' && error !== null ? admittedBefore.get(error) : undefined;
  const admitted = carried === undefined ? merged : merge(merged, carried);
  if (admitted === undefined) return;
  admitted.release?.();
  refusedAfter.set(info, admitted);
}

/**
 * A call the policy said needs a person's approval runs only once it has one: if no hook held it (a composition that
 * left out the policy's hold hook), it is refused rather than run unapproved. The caller releases what was admitted.
 */
function approvedIfNeeded(merged: Admission | undefined): Admission | undefined {
  if (merged?.decision === 'require_approval' && merged.approvalId === undefined) {
    throw new Error('a call needing approval was admitted without one (no hook held it)');
  }
  return merged;
}

type AdmitFn = NonNullable<RequestHooks['admit']>;
type FilterFn = NonNullable<RequestHooks['filter']>;
type CompletedFn = NonNullable<RequestHooks['completed']>;
type RecheckFn = NonNullable<RequestHooks['recheck']>;
type TaskMessageFn = NonNullable<RequestHooks['taskMessage']>;
type UpstreamMessageFn = NonNullable<RequestHooks['upstreamMessage']>;
type AlsoReadableFn = NonNullable<RequestHooks['alsoReadable']>;
type InstructionsFn = NonNullable<RequestHooks['instructions']>;

async function continueAsync(
  rest: readonly AdmitFn[],
  pending: Promise<Admission | undefined>,
  merged: Admission | undefined,
  info: RequestInfo,
  sink: MessageSink,
  signal: CancelSignal,
  refusedAfter: WeakMap<RequestInfo, Admission>,
): Promise<Admission | undefined> {
  try {
    merged = merge(merged, await pending);
    for (const admit of rest) {
      // Synchronous admitters (audit's fail-closed check) answer without an extra promise hop.
      const verdict = admit(info, sink, signal, merged);
      merged = merge(merged, verdict instanceof Promise ? await verdict : verdict);
    }
    return approvedIfNeeded(merged);
  } catch (error) {
    refused(refusedAfter, info, merged, error);
    throw error;
  }
}
