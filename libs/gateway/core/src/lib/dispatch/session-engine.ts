import { randomBytes } from 'node:crypto';
import {
  Cancellation,
  endpointOf,
  untilAborted,
  negotiateVersion,
  newSessionId,
  resultResponse,
  sameConnection,
  sessionElsewhere,
  sessionBelongsTo,
  UpstreamRpcError,
  UpstreamUnavailableError,
  JSON_RPC,
  LOG_LEVELS,
  MAX_SUBSCRIBED_URI_CHARS,
  MAX_SUBSCRIPTIONS_PER_SESSION,
  REFUSED_SUBSCRIPTION_CODES,
  withLogLevel,
  subscribedUpstreams,
  subscriptionCovers,
  subscriptionFits,
  withSubscription,
  type CancelSignal,
  type ClientIdentity,
  type UpstreamSwap,
  type JsonRpcError,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
  type Principal,
  type RecordChange,
  type RecordEdit,
  type SessionOwner,
  type SessionRecord,
  type SessionStore,
  TaskRouteError,
  type StoredTaskRoute,
  type TaskRouteStore,
  type UpstreamConfig,
  type UpstreamConnector,
  type UpstreamSession,
  type UpstreamSessionState,
  isId,
} from '@portcullis/gateway/mcp';
import { MAX_INSTRUCTIONS_CHARS } from '@portcullis/contracts/tool-pins';
import { isStackExhausted } from '@portcullis/shared/util-errors';
import type { Logger } from '@portcullis/shared/util-logger';
import { maskListedItem, maskValue, redactSecrets, secretMaskOf, type SecretMask } from '@portcullis/shared/util-redact';
import { GATEWAY_RPC, rpcError } from '../http/gateway-error';
import { decodeCursor, encodeCursor, MAX_CURSOR_LENGTH, MAX_UPSTREAM_CURSOR_LENGTH, MAX_UPSTREAM_PAGES, newCursorKey, type ListKind, type PendingPage } from '../listing/cursor';
import { isValidExposedName, isValidExposedPromptName, MAX_NAME_LENGTH, MAX_PROMPT_NAME_LENGTH, splitExposedName } from '../naming/tool-names';
import { ExposedItems, type ItemKey } from '../listing/exposed-items';
import { deepFreeze } from '../listing/immutable';
import { ListingPageStore, PageCache } from '../listing/page-cache';
import type { UpstreamRegistry } from '../registry/upstream-registry';
import type { Admission, RequestHooks, RequestInfo, RequestOutcome, TargetKind } from '../hooks/request-hooks';
import { cancelsTasks, clientCapabilityGap, mergeServerCapabilities, relayableClientCapabilities, relayedSamplingParams, runsToolCallsAsTasks } from './capabilities';
import { isTerminalTaskStatus, offersTasks, RELATED_TASK, referencedTask, relatedTaskId, renameTask, TASK_NOT_FOUND, taskLifetimeMs, upstreamTaskParams } from './tasks';
import { NO_STREAM, PostStreams, type MessageSink } from './sinks';
import { ListenerMap } from './listener-map';
import { expandKnown } from './template-expansion';
import { Allowance, Allowances } from './allowance';
import { RouteBudget, RouteTable } from './route-table';
import { checkedItem, listable } from '../listing/well-formed';
import { completionProblem, metaProblem, relayedCapabilitiesProblem, textMapProblem } from './request-params';
import { anyRunMatcher, TEMPLATE_EXPRESSION, uriTemplateMatcher, type UriMatcher } from './uri-template-match';
import { ADAPTED_BEFORE, ADAPTED_REQUESTS_BEFORE, adaptCallResult, adaptPromptResult, adaptRelayedRequest, clientCapabilitiesOf, isBefore } from './version-adapt';

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

export interface EngineOptions {
  readonly separator: string;
  /** Bound on each upstream's part of a merged listing; a slower upstream drops out of that page. */
  readonly listTimeoutMs: number;
  readonly serverInfo: { readonly name: string; readonly version: string };
  /** Sessions not used on this replica for this long lose their in-memory state here (Redis keeps the record). */
  readonly localIdleMs: number;
  /** Identifies this replica in gateway-minted request ids (cross-replica answer routing). */
  readonly replicaId: string;
  /**
   * How long a listing page (tools, prompts, resources, templates) an upstream session answered is reused for the
   * same session before the upstream is asked again; an upstream's `list_changed` notification drops it at once.
   * 0 or absent: every listing asks the upstreams.
   */
  readonly listCacheMs?: number;
  /** Bound on the listing pages cached for all sessions of this replica; past it the oldest goes. Default 2,000. */
  readonly listCacheMaxPages?: number;
  /**
   * Bound on those pages' approximate JSON size together (default 256 MiB); a page over a sixteenth of it is not
   * cached at all.
   */
  readonly listCacheMaxBytes?: number;
  /**
   * How often, at most, each session tries again an upstream of its tenant it does not have (down at initialize, or
   * configured since): on a listing, and for an agent listening on its standalone stream, in the background. Default
   * 15 s.
   */
  readonly joinRetryMs?: number;
  /**
   * Longest `initialize` waits for the tenant's upstreams to connect (default 10 s): one still connecting then joins the
   * session once connected, and the agent hears its lists changed.
   */
  readonly initializeWaitMs?: number;
  /**
   * Longest an upstream's request to the agent (sampling, elicitation, roots) waits for its answer when no call bounds
   * it: one on the standalone stream, or one about a task (default 5 min). One made during a call is bounded by the
   * call: its timeout, and its end. Past it the agent is told `notifications/cancelled` and the upstream gets an error.
   */
  readonly relayTimeoutMs?: number;
  /**
   * Most sessions one principal (an agent client, a user) may hold at once in its tenant, over all replicas; an
   * initialize past it is refused with RATE_LIMITED (HTTP 429). A place is taken atomically before the upstreams are
   * contacted (`SessionStore.reserve`), so initializes in parallel cannot all pass. 0 or absent: no bound.
   */
  readonly maxSessionsPerPrincipal?: number;
  /**
   * How often a replica announces on the bus the agents' standalone streams it holds (default 30 s), so that the
   * others put a session's messages on the bus only while someone listens (`ListenerMap`). A stream not announced for
   * two and a half times this long counts as gone.
   */
  readonly listenerAnnounceMs?: number;
  /**
   * How long an upstream session opened for a session (at its initialize, or joining it later) holds its stream for
   * messages outside requests (a Streamable HTTP upstream's GET) before the agent listens on this replica (default
   * 30 s). Agents open their stream right after initialize, racing their first call: an upstream that asks or tells
   * something outside requests then (an elicitation during that call, sent on its GET) is heard. 0: only while the
   * agent listens.
   */
  readonly firstListenMs?: number;
}

/** Longest `clientInfo.name` / `clientInfo.version` an initialize may carry. */
export const MAX_CLIENT_INFO_LENGTH = 256;
/** Longest JSON of the `capabilities` an initialize may carry (real clients send well under 1 KiB). */
export const MAX_CAPABILITIES_JSON = 16 * 1024;
/** Deepest nesting of objects and arrays in an initialize's `capabilities` or `clientInfo`. */
export const MAX_INITIALIZE_DEPTH = 32;

/** Whether `value` nests objects or arrays more than `limit` levels deep (walked only that far). */
function nestedDeeperThan(value: unknown, limit: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (limit === 0) return true;
  for (const child of Array.isArray(value) ? value : Object.values(value)) if (nestedDeeperThan(child, limit - 1)) return true;
  return false;
}

/** Length of a value's JSON text; a value that cannot be serialised (a cycle cannot come from JSON.parse) counts as too long. */
function jsonLength(value: unknown): number {
  try {
    return JSON.stringify(value)?.length ?? 0;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/** What `promise` resolves to, or undefined if it has not within `ms`. */
function withinMs<T>(promise: Promise<T | undefined>, ms: number): Promise<T | undefined> {
  return new Promise<T | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    timer.unref();
    void promise.then((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/**
 * `signal` as an AbortSignal, to combine with others (`AbortSignal.any`): itself when it is one, else one aborted with
 * it. Its listener stays on `signal` until that aborts: only for signals that live no longer than a request.
 */
function asAbortSignal(signal: CancelSignal): AbortSignal {
  if (signal instanceof AbortSignal) return signal;
  const controller = new AbortController();
  if (signal.aborted) controller.abort(signal.reason);
  else signal.addEventListener('abort', () => controller.abort(signal.reason), { once: true });
  return controller.signal;
}

/**
 * `promise`, or an upstream timeout once `deadline` fires first. The promise itself goes on (a connect under way is
 * kept for the next request): only this caller stops waiting.
 */
const untilDeadline = <T>(promise: Promise<T>, deadline: AbortSignal | undefined): Promise<T> =>
  untilAborted(promise, deadline, () => new UpstreamUnavailableError('timeout', 'The upstream did not answer in time'));

/**
 * `record` with the subscriptions `held` (URI → upstream id) added, or undefined when that changes nothing: all held
 * already, or past the bounds (`withSubscription`).
 */
function withSubscriptions(record: SessionRecord, held: ReadonlyMap<string, string>): SessionRecord | undefined {
  let edited: SessionRecord | undefined;
  for (const [uri, upstreamId] of held) edited = withSubscription(edited ?? record, upstreamId, uri, true) ?? edited;
  return edited;
}

/** The capability area whose `listChanged` flag lets the gateway send each list-change notification. */
const LIST_CHANGED_AREA: ReadonlyMap<string, string> = new Map([
  ['notifications/tools/list_changed', 'tools'],
  ['notifications/prompts/list_changed', 'prompts'],
  ['notifications/resources/list_changed', 'resources'],
]);

/**
 * Whether an upstream's notification says one of MCP's lists changed. Only these three: another method ending in
 * `/list_changed` is an ordinary notification (relayed as such), never a key of the list-change throttle, whose map
 * and bus messages are per kind (an upstream spelling the method anew each time got a broadcast to every replica each).
 */
const isListChange = (method: string): boolean => LIST_CHANGED_AREA.has(method);

/** Cross-replica messages (Redis pub/sub in production; direct calls in tests). */
export interface ReplicaBus {
  /** Every replica: a session ended, or a request of a session was cancelled. */
  broadcast(message: BusMessage): void;
  /** One replica: the answer to a server→client request it relayed. */
  sendTo(replicaId: string, message: BusMessage): void;
}

export type BusMessage =
  | { readonly type: 'session-ended'; readonly sessionId: string }
  | { readonly type: 'cancel'; readonly sessionId: string; readonly requestId: JsonRpcId; readonly reason?: string }
  | { readonly type: 'answer'; readonly sessionId: string; readonly response: JsonRpcResponse }
  /**
   * A session-level upstream message for whichever replica holds the agent's standalone stream: a notification, or a
   * server→client request tied to no call (its id names the replica waiting for the answer).
   */
  | { readonly type: 'standalone'; readonly sessionId: string; readonly message: JsonRpcNotification | JsonRpcRequest }
  /** The replica holding the agent's stream sent it a relayed request (`id`): the relaying replica may wait for the answer. */
  | { readonly type: 'standalone-delivered'; readonly sessionId: string; readonly id: string }
  /**
   * A replica took the agent's standalone stream of a session (`token` names that stream): every replica sees these
   * in the bus's one order, and a stream stays only until a later one is announced (MCP: a message goes out on one of
   * the client's streams, never on several).
   */
  | {
      readonly type: 'standalone-attached';
      readonly sessionId: string;
      readonly token: string;
      /** Set by replicas that announce the stream again while they hold it (`standalone-held`); older ones do not. */
      readonly renews?: true;
      /** The stream the new one resumes (the agent's Last-Event-ID): that one ends as resumed, any other as replaced. */
      readonly resumes?: string;
      /**
       * Set when the new stream resumes none: the older one ends as replaced. Neither field (a replica of an earlier
       * version, which says nothing of resumes): the older one ends as it did then, unmarked.
       */
      readonly fresh?: true;
    }
  /** A replica still holds these standalone streams (`[sessionId, token]`): sent every `listenerAnnounceMs`. */
  | {
      readonly type: 'standalone-held';
      /**
       * [session id, token] per stream held; replicas of this version add the stream's id, whether it is parked (1: its
       * agent gone, it only logs for a resume) and the stream it resumed ('' for none), for `settleHeldConflict`.
       */
      readonly streams: readonly (readonly [string, string] | readonly [string, string, string, number, string])[];
    }
  /** A replica let the standalone stream `token` go (its agent gone past the wait, or the session ended there). */
  | { readonly type: 'standalone-detached'; readonly sessionId: string; readonly token: string }
  /**
   * A replica let a session's upstream sessions go (idle here) while its agent listened elsewhere: the replica holding
   * the agent's stream asks for the upstreams' streams now (they may have been held here: SDK servers allow one).
   */
  | { readonly type: 'upstreams-released'; readonly sessionId: string }
  /** The agent's progress on a request another replica relayed to it (its token is that request's id). */
  | { readonly type: 'relayed-progress'; readonly sessionId: string; readonly params: Record<string, unknown> }
  /** An upstream of a session said its list changed: every replica drops the session's cached pages of it. */
  | { readonly type: 'lists-changed'; readonly sessionId: string; readonly upstreamId: string; readonly resources?: boolean }
  /** A replica saw a session's task end that it holds no slots for: the replica holding them gives them back. */
  | { readonly type: 'task-ended'; readonly sessionId: string; readonly taskId: string }
  /**
   * The agent changed its log level or subscriptions through one replica: every replica holding the session reads them
   * from the record (the log level filters what it relays, on the agent's stream it may hold).
   */
  | { readonly type: 'agent-state'; readonly sessionId: string }
  /** The agent resumed POST stream `streamId` (a GET with its Last-Event-ID): the replica writing it stops sending on it. */
  | { readonly type: 'post-resumed'; readonly sessionId: string; readonly streamId: string; readonly token: string }
  /** The agent's roots changed (its notice reached replica `from`): upstream sessions held per replica are told. */
  | { readonly type: 'roots-changed'; readonly sessionId: string; readonly from: string }
  /**
   * A call of the session became task `task` with progress token `token` on `upstreamId`: its progress may come on the
   * upstream session's own stream, which another replica may hold (`LiveSession.taskProgress`).
   */
  | { readonly type: 'task-progress'; readonly sessionId: string; readonly upstreamId: string; readonly token: string | number; readonly task: string; readonly shift?: number };

export interface EngineDeps {
  readonly registry: UpstreamRegistry;
  readonly connector: UpstreamConnector;
  readonly sessions: SessionStore & {
    forget?(id: string): void;
    /** Which of these sessions still have a record (enables closing upstream sessions on idle expiry). */
    existing?(ids: readonly string[]): Promise<Set<string>>;
  };
  readonly logger: Logger;
  readonly bus?: ReplicaBus;
  /** Policy, rate limits, approvals, audit (see `RequestHooks`). */
  readonly hooks?: RequestHooks;
  readonly options: EngineOptions;
  /**
   * Routes of the tasks (MCP 2025-11-25) upstreams created for each session. Without it the gateway offers no tasks:
   * a task-augmented `tools/call` is forwarded as a plain call.
   */
  readonly tasks?: TaskRouteStore;
}

/** Where a tool or prompt name the agent used goes: the upstream, and the name the upstream gave it. */
interface ExposedTarget {
  readonly upstreamId: string;
  readonly name: string;
  readonly config: UpstreamConfig;
}

/** Decides once, for a routed request, whether it may go on (see `RequestHooks.admit`). */
type Gate = (target?: RequestInfo['target'], args?: Readonly<Record<string, unknown>>, taskOf?: RequestInfo['taskOf']) => Promise<Admission | undefined>;

interface LiveUpstream {
  readonly config: UpstreamConfig;
  readonly session: Promise<UpstreamSession>;
  /** `session` once it resolved (compared without waiting: is this entry still that session?). */
  current: UpstreamSession | undefined;
  /** Listing pages this upstream session answered recently: `method + cursor` → page (see `listCacheMs`). */
  readonly pages: PageCache;
}

/**
 * An upstream session just opened for a session, and whether it is a new one in place of a lost one: then `replay`
 * is the record to take the agent's subscriptions and log level from ('reload': read it from the store first).
 */
interface Opened {
  readonly session: UpstreamSession;
  readonly replay: SessionRecord | 'reload' | undefined;
}

/** An upstream list change acted on (`LiveSession.listNotices`), and the changes that came since. */
interface ListNotice {
  readonly timer: NodeJS.Timeout;
  /** What goes on the bus for a change folded in: the upstream, and whether it is its resources that changed. */
  readonly upstreamId: string;
  readonly resources: boolean;
  folded: boolean;
  /** How the agent is told of the last change folded in that it may hear of (`late`: at the end of the interval). */
  relay: ((late: boolean) => void) | undefined;
}

/** What this replica holds for a session: upstream connections, URI routes, streams, in-flight calls. */
interface LiveSession {
  record: SessionRecord;
  readonly upstreams: Map<string, LiveUpstream>;
  /** uri → upstream id, from resources/list pages this replica served. */
  readonly resourceRoutes: RouteTable<string>;
  /** uriTemplate → upstream id, from resources/templates/list pages. */
  readonly templateRoutes: RouteTable<TemplateRoute>;
  /**
   * URIs reads are waiting on a route walk for, and the upstream the walk found listing each: past MAX_RESOURCE_ROUTES
   * the route itself may be evicted before the walk ends.
   */
  readonly sought: Map<string, { waiting: number; upstreamId: string | undefined }>;
  /**
   * A walk of the resource listings under way to learn routes (`byUri`), and the `routesGeneration` it started in:
   * later unknown URIs of the same generation wait for it.
   */
  learningRoutes: { readonly generation: number; readonly walk: Promise<void> } | undefined;
  /** Counts the upstreams' resources list changes this replica heard of for the session. */
  routesGeneration: number;
  /** When (performance.now()) the last walk ended, complete or not; undefined: none since the last list change. */
  routesWalkedAt: number | undefined;
  standalone: MessageSink | undefined;
  /**
   * `standalone`'s announcement (`standalone-attached`), and whether it came back over the bus yet: announcements of
   * other streams that arrive before ours are older (the bus delivers in one order to every replica, sender included).
   */
  standaloneToken:
    | {
        readonly token: string;
        confirmed: boolean;
        readonly resumedHere?: boolean;
        readonly attachedAt: number;
        readonly resumes?: string;
        /** The streams an agent resuming would still name, holding no id of this one (see `standaloneResuming`). */
        readonly standsFor?: readonly string[];
      }
    | undefined;
  /**
   * Until when upstream sessions just opened here listen whether or not anyone does (`EngineOptions.firstListenMs`),
   * and the timer that ends it.
   */
  firstListenUntil: number;
  firstListenTimer: NodeJS.Timeout | undefined;
  /**
   * Upstream id → the upstream session id that upstream forgot (HTTP 404): while the record still names it, the
   * upstream is connected afresh instead of resumed (MCP: the client starts a new session), and the record updated.
   */
  readonly forgottenUpstreams: Map<string, string>;
  /** Upstream id → when this replica last started a new upstream session for it (renewals are spaced out). */
  readonly renewedAt: Map<string, number>;
  /** When (performance.now()) the upstreams were last told the agent's roots changed, or a notice waiting to go. */
  rootsNotice: number | 'scheduled' | undefined;
  /** The notice waiting to go is for the upstream sessions all replicas share too (this replica got the agent's). */
  rootsNoticeShared: boolean;
  /**
   * An upstream's list changes acted on here in the last LIST_CHANGED_INTERVAL_MS, by `<method>\u0000<upstream id>`
   * (`listsChanged`): the timer that ends the interval, and whether more came in it (told once at its end, `relay`).
   */
  readonly listNotices: Map<string, ListNotice>;
  /**
   * Upstreams whose session on this replica ended by itself and cannot be resumed (a legacy SSE stream dropped): the
   * next one opened for it is a new upstream session, told the agent's subscriptions and log level again (`replay`).
   */
  readonly lostUpstreams: Set<string>;
  readonly inflight: Map<string, Cancellation>;
  /**
   * Subscriptions the agent is making through this replica that the record does not hold yet: an upstream may send
   * an update before its answer to the subscribe, or before the record is written (`subscribedTo`).
   */
  readonly subscribing: { readonly upstreamId: string; readonly uri: string }[];
  /**
   * Subscriptions the upstream took that the store failed to record, URI → upstream id: kept apart from `record`, which
   * the next write or `agent-state` reload replaces with the stored one, so `subscribedTo` still relays their updates.
   * Each goes when the agent unsubscribes from it, or once a later write records it (`recordAgentState` adds them all).
   */
  readonly unrecorded: Map<string, string>;
  /** Listings (`<kind>\u0000<upstream id>`) being asked again after the upstream was left out of a page (`recheckLeftOut`). */
  readonly rechecking: Set<string>;
  /** The session's principal as `inflightByPrincipal` counts it (`ownerKey`), built once. */
  readonly principalKey: string;
  /** Those announced back after a recheck, until a listing has them answer within the deadline again. */
  readonly announcedBack: Set<string>;
  /** Ids of upstream requests relayed to the agent and not answered yet (at most MAX_RELAYED_PER_SESSION). */
  readonly relayed: Set<string>;
  /**
   * Concurrency slots (rate limits' `maxConcurrent`) of calls that became tasks, by the agent's task id: held while the
   * task runs, as the call's would be, until it is seen to end here or the call timeout passes (the slot's own lease).
   */
  readonly taskSlots: Map<string, () => void>;
  /**
   * Progress tokens of the session's task-augmented calls (`taskProgressKey`: upstream and token) → the agent's task id.
   * MCP: a task's token stays valid for the task's lifetime, so its progress, which comes after the call has answered
   * (on the upstream session's own stream, or late on the call's), is passed on for these tokens (and no others) on
   * the agent's standalone stream. Bounded; a task seen to end goes.
   */
  readonly taskProgress: Map<string, string>;
  /**
   * The same, of tasks seen to end: only progress the upstream queued for `tasks/result` may still come under them
   * (the agent polls a task to its end before asking for its result), and only on that request (`forward`).
   */
  readonly endedTaskProgress: Map<string, string>;
  /**
   * By the same keys, the progress a hook reported before the call became a task (an approval wait), which the task's
   * own progress is shifted past wherever it goes on: MCP has progress only increase (found by review: after the call's
   * answer it went out unshifted, backwards). Only tokens with some.
   */
  readonly taskProgressShift: Map<string, number>;
  /** Progress of the session's stream held until its task's token is known (`attach`), by the same keys: the last held. */
  readonly heldProgress: Map<string, Promise<void>>;
  /**
   * Task-augmented calls waiting for their answer, per upstream: each settles with the task it created once that is
   * recorded. A message about a task on the upstream session's own stream may come before the answer naming it (the
   * SDK's servers send the first status as they create the task): it waits for these (`unknownTaskMessage`).
   */
  readonly creatingTasks: Map<string, Set<Promise<TaskContext | undefined>>>;
  /**
   * Messages about a task, on the upstream sessions' own streams, queued behind one of the same task that waits for
   * the task to be known (`taskProgressKey`: upstream and task id): they keep their order.
   */
  readonly taskMessageChains: Map<string, Promise<void>>;
  /** Messages about tasks waiting in `taskMessageChains` or for their task to be known; bounded by MAX_HELD_TASK_MESSAGES. */
  heldTaskMessages: number;
  /** `relayClass` (an upstream id, and a kind of message) → what may still be relayed to the agent (RELAYED_NOTIFICATIONS_PER_SECOND). */
  readonly relayAllowances: Map<string, Allowance>;
  /**
   * The log level this replica's own upstream sessions (stdio, legacy SSE) were last told, to tell them a level stored
   * through another replica once, whichever way this replica's copy of the record takes it (`tellOwnLevel`).
   */
  toldLevel: string | undefined;
  /** Tasks seen to end here whose slots another replica holds, told to the others once (at most MAX_ANNOUNCED_TASK_ENDS). */
  readonly announcedTaskEnds: Set<string>;
  /** When this replica began reopening each upstream for a listening agent (the last minute's; see `mayReopen`). */
  readonly reopened: Map<string, number[]>;
  /**
   * Upstream id → when this replica last tried to join it to the session, and its configuration's version then (see
   * `joinMissing`): an edited upstream (repointed, repaired) is tried at once.
   */
  readonly joinTriedAt: Map<string, { readonly at: number; readonly version: number }>;
  /** Joins under way on this replica, by upstream id. */
  readonly joining: Map<string, JoinUnderway>;
  /** When this replica last read the stored record for upstreams another replica joined (see `adoptJoined`). */
  adoptedAt: number;
  /** That read while under way. */
  adopting: Promise<boolean> | undefined;
  lastUsed: number;
}

/**
 * Requests one principal (an agent client, a user) may have under way on one replica, over all its sessions. A call
 * goes on when its POST's connection drops (its answer then goes to no one, ADR 0007): without a bound one agent could
 * post calls and hang up, each holding an upstream connection up to its call timeout, until the tenant's connections to
 * that upstream were all taken (600 such calls locked another agent of the tenant out of it). Below the 128 a tenant's
 * pool keeps to one upstream. Past it a request is refused with -32029, HTTP 429 and Retry-After: 1. A tenant bounds a
 * principal more tightly, across replicas, with a policy rule's `maxConcurrent`.
 */
export const MAX_IN_FLIGHT_PER_PRINCIPAL = 96;

/**
 * Upstream requests (sampling, elicitation, roots) one session may have waiting on its agent at once. An agent that
 * never answers would otherwise let upstreams pile them up for as long as they wait.
 */
export const MAX_RELAYED_PER_SESSION = 32;

/**
 * What the agent is told when an upstream failed its part of a later listing page: -32602 when the upstream refused its
 * cursor (it expired there: MCP's answer to an invalid cursor, so the agent lists again from the start), otherwise a
 * timeout or unavailability it may retry with the same cursor.
 */
function continuationFailure(failures: readonly unknown[]): GatewayRequestError {
  if (failures.some((error) => error instanceof UpstreamRpcError && error.code === JSON_RPC.INVALID_PARAMS)) {
    return new GatewayRequestError(JSON_RPC.INVALID_PARAMS, 'Invalid cursor: an upstream no longer accepts its part of it; list again without a cursor');
  }
  const timedOut = failures.some((error) => (error instanceof UpstreamUnavailableError && error.reason === 'timeout') || (error instanceof Error && error.name === 'TimeoutError'));
  return new GatewayRequestError(
    timedOut ? GATEWAY_RPC.UPSTREAM_TIMEOUT : GATEWAY_RPC.UPSTREAM_UNAVAILABLE,
    `An upstream ${timedOut ? 'did not answer its part of this page in time' : 'could not give its part of this page'}; ask again with the same cursor, or list again without one`,
  );
}

/**
 * Resource URIs (and templates) a session keeps routes for, and the characters of them together; past either the
 * oldest route goes (see `pageItems`). A session holds its own routes, and upstreams choose the URIs.
 */
const MAX_RESOURCE_ROUTES = 10_000;
/**
 * Characters of resource and template routes all sessions of a replica hold together (`RouteBudget`): a quarter of what
 * the replica's listing pages may hold (`ListingPageStore`), the text the routes are learned from.
 */
const MAX_ROUTE_CHARS_PER_REPLICA = 64 * 1024 * 1024;
const MAX_RESOURCE_ROUTE_CHARS = 1024 * 1024;
const MAX_TEMPLATE_ROUTES = 1_000;
const MAX_TEMPLATE_ROUTE_CHARS = 256 * 1024;

/** Whether a route is held by an upstream other than `upstreamId` whose part is in this answer (none held: no). */
const heldElsewhere = (holder: string | undefined, upstreamId: string, listsHere: (upstreamId: string) => boolean): boolean =>
  holder !== undefined && holder !== upstreamId && listsHere(holder);

/** A resource template a session learned: who listed it, how it matches, and how much of it is literal text. */
interface TemplateRoute {
  readonly upstreamId: string;
  readonly prefix: string;
  /** Whether the template can expand to a URI (`uriTemplateMatcher`: a simple `{var}` holds no `/`). */
  readonly matches: UriMatcher;
  /** The same with every expression taking any text: asked only when no template matches exactly (`anyRunMatcher`). */
  readonly loosely: UriMatcher;
  readonly literalLength: number;
}

/**
 * Of two matching templates, whether `a` decides over `b`: the one with more literal text (`mem://b/{key}` before
 * `mem://{+path}`), then the upstream first in the listings' order (by prefix). Not the one learned first: which that
 * is depends on the order listings happened to arrive in, and two sessions would send one URI to two servers.
 */
const decidesOver = (a: TemplateRoute, b: TemplateRoute): boolean => a.literalLength > b.literalLength || (a.literalLength === b.literalLength && a.prefix < b.prefix);

/**
 * Two loads of an upstream's configuration with no edit between them: the same version, and its credentials sealed the
 * same (`secrets:reseal` seals them again without a new version, and the session records then name another digest).
 */
const sameEdit = (a: UpstreamConfig, b: UpstreamConfig): boolean => a.version === b.version && a.sealedDigest === b.sealedDigest;

/** Whether a session opened under `opened` is one at another endpoint than `now` names (another URL, other credentials). */
const movedEndpoint = (opened: UpstreamConfig, now: UpstreamConfig): boolean => endpointOf(opened) !== endpointOf(now);

/** Drops a map's oldest entry (Maps keep insertion order). */
function evictOldest(map: Map<string, unknown>): void {
  const oldest = map.keys().next();
  if (oldest.done !== true) map.delete(oldest.value);
}

/** Messages about tasks one call may have waiting to be named for the agent (see `sendInCall`). */
const MAX_HELD_TASK_MESSAGES = 64;

/** Default `relayTimeoutMs`. */
const RELAY_TIMEOUT_MS = 300_000;

/** Why a relayed request's call-scope was aborted: the call it was made for settled. */
const RELAY_CALL_ENDED = 'the call it was made for ended';

/** Aborts `ended` (a call's relays) once `settling` (the call) settles. */
function endWith(settling: Promise<unknown>, ended: Cancellation): void {
  const end = () => ended.abort(RELAY_CALL_ENDED);
  void settling.then(end, end);
}

/** What bounds a relayed request besides the upstream's own cancellation. */
interface RelayBounds {
  /** Aborted when the agent's call that caused the request settles (absent: not made for a call). */
  readonly ended?: CancelSignal;
  /** Longest the agent has to answer. */
  readonly timeoutMs: number;
  /** The upstream's id of the task the request is about (the agent was given the gateway's): its answer names it again. */
  readonly upstreamTask?: string;
}

/** Default of `EngineOptions.firstListenMs`. */
const FIRST_LISTEN_MS = 30_000;
/** Default of `EngineOptions.listenerAnnounceMs`. */
const LISTENER_ANNOUNCE_MS = 30_000;
/** How long a stream announced by a replica that does not renew its announcements (an earlier version) counts. */
const UNRENEWED_LISTENER_MS = 60 * 60_000;
/** Streams per `standalone-held` message (each about 60 bytes of JSON). */
const HELD_PER_MESSAGE = 500;
/** A join of an upstream to a session under way on this replica (`LiveSession.joining`), of one configuration version. */
interface JoinUnderway {
  readonly settled: Promise<void>;
  readonly version: number;
}

/** Most other replicas' streams a replica keeps track of; past it, it broadcasts as if unsure (`ListenerMap`). */
const MAX_HEARD_LISTENERS = 200_000;

/** How long a standalone stream's announcement may take to come back over the bus before it counts as delivered. */
const STANDALONE_ECHO_WAIT_MS = 3_000;
/** How long after its attach a stream held here may be found in conflict with another replica's (`settleHeldConflict`). */
const HELD_CONFLICT_GRACE_MS = STANDALONE_ECHO_WAIT_MS + 1_000;

/**
 * The client capabilities of `record`'s agent that its protocol version defines (`clientCapabilitiesOf`): cut again
 * where read, as a record stored by an earlier version of the gateway holds them uncut (found by re-review). The same
 * object when nothing is cut, as for every record stored since.
 */
const clientCapabilitiesIn = (record: SessionRecord): Record<string, unknown> => clientCapabilitiesOf(record.clientCapabilities ?? {}, record.protocolVersion);

/** Who the agent of `record` is, as upstream sessions opened for it are told. */
function identityOf(record: SessionRecord): ClientIdentity {
  return {
    clientInfo: record.clientInfo ?? { name: 'unknown', version: '0' },
    capabilities: relayableClientCapabilities(clientCapabilitiesIn(record)),
    protocolVersion: record.protocolVersion,
    principal: ownerKey(record.tenantId, record.principalKind, record.principalId),
  };
}

/** Each promise's outcome if it settles within `ms`; undefined for one still pending then. */
async function settledWithin<T>(promises: readonly Promise<T>[], ms: number, stop?: Promise<void>): Promise<(PromiseSettledResult<T> | undefined)[]> {
  const outcomes: (PromiseSettledResult<T> | undefined)[] = promises.map(() => undefined);
  const all = Promise.all(
    promises.map((promise, index) =>
      promise.then(
        (value) => void (outcomes[index] = { status: 'fulfilled', value }),
        (reason: unknown) => void (outcomes[index] = { status: 'rejected', reason }),
      ),
    ),
  );
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([all, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))), ...(stop ? [stop] : [])]);
  clearTimeout(timer);
  return [...outcomes];
}

/** How much longer than initializeWaitMs a place taken for a session being initialized is held (a replica dying meanwhile). */
const RESERVATION_MARGIN_MS = 30_000;
/** Retry-After of an initialize refused for the principal's session count. */
const SESSION_CAP_RETRY_S = 30;

/** Default `initializeWaitMs`. */
const INITIALIZE_WAIT_MS = 10_000;

/** Default `joinRetryMs`. */
const JOIN_RETRY_MS = 15_000;
/** Joins one replica runs at once in the background (an upstream back after an outage, for every listening agent). */
const BACKGROUND_JOIN_CONCURRENCY = 8;
/** The stored record is read again for upstreams another replica joined at most this often per session. */
const ADOPT_INTERVAL_MS = 1_000;
/** How long an agent's DELETE waits for its upstream sessions to close (each may take its connect timeout). */
const END_WAIT_MS = 2_000;
/** The list areas whose changes the agent may be told of. */
const LIST_AREAS = ['tools', 'prompts', 'resources'] as const;

/** Least time between two new upstream sessions for one upstream of one agent session on a replica (see `renew`). */
const RENEW_MIN_INTERVAL_MS = 10_000;

/**
 * How long, and for how many sessions at most, a replica remembers that a session ended (see `ended`): the race it
 * closes lasts as long as a request between its session lookup and its first use of the session (well under a
 * minute), and 50,000 covers 800 DELETEs a second across all replicas (each replica hears of every one).
 */
const ENDED_MEMORY_MS = 60_000;
const MAX_ENDED_REMEMBERED = 50_000;

/** Progress tokens of tasks a session keeps (`LiveSession.taskProgress`); past this the oldest go. */
const MAX_TRACKED_TASK_PROGRESS = 1_024;
/** The longest progress token kept for a task's lifetime. */
const MAX_TASK_PROGRESS_TOKEN = 512;

/** Upstream and progress token (a number and the string of its digits are different tokens). */
const taskProgressKey = (upstreamId: string, token: unknown): string => `${upstreamId}\n${typeof token}\n${String(token)}`;

/**
 * A task as an upstream answers it (a CreateTaskResult's `task`, a `tasks/get` or `tasks/cancel` result) with its
 * configured secrets masked in `statusMessage`, as they are in the `notifications/tasks/status` that carries the same
 * text: a failed task's status is often its error, credential and all.
 */
function maskedTaskStatus(config: UpstreamConfig | undefined, task: Record<string, unknown>): Record<string, unknown> {
  const message = task['statusMessage'];
  if (typeof message !== 'string') return task;
  if (config === undefined) {
    const { statusMessage: _unknown, ...rest } = task;
    return rest;
  }
  const masked = maskValue(secretMaskOf(config), message);
  return masked === message ? task : { ...task, statusMessage: masked };
}

/** An agent's request params without their `task` (a task augmentation the gateway does not take for the method). */
function withoutTask(params: Record<string, unknown>): Record<string, unknown> {
  const { task: _ignored, ...rest } = params;
  return rest;
}

/**
 * What routes each kind of message MCP has an upstream send the agent: the fields passed on as the upstream wrote them
 * (ids, tokens, states and numbers the gateway or the agent matches or acts on). Everything else in a message is the
 * upstream's to fill (a log line and its logger's name, a progress or status message, an elicitation's text and form,
 * a sampling request's messages, prompt, tools, stop sequences, model hints and metadata, fields MCP does not name) and
 * may quote a credential the gateway injected: it is masked (`maskedRelay`), or left out when nothing is known to mask
 * it with (`withoutRelayedText`). A method not here (one MCP does not define) is free text whole. A URL-mode
 * elicitation's `url` is opened in the user's browser: a credential in it would leave for wherever it points, so it is
 * masked too (the link then fails rather than leaking).
 */
const ROUTING_FIELDS: ReadonlyMap<string, Readonly<Record<string, (value: unknown) => boolean>>> = (() => {
  // A routing field passes as written only when it has MCP's type: an id or a URI is any string (a number for some),
  // a number a number, an enum one of its words. Anything else there is the upstream's to fill and is masked like text.
  const id = (value: unknown) => typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
  const text = (value: unknown) => typeof value === 'string';
  const number = (value: unknown) => typeof value === 'number' && Number.isFinite(value);
  const oneOf = (...words: string[]) => (value: unknown) => typeof value === 'string' && words.includes(value);
  const timestamp = (value: unknown) => typeof value === 'string' && /^\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)$/.test(value);
  return new Map<string, Record<string, (value: unknown) => boolean>>([
    ['notifications/message', { level: oneOf(...LOG_LEVELS) }],
    ['notifications/progress', { progressToken: id, progress: number, total: number }],
    ['notifications/cancelled', { requestId: id }],
    [
      'notifications/tasks/status',
      {
        taskId: text,
        status: oneOf('working', 'input_required', 'completed', 'failed', 'cancelled'),
        createdAt: timestamp,
        lastUpdatedAt: timestamp,
        ttl: (value) => value === null || number(value),
        pollInterval: number,
      },
    ],
    ['notifications/resources/updated', { uri: text }],
    ['notifications/elicitation/complete', { elicitationId: text }],
    ...[...LIST_CHANGED_AREA.keys()].map((method) => [method, {}] as [string, Record<string, (value: unknown) => boolean>]),
    ['elicitation/create', { mode: oneOf('form', 'url'), elicitationId: text }],
    ['sampling/createMessage', { maxTokens: number, temperature: number, includeContext: oneOf('none', 'thisServer', 'allServers') }],
    ['roots/list', {}],
    ['ping', {}],
    ['tasks/get', { taskId: text }],
    ['tasks/result', { taskId: text }],
    ['tasks/cancel', { taskId: text }],
    ['tasks/list', { cursor: text }],
  ]);
})();

/**
 * The fields of an upstream's message that are free text: all but its `ROUTING_FIELDS` of MCP's type (every field of a
 * message MCP does not define), `_meta` aside.
 */
function freeFields(message: JsonRpcNotification | JsonRpcRequest, params: Record<string, unknown>): string[] {
  const routing = ROUTING_FIELDS.get(message.method);
  return Object.keys(params).filter((field) => field !== '_meta' && !(routing !== undefined && Object.hasOwn(routing, field) && routing[field]?.(params[field]) === true));
}

/**
 * A message's `_meta` as it may reach the agent: `transform` applied to every entry but what routes it, the progress
 * token and the related task's id (the rest of the related-task object is the upstream's to fill). Undefined for an
 * entry `transform` drops; the same object when nothing changed.
 */
function relayedMeta(meta: Record<string, unknown>, transform: (value: unknown) => unknown, renameKey: (key: string) => string = (key) => key): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(meta)) {
    if (key === 'progressToken' && (typeof value === 'string' || typeof value === 'number')) continue;
    let next = transform(value);
    const taskId = isObject(value) ? value['taskId'] : undefined;
    if (key === RELATED_TASK && next !== value && typeof taskId === 'string') next = { ...(isObject(next) ? next : {}), taskId };
    const renamed = key === RELATED_TASK || key === 'progressToken' ? key : renameKey(key);
    if (next === value && renamed === key) continue;
    out ??= { ...meta };
    delete out[key];
    if (next !== undefined) out[renamed] = next;
  }
  return out ?? meta;
}

/**
 * An upstream's notification or request on its way to the agent, with the upstream's configured secrets masked in
 * everything but what routes it (`ROUTING_FIELDS`, and in `_meta` the progress token and the related task's id). The
 * agent never sees a credential the gateway injects.
 */
function maskedRelay<T extends JsonRpcNotification | JsonRpcRequest>(config: UpstreamConfig, message: T): T {
  const mask = secretMaskOf(config);
  if (mask.longest === 0) return message;
  // The name of a method MCP does not define is the upstream's to choose too.
  const method = ROUTING_FIELDS.has(message.method) ? message.method : mask.mask(message.method);
  if (message.params === undefined) return method === message.method ? message : { ...message, method };
  let params: Record<string, unknown> | undefined;
  for (const field of freeFields(message, message.params)) {
    const original = message.params[field];
    const masked = maskValue(mask, original);
    const name = mask.mask(field);
    if (masked === original && name === field) continue;
    params ??= { ...message.params };
    delete params[field];
    params[name] = masked;
  }
  const meta = message.params['_meta'];
  if (isObject(meta)) {
    const masked = relayedMeta(meta, (value) => maskValue(mask, value), (key) => mask.mask(key));
    if (masked !== meta) (params ??= { ...message.params })['_meta'] = masked;
  }
  if (params === undefined && method === message.method) return message;
  return { ...message, method, ...(params !== undefined ? { params } : {}) };
}

/**
 * A message with all but what routes it left out (`freeFields`, and `_meta` but the progress token and the related
 * task's id), for when nothing is known to mask it with (the upstream's configuration gone meanwhile).
 */
function withoutRelayedText<T extends JsonRpcNotification | JsonRpcRequest>(message: T): T {
  if (message.params === undefined) return message;
  const fields = freeFields(message, message.params);
  const meta = message.params['_meta'];
  const kept = isObject(meta) ? relayedMeta(meta, () => undefined) : meta;
  if (fields.length === 0 && kept === meta) return message;
  const params = { ...message.params };
  for (const field of fields) delete params[field];
  if (isObject(kept) && Object.keys(kept).length === 0) delete params['_meta'];
  else if (kept !== meta) params['_meta'] = kept;
  return { ...message, params };
}

/**
 * Whether a log message is below the level the agent set (`logging/setLevel`, kept in its record): MCP servers send
 * only messages at or above it, but a stdio process shared with sessions that asked for more sends theirs too, and an
 * upstream may ignore the level. A message of a level MCP does not name is passed on. The record is this replica's copy:
 * a level set through another replica reaches it by the `agent-state` message (`reloadAgentState`).
 */
function belowAgentLevel(record: SessionRecord, notification: JsonRpcNotification): boolean {
  const wanted = record.logLevel;
  if (wanted === undefined || notification.method !== 'notifications/message') return false;
  const level = notification.params?.['level'];
  if (typeof level !== 'string') return false;
  const rank = LOG_LEVELS.indexOf(level);
  return rank >= 0 && rank < LOG_LEVELS.indexOf(wanted);
}

/** Skipped listing items remembered as warned of; past this the memory starts afresh. */
const MAX_SKIPPED_WARNED = 10_000;

/** Characters of an upstream failure's text that are logged. */
const MAX_LOGGED_DETAIL = 500;

/** Least time between two walks of a session's resource listings for URIs no route knows (`learnRoutes`). */
const ROUTE_RELEARN_MS = 1_000;

interface PendingServerRequest {
  readonly sessionId: string;
  readonly resolve: (result: Record<string, unknown>) => void;
  readonly reject: (error: Error) => void;
  /**
   * The upstream asked for progress (`_meta.progressToken`): the agent saw the relayed request's own id as the token,
   * and its progress notifications go back to `upstream` under this original token.
   */
  readonly progress?: { readonly token: string | number; readonly upstream: UpstreamSession };
  /** Sent through another replica: that replica confirmed the agent's stream took it (`standalone-delivered`). */
  readonly delivered?: () => void;
}

/**
 * How long a replica that relays a request through another replica's stream of the agent waits for that replica to
 * confirm it sent it. No confirmation: no replica holds a stream the agent listens on, and the upstream is told so at
 * once rather than after the whole relay timeout.
 */
const REMOTE_DELIVERY_MS = 2_000;

/** The replica that relayed a server→client request, from the id it gave it (`pcs.<replica>.<random>`). */
const relayOwner = (id: unknown): string | undefined => (typeof id === 'string' ? /^pcs\.([A-Za-z0-9_-]+)\./.exec(id)?.[1] : undefined);

/** What the connector needs to continue an upstream session named in a record: the endpoint too, which it checks. */
function resumeState(state: SessionRecord['upstreams'][string]): UpstreamSessionState {
  return state.endpoint === undefined
    ? { sessionId: state.sessionId, protocolVersion: state.protocolVersion }
    : { sessionId: state.sessionId, protocolVersion: state.protocolVersion, endpoint: state.endpoint };
}

const LIST_METHODS: Readonly<Record<ListKind, { method: string; field: string; capability: string }>> = {
  tools: { method: 'tools/list', field: 'tools', capability: 'tools' },
  prompts: { method: 'prompts/list', field: 'prompts', capability: 'prompts' },
  resources: { method: 'resources/list', field: 'resources', capability: 'resources' },
  resourceTemplates: { method: 'resources/templates/list', field: 'resourceTemplates', capability: 'resources' },
};

/** What names an item within one upstream's listing: no two items of a page share it. */
const LIST_KEY: Readonly<Record<ListKind, ItemKey>> = { tools: 'name', prompts: 'name', resources: 'uri', resourceTemplates: 'uriTemplate' };

/**
 * A listing's page as it arrived, when it holds its list: one without it (`tools: null`, a string, nothing) fails like
 * a page that did not come (the upstream drops out of the answer with its reason logged, a later page's failure is an
 * error for the agent to ask again), instead of listing nothing unexplained.
 */
function listPage(spec: { readonly method: string; readonly field: string }, page: Record<string, unknown>): Record<string, unknown> {
  if (!Array.isArray(page[spec.field])) throw new Error(`${spec.method} result has no ${spec.field} array`);
  return page;
}

const LIST_TARGET: Readonly<Record<ListKind, TargetKind | 'resourceTemplate'>> = {
  tools: 'tool',
  prompts: 'prompt',
  resources: 'resource',
  resourceTemplates: 'resourceTemplate',
};

/**
 * The server capability each method needs (those not listed need none the gateway checks here). Not
 * `completion/complete`: `completions` is younger than the method (2024-11-05 servers answer it without declaring it),
 * and its ref names the upstream that answers.
 */
const AREA_OF_METHOD: Readonly<Record<string, string>> = {
  'prompts/list': 'prompts',
  'prompts/get': 'prompts',
  'resources/list': 'resources',
  'resources/templates/list': 'resources',
  'resources/read': 'resources',
  'resources/subscribe': 'resources',
  'resources/unsubscribe': 'resources',
  'logging/setLevel': 'logging',
};

const MAX_CANCEL_REASON = 256;
/**
 * Cancellations of ids not in flight on this replica that it tells the others of, per principal: a second's worth,
 * with room for a batch of them (MCP lets a receiver ignore a cancellation). Without a bound an agent had every replica
 * read and look up as many as it could send (up to 100 a batch POST). Per principal, not per tenant: one agent's stray
 * cancellations would otherwise silence every other agent's of the tenant (found by re-review).
 */
const CANCEL_BROADCASTS_PER_SECOND = 20;
const CANCEL_BROADCAST_BURST = 100;
/**
 * Messages an upstream session's stream or a call of it may have relayed to the agent (log messages, progress, resource
 * updates, task statuses; list changes are folded apart, `listsChanged`): more than an agent can read, yet every one
 * is masked, written to the agent's stream and kept for its resumption in Redis, which all tenants share. MCP asks
 * senders of both log messages and progress to rate-limit them; past this the gateway drops them.
 */
const RELAYED_NOTIFICATIONS_PER_SECOND = 200;
const RELAYED_NOTIFICATION_BURST = 1_000;
/**
 * What bound of an upstream's (`LiveSession.relayAllowances`) a relayed message (or request about a task) draws on:
 * tasks' last statuses (each ends its task's slots here and tells the agent the task is over), other messages about
 * tasks (on a stdio process one principal's sessions share, every session hears every task's), and the rest, each its
 * own, so that a flood of one kind, which may be dropped only later (another session's task, an update of a resource
 * nobody here subscribed to), does not silence the others. Found by re-reviews: with one bound, chatter dropped a
 * task's last status; exempt, last statuses with made-up task ids each cost lookups in the task store without any
 * bound.
 */
function relayClass(upstreamId: string, message: JsonRpcNotification | JsonRpcRequest): string {
  const task = referencedTask(message.method, message.params);
  if (task === undefined) return upstreamId;
  return message.method === 'notifications/tasks/status' && isTerminalTaskStatus(message.params?.['status']) ? `${upstreamId}\u0000last` : `${upstreamId}\u0000task`;
}

/** The refusal of an upstream's request about a task past what may be relayed of them (`relayClass`). */
const tooManyAboutTasks = (): UpstreamRpcError => new UpstreamRpcError(JSON_RPC.INTERNAL_ERROR, 'Too many requests about tasks: ask again later');

/** How often a warning may say that relayed messages or cancellations were dropped (per session and upstream, per principal). */
const DROPPED_WARNING_MS = 60_000;
/** Longest progress message passed on from an agent (MCP: a human-readable description). */
const MAX_PROGRESS_MESSAGE = 1_024;

/**
 * What an agent's `notifications/progress` about a request the gateway relayed to it may carry on: the token, the
 * numbers and a cut message (MCP's fields), nothing else. The agent's params are its own JSON at any size and depth:
 * passed on whole, they went to the replica the token names (one the agent chooses) however large, and one too deep
 * to serialise failed the agent's POST with a 500. Undefined when the token or the progress is missing or malformed.
 */
function relayableProgress(params: Record<string, unknown>): { progressToken: string; progress: number; total?: number; message?: string } | undefined {
  const { progressToken, progress, total, message } = params;
  if (typeof progressToken !== 'string' || progressToken.length > 512) return undefined;
  if (typeof progress !== 'number' || !Number.isFinite(progress)) return undefined;
  const relayed: { progressToken: string; progress: number; total?: number; message?: string } = { progressToken, progress };
  if (typeof total === 'number' && Number.isFinite(total)) relayed.total = total;
  if (typeof message === 'string') relayed.message = message.slice(0, MAX_PROGRESS_MESSAGE);
  return relayed;
}

/**
 * A prompt completion's arguments as the policy sees them: `context.arguments` with the argument being completed (its
 * value so far) over them. Undefined when it states none.
 */
function completionArguments(params: Record<string, unknown>): Record<string, unknown> | undefined {
  const context = params['context'];
  const stated = isObject(context) && isObject(context['arguments']) ? context['arguments'] : undefined;
  const argument = params['argument'];
  if (!isObject(argument) || typeof argument['name'] !== 'string' || typeof argument['value'] !== 'string') return stated;
  return { ...stated, [argument['name']]: argument['value'] };
}

/**
 * The task a forwarded request is about, as the upstream and the agent name it: known for `tasks/*`; for a
 * task-augmented `tools/call`, known once the upstream's answer has been recorded (undefined: no task came of it).
 * `timeoutMs` replaces the upstream's call timeout (`tasks/result` waits for the task, not for one call).
 */
interface TaskContext {
  readonly upstream: string;
  readonly agent: string;
  /** The tool whose call created the task (as its upstream names it), when known. */
  readonly tool?: string;
  readonly timeoutMs?: number;
}
type TaskScope = TaskContext | Promise<TaskContext | undefined>;

/** How many earlier standalone streams of a session a resumed one stands for (`standaloneResuming`). */
const MAX_STANDALONE_CHAIN = 8;

/**
 * `streams` (the one the agent named last first, then newest first), each once, within MAX_STANDALONE_CHAIN: an agent
 * that got no event id of the later streams names the same stream on each reconnect (its first, or the last it got an
 * event of), which is so always kept. Re-review found the first form, which kept the oldest, dropping such a stream
 * from the middle of the chain after nine reconnects, and then the oldest too.
 */
function chainOf(streams: readonly (string | undefined)[]): readonly string[] {
  const chain: string[] = [];
  for (const stream of streams) if (stream !== undefined && !chain.includes(stream) && chain.length < MAX_STANDALONE_CHAIN) chain.push(stream);
  return chain;
}

/** Attempts to open a new upstream session for a listening agent (`reopenForListener`), the first after this long. */
const REOPEN_ATTEMPTS = 5;
const REOPEN_FIRST_DELAY_MS = 500;

/** How long a server request about a task waits for the call creating that task to be answered (its id recorded). */
const TASK_SCOPE_WAIT_MS = 2_000;
/**
 * A message about a task the session is not known to have, with no call creating a task here: looked up again after
 * this long (the call may be creating it through another replica).
 */
const TASK_RELOOKUP_MS = 500;

/** Longest a `tasks/result` waits upstream for its task (within the task's lifetime, at least the call timeout). */
export const TASK_RESULT_MAX_WAIT_MS = 60 * 60 * 1_000;
/** Task ends a replica remembers having announced per session; past it the memory starts over (an announcement may repeat). */
const MAX_ANNOUNCED_TASK_ENDS = 1_000;

/** An upstream's request about a task that is not the session's: refused, as if the agent did not know the task. */
const unknownTaskOf = (request: JsonRpcRequest) => new UpstreamRpcError(JSON_RPC.INVALID_PARAMS, `${request.method}: unknown task`);
/** What an upstream is told when the hooks refuse relaying its request about a task (the policy's reasons stay with the gateway). */
const refusedTaskRequest = (request: JsonRpcRequest, refusal: GatewayRequestError) =>
  new UpstreamRpcError(refusal.rpcCode, `${request.method}: the client may no longer use the tool this task belongs to`);

/**
 * A path with `.` or `..` segments, an empty segment, a percent-encoded `/` or `\`, or a percent-encoded unreserved
 * character (letters, digits, `-._~`: RFC 3986 says to write those plainly, and resolvers decode them).
 */
const UNNORMALISED_PATH = /(?:^|\/)\.{1,2}(?:\/|$)|\/\/|%(?:2[def]|3[0-9]|[46][1-9a-f]|[57][0-9a]|5[cf]|7e)/i;

/** The part of a URI a resolver would normalise: after `scheme://authority` (or `scheme:`), before `?` and `#`. */
function pathOf(uri: string): string {
  const end = uri.search(/[?#]/);
  const withoutQuery = end === -1 ? uri : uri.slice(0, end);
  const authority = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*/.exec(withoutQuery);
  if (authority) return withoutQuery.slice(authority[0].length);
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:/.exec(withoutQuery);
  return scheme ? withoutQuery.slice(scheme[0].length) : withoutQuery;
}

/** Characters a URL parser drops wherever they are (C0 controls; DEL is refused with them). */
// eslint-disable-next-line no-control-regex -- control characters are exactly what this looks for
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;
/** Schemes the WHATWG URL parser treats as "special": hosts are normalised, `\\` is `/`, the path is never empty. */
const SPECIAL_SCHEMES = new Set(['http:', 'https:', 'ws:', 'wss:', 'ftp:', 'file:']);
const FILE_SCHEME = /^file:/i;
/** `scheme://authority` as written. */
const WRITTEN_AUTHORITY = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/;

/** Two paths alike once percent-decoded (a parser encodes spaces, quotes, braces and non-ASCII; it names the same). */
function samePath(written: string, parsed: string): boolean {
  try {
    return decodeURI(written) === decodeURI(parsed);
  } catch {
    return false; // a malformed escape (`%zz`)
  }
}

/**
 * Whether an upstream parsing `uri` could read another resource than the one policy matched, which sees the URI as
 * written: dot or empty segments and encoded separators or unreserved characters (UNNORMALISED_PATH), and what the
 * WHATWG URL parser (what Node's `new URL` and `fileURLToPath` use) rewrites: a backslash read as `/`, tabs and
 * newlines dropped, surrounding spaces trimmed, the scheme lower-cased, the host lower-cased, IDNA-mapped (full-width
 * letters) or percent-decoded, `file:/x` or `https:host` given their slashes, `localhost` and default ports dropped.
 * Spelling differences that name the same resource pass: percent-encoding of spaces, quotes, braces or non-ASCII, and
 * the empty path of `https://host`.
 */
function unnormalisedUri(uri: string): boolean {
  if (CONTROL_CHARACTERS.test(uri) || uri !== uri.trim()) return true;
  // A file has no query or fragment: a file server reads `key.pem?x` or `key.pem?/` as `key.pem`, which policy's
  // `*.pem` would not have matched.
  if (FILE_SCHEME.test(uri) && (uri.includes('?') || uri.includes('#'))) return true;
  const path = pathOf(uri);
  if (path.includes('\\') || UNNORMALISED_PATH.test(path)) return true;
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return false; // not a URL the parser takes (an upstream using it would refuse it too): nothing is rewritten
  }
  if (!uri.startsWith(url.protocol)) return true; // the scheme in capitals
  if (url.host === '' && !SPECIAL_SCHEMES.has(url.protocol)) return false; // `urn:…`, `custom:a/b`: an opaque path
  const authority = WRITTEN_AUTHORITY.exec(uri)?.[1];
  if (authority === undefined) return true; // `file:/x`, `https:host`: the parser adds the slashes
  // A user or password before the host (`https://x@internal.example/…`), or a host written with its root's dot
  // (`internal.example.`): the same resource to the upstream and the host's DNS, another text to the policy, whose rule
  // on `https://internal.example/**` it would pass. HTTP forbids sending userinfo (RFC 9110 §4.2.4) anyway.
  if (url.username !== '' || url.password !== '' || authority.includes('@') || url.hostname.endsWith('.')) return true;
  if (authority !== url.host) return true;
  return !samePath(path === '' && SPECIAL_SCHEMES.has(url.protocol) ? '/' : path, url.pathname);
}

/** `text` with the user and password of any URL in it left out (a store's error may name its address). */
const withoutUserinfo = (text: string): string => text.replace(/\/\/[^/@\s]*@/g, '//');

/** Longest resource URI routed (it is matched against templates, evaluated by policy and keyed in caches). */
const MAX_URI_LENGTH = 8 * 1024;

/** At most one roots/list_changed notice per session goes to the upstreams this often (see `rootsChanged`). */
const ROOTS_NOTICE_INTERVAL_MS = 1_000;

/**
 * An upstream's list changes of one kind go on the replica bus and to the agent at most this often per session,
 * upstream and replica; those in between are told once at the end of the interval (see `listsChanged`).
 */
const LIST_CHANGED_INTERVAL_MS = 1_000;

/** A session's principal as upstream connections know it (ClientIdentity.principal). */
const ownerKey = (tenantId: string, kind: string, id: string): string => `${tenantId}:${kind}:${id}`;

/**
 * The abort reason of a cancelled request: an `AbortError`, so the request ends as cancelled (its audit outcome, a
 * JSON-RPC error naming cancellation) rather than as an unexpected internal error logged at error level.
 */
const cancelledBecause = (reason: string): DOMException => new DOMException(reason.slice(0, MAX_CANCEL_REASON), 'AbortError');

/** Abort reasons of requests the agent itself cancelled (`notifications/cancelled`), not the session's end or a shutdown. */
const agentCancellations = new WeakSet<object>();
const cancelledByAgent = (reason: string): DOMException => {
  const cancelled = cancelledBecause(reason);
  agentCancellations.add(cancelled);
  return cancelled;
};
/** Answers of requests the agent cancelled (see `unanswerable`). */
const unanswerableResponses = new WeakSet<JsonRpcResponse>();

/**
 * The agent cancelled this response's request (`notifications/cancelled`): the transports send it nowhere. MCP: the
 * receiver of a cancellation SHOULD NOT answer the cancelled request, and the sender ignores any answer that comes (the
 * SDK client reports one as a message for an unknown id). The request is audited as cancelled all the same.
 */
export const unanswerable = (response: JsonRpcResponse): boolean => unanswerableResponses.has(response);

/** MCP's code for an unknown resource URI. */
const RESOURCE_NOT_FOUND = -32002;

/** The signal of a request that ended before it could be cancelled (initialize). */
const NOT_CANCELLED: CancelSignal = new Cancellation();

/**
 * `work`'s outcome, or a rejection with the abort reason as soon as `signal` aborts (work that cannot be aborted
 * itself); work given up on that way goes to `abandoned`, to be cleaned up after when it ends.
 */
function unlessAborted<T>(work: Promise<T>, signal: CancelSignal, abandoned: (work: Promise<T>) => void): Promise<T> {
  return untilAborted(work, signal, () => {
    abandoned(work);
    return signal.reason;
  });
}

const inflightKey = (sessionId: string, id: JsonRpcId): string => `${sessionId}\u0000${typeof id}:${String(id)}`;

/** The answer to an initialize the session store could not take (unreachable): 503 with Retry-After. */
const SESSION_STORE_UNAVAILABLE = 'The session store is unavailable right now; try again shortly';

/** The session record could not be written at initialize (the upstream sessions opened for it are ended again). */
export class SessionNotCreatedError extends Error {
  constructor(override readonly cause: unknown) {
    super('session not created: the session store failed');
    this.name = 'SessionNotCreatedError';
  }
}

/** Initialize met the replica shutting down while its upstreams connected. */
class GatewayShuttingDownError extends Error {
  constructor() {
    super('This gateway replica is shutting down; try again');
    this.name = 'GatewayShuttingDownError';
  }
}

/** `end` could not delete the session's record: nothing was ended, and the caller may try again. */
export class SessionNotEndedError extends Error {
  constructor(override readonly cause: unknown) {
    super('the session record could not be deleted');
    this.name = 'SessionNotEndedError';
  }
}

/**
 * A request the gateway refuses itself. `data` goes to the agent with the error (e.g. a rate limit's scope and
 * retry-after). The answer is a JSON-RPC error in a 200 response, as any request's error (only a lone rate-limit
 * refusal becomes HTTP 429, see `rateLimitedRetryAfter`): clients read the error's code and message from it.
 */
export class GatewayRequestError extends Error {
  constructor(
    readonly rpcCode: number,
    message: string,
    readonly data?: Readonly<Record<string, unknown>>,
    readonly outcome: 'error' | 'denied' | 'rate_limited' | 'cancelled' = 'error',
  ) {
    super(message);
    this.name = 'GatewayRequestError';
  }
}

/**
 * The MCP side of the gateway: sessions, aggregation, routing and relays. Transport-agnostic: the HTTP
 * routes (Streamable HTTP and legacy SSE) hand it classified messages and a sink for extra messages.
 */
export class SessionEngine {
  private readonly live = new Map<string, LiveSession>();
  /** The POST streams this replica writes (for PostResponder): one the agent resumes elsewhere stops sending here. */
  readonly postStreams = new PostStreams();
  /** What the sessions' resource and template routes hold together on this replica (see `RouteBudget`). */
  private readonly routeBudget = new RouteBudget(MAX_ROUTE_CHARS_PER_REPLICA);
  /** Cancellations told to the other replicas, per principal (`ownerKey`; CANCEL_BROADCASTS_PER_SECOND). */
  private readonly cancelBroadcasts = new Allowances<string>(CANCEL_BROADCASTS_PER_SECOND, CANCEL_BROADCAST_BURST);
  /** What an agent's progress on relayed requests may send its upstreams, by principal (`notification`). */
  private readonly agentProgress = new Allowances<string>(RELAYED_NOTIFICATIONS_PER_SECOND, RELAYED_NOTIFICATION_BURST);
  /** Requests under way per principal (`ownerKey`) on this replica, over all its sessions (MAX_IN_FLIGHT_PER_PRINCIPAL). */
  private readonly inflightByPrincipal = new Map<string, number>();
  /** What initialize advertised to the agent, per session record (worked out again from the record when needed). */
  private readonly advertised = new WeakMap<SessionRecord, Record<string, unknown>>();
  private readonly pending = new Map<string, PendingServerRequest>();
  /** Listed tools as plain ones (`withoutTaskSupport`), by the listed tool. */
  private readonly plainTools = new WeakMap<Record<string, unknown>, Record<string, unknown>>();
  /** Items already warned of as left out of the listings (`warnSkipped`). */
  private readonly skippedWarned = new Set<string>();
  /** Each attached upstream session's relay of its requests to the agent (see `attach`), for its listings' requests. */
  private readonly serverRequestRelays = new WeakMap<UpstreamSession, (received: JsonRpcRequest, signal: AbortSignal, sink?: MessageSink, ended?: CancelSignal) => Promise<Record<string, unknown>>>();
  private readonly sweeper: NodeJS.Timeout;
  /** Listed items as exposed to agents, shared by every answer built from the same cached upstream page. */
  private readonly exposed: ExposedItems;
  /** Listed items with their upstream's secrets masked, per mask (one per configuration) and item (`shownItem`). */
  private readonly maskedItems = new WeakMap<SecretMask, WeakMap<object, Readonly<Record<string, unknown>>>>();
  /** Every session's cached listing pages on this replica (see `listCacheMs`, `listCacheMaxPages`). */
  private readonly pageStore: ListingPageStore;
  /** Sessions whose local state was dropped while their record lived on (their Streamable HTTP upstream sessions stay open). */
  private readonly released = new Map<string, SessionRecord>();
  /**
   * Sessions ended (DELETE, here or on another replica) in the last ENDED_MEMORY_MS, and when: a request that looked
   * its session up just before the DELETE must not bring the session's local state back (upstream sessions resumed or
   * processes started for a session that is gone, until the next sweep).
   */
  private readonly ended = new Map<string, number>();
  private sweeping = false;
  /** See `EngineOptions.relayTimeoutMs`. */
  private readonly relayTimeoutMs: number;
  /** The agents listening on other replicas, as announced on the bus (see `EngineOptions.listenerAnnounceMs`). */
  private readonly listeners: ListenerMap;
  private readonly announcer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: EngineDeps) {
    this.relayTimeoutMs = deps.options.relayTimeoutMs ?? RELAY_TIMEOUT_MS;
    this.exposed = new ExposedItems(deps.options.separator);
    this.pageStore = new ListingPageStore(deps.options.listCacheMaxPages ?? 2_000, deps.options.listCacheMaxBytes);
    // At least once a minute: an expired session's upstream sessions close within about a minute of its expiry.
    this.sweeper = setInterval(() => this.sweep(), Math.max(1_000, Math.min(60_000, Math.floor(deps.options.localIdleMs / 2))));
    this.sweeper.unref();
    const announceMs = deps.options.listenerAnnounceMs ?? LISTENER_ANNOUNCE_MS;
    this.listeners = new ListenerMap(announceMs * 2.5, MAX_HEARD_LISTENERS, Date.now());
    if (deps.bus !== undefined) {
      this.announcer = setInterval(() => this.announceListeners(), announceMs);
      this.announcer.unref();
    }
  }

  /** Tells the other replicas which agents' streams this one still holds, and forgets theirs not announced lately. */
  private announceListeners(): void {
    const bus = this.deps.bus;
    if (bus === undefined) return;
    for (const sessionId of this.listeners.prune(Date.now())) {
      const live = this.live.get(sessionId);
      if (live !== undefined) this.updateListening(live);
    }
    let streams: [string, string, string, number, string][] = [];
    for (const live of this.live.values()) {
      const held = live.standaloneToken;
      if (live.standalone === undefined || held === undefined) continue;
      streams.push([live.record.id, held.token, live.standalone.id ?? '', live.standalone.away === true ? 1 : 0, held.resumes ?? '']);
      if (streams.length === HELD_PER_MESSAGE) {
        bus.broadcast({ type: 'standalone-held', streams });
        streams = [];
      }
    }
    if (streams.length > 0) bus.broadcast({ type: 'standalone-held', streams });
  }

  /**
   * Whether an agent may be listening to the session (a standalone stream held here, or announced by another
   * replica, or one this replica may not have heard of yet).
   */
  private mayListen(live: LiveSession): boolean {
    if (live.standalone !== undefined) return true;
    const now = Date.now();
    return this.listeners.listens(live.record.id, now) || this.listeners.unsure(now);
  }

  /**
   * Whether the session's upstream sessions held here listen for their messages outside requests (a Streamable HTTP
   * upstream's GET stream): while the agent listens, here or on another replica, and in the first wait after one
   * opened here (`firstListenMs`). Every replica holding them asks: an upstream that allows one such stream a session
   * gives it to one (the others wait out 409s), which relays what comes over the bus; so the stream stays where it is
   * when the agent's moves to another replica, and nothing the upstream sends in between is lost.
   */
  private shouldListen(live: LiveSession): boolean {
    const now = Date.now();
    return live.standalone !== undefined || now < live.firstListenUntil || this.listeners.listens(live.record.id, now);
  }

  /**
   * Tells the upstream sessions held here whether to listen (`shouldListen`). Stopping, the pages they answered go:
   * their changes went unheard from then on.
   */
  private updateListening(live: LiveSession): void {
    const on = this.shouldListen(live);
    for (const entry of live.upstreams.values()) {
      const session = entry.current;
      if (session?.listen === undefined) continue;
      session.listen(on);
      if (!on) entry.pages.clear();
    }
  }

  /**
   * Whether this replica hears of `session`'s list changes: always for transports that carry them on their one
   * connection; for a Streamable HTTP upstream only while its sessions listen (`shouldListen`: the one holding the
   * upstream's stream passes changes on as `lists-changed`). Pages are only reused while so.
   */
  private hearsChanges(live: LiveSession, session: UpstreamSession): boolean {
    return session.listen === undefined || this.shouldListen(live);
  }

  // ---------------------------------------------------------------- sessions

  /**
   * Creates a session: connects every enabled upstream of the tenant in parallel (failures drop out, logged). A
   * `legacySessionId` makes it a legacy HTTP+SSE session of that id (the transport names it before initialize).
   */
  async initialize(
    principal: Principal,
    request: JsonRpcRequest,
    traceId: string,
    legacySessionId?: string,
  ): Promise<{ sessionId: string | undefined; response: JsonRpcResponse }> {
    const sessionId = legacySessionId ?? newSessionId();
    const startedAt = Date.now();
    const params = request.params ?? {};
    const clientInfo = params['clientInfo'];
    const capabilities = params['capabilities'];
    if (
      typeof params['protocolVersion'] !== 'string' ||
      !isObject(capabilities) ||
      !isObject(clientInfo) ||
      typeof clientInfo['name'] !== 'string' ||
      typeof clientInfo['version'] !== 'string'
    ) {
      return {
        sessionId: undefined,
        response: rpcError(request.id, JSON_RPC.INVALID_PARAMS, 'initialize needs protocolVersion, capabilities and clientInfo', traceId),
      };
    }
    // The session record keeps both (Redis and every replica's cache) and upstreams receive them: bounded, so that a
    // key cannot park megabytes per session.
    if (clientInfo['name'].length > MAX_CLIENT_INFO_LENGTH || clientInfo['version'].length > MAX_CLIENT_INFO_LENGTH || jsonLength(capabilities) > MAX_CAPABILITIES_JSON) {
      return {
        sessionId: undefined,
        response: rpcError(request.id, JSON_RPC.INVALID_PARAMS, `initialize: clientInfo name and version are limited to ${MAX_CLIENT_INFO_LENGTH} characters, capabilities to ${MAX_CAPABILITIES_JSON} characters of JSON`, traceId),
      };
    }
    // And shallow: Redis's JSON decoder (the record's scripts read its owner) takes at most 1,000 levels, and a record
    // it cannot read kept its place among the principal's sessions after a DELETE (real clients nest a few levels).
    if (nestedDeeperThan(capabilities, MAX_INITIALIZE_DEPTH) || nestedDeeperThan(clientInfo, MAX_INITIALIZE_DEPTH)) {
      return {
        sessionId: undefined,
        response: rpcError(request.id, JSON_RPC.INVALID_PARAMS, `initialize: capabilities and clientInfo may nest at most ${MAX_INITIALIZE_DEPTH} levels deep`, traceId),
      };
    }
    // Relayed to every upstream's initialize: malformed, each would refuse it, and the session would have none.
    const unrelayable = relayedCapabilitiesProblem(capabilities);
    if (unrelayable !== undefined) {
      return { sessionId: undefined, response: rpcError(request.id, JSON_RPC.INVALID_PARAMS, `initialize: ${unrelayable}`, traceId) };
    }
    const version = negotiateVersion(params['protocolVersion']);
    const upstreams: Record<string, { sessionId: string | null; protocolVersion: string; capabilities: Record<string, unknown> }> = {};
    const record: SessionRecord = {
      id: sessionId,
      tenantId: principal.tenantId,
      principalKind: principal.kind,
      principalId: principal.id,
      protocolVersion: version,
      clientInfo: { name: clientInfo['name'], version: clientInfo['version'] },
      // What its version defines only: it is sent no request its version lacks, and upstreams are offered no more.
      clientCapabilities: clientCapabilitiesOf(capabilities, version),
      upstreams,
      createdAt: Date.now(),
      cursorKey: newCursorKey(),
      ...(legacySessionId === undefined ? {} : { legacy: true as const }),
    };
    const identity = identityOf(record);
    // The hooks see initialize too (a fail-closed tenant that cannot be audited or rate-checked gets no session),
    // before any upstream is contacted; with the credential that opened the session (its event names the key).
    const info: RequestInfo =
      principal.credentialId === undefined
        ? { record, method: 'initialize', requestId: request.id, traceId, startedAt }
        : { record, method: 'initialize', requestId: request.id, traceId, startedAt, credentialId: principal.credentialId };
    let admission: Admission | undefined;
    try {
      const verdict = this.deps.hooks?.admit?.(info, NO_STREAM, AbortSignal.timeout(this.deps.options.listTimeoutMs * 10), undefined);
      admission = verdict instanceof Promise ? await verdict : verdict;
    } catch (error) {
      const response = this.errorFor(request.id, error, traceId);
      this.report(info, response, error, undefined, undefined, NOT_CANCELLED);
      return { sessionId: undefined, response };
    }
    try {
      const refused = await this.overSessionCap(record, request.id, traceId);
      if (refused !== undefined) {
        const unavailable = refused.error.code === GATEWAY_RPC.UNAVAILABLE;
        this.report(info, refused, new GatewayRequestError(refused.error.code, refused.error.message, undefined, unavailable ? 'error' : 'rate_limited'), admission, undefined, NOT_CANCELLED);
        return { sessionId: undefined, response: refused };
      }
      try {
        return await this.connectSession(record, identity, info, admission);
      } catch (error) {
        // No session came of it: its place among the principal's sessions goes back.
        void this.deps.sessions.release?.(record, record.id).catch(() => undefined);
        // The record not written (the store failed meanwhile), or the replica shutting down: unavailable, try again; not
        // the gateway's own fault.
        if (error instanceof SessionNotCreatedError || error instanceof GatewayShuttingDownError) {
          const message = error instanceof GatewayShuttingDownError ? error.message : SESSION_STORE_UNAVAILABLE;
          const response = rpcError(request.id, GATEWAY_RPC.UNAVAILABLE, message, traceId, { retryAfterSeconds: 1 });
          this.report(info, response, error, admission, undefined, NOT_CANCELLED);
          return { sessionId: undefined, response };
        }
        throw error;
      }
    } catch (error) {
      // Recorded like any request that failed (the hooks count an admitted call until it is reported).
      this.report(info, this.errorFor(request.id, error, traceId), error, admission, undefined, NOT_CANCELLED);
      throw error;
    } finally {
      admission?.release?.();
    }
  }

  /**
   * Takes a place among the principal's `maxSessionsPerPrincipal` sessions for this one, atomically and before any
   * upstream is contacted (initializes in parallel cannot all pass a count), held while it connects; the refusal when
   * all are taken. Undefined when it may go on. The store out of reach refuses too (unavailable, try again): the
   * record could not be written either, and every upstream would have been contacted (stdio processes started) first.
   */
  private async overSessionCap(record: SessionRecord, requestId: JsonRpcId, traceId: string): Promise<JsonRpcError | undefined> {
    const max = this.deps.options.maxSessionsPerPrincipal ?? 0;
    const reserve = this.deps.sessions.reserve;
    if (max <= 0 || reserve === undefined) return undefined;
    const holdMs = (this.deps.options.initializeWaitMs ?? INITIALIZE_WAIT_MS) + RESERVATION_MARGIN_MS;
    let reserved: boolean;
    try {
      reserved = await reserve.call(this.deps.sessions, record, record.id, max, holdMs);
    } catch (error) {
      this.deps.logger.warn({ tenantId: record.tenantId, traceId, err: withoutUserinfo(error instanceof Error ? error.message : String(error)) }, 'initialize refused: the session store is unreachable');
      return rpcError(requestId, GATEWAY_RPC.UNAVAILABLE, SESSION_STORE_UNAVAILABLE, traceId, { retryAfterSeconds: 1 });
    }
    if (reserved) return undefined;
    this.deps.logger.warn({ tenantId: record.tenantId, principalKind: record.principalKind, max, traceId }, 'initialize refused: the principal holds its most sessions');
    return rpcError(
      requestId,
      GATEWAY_RPC.RATE_LIMITED,
      `Too many sessions: this client holds ${max}, the most allowed. End sessions it no longer uses (HTTP DELETE with their Mcp-Session-Id) or let them expire`,
      traceId,
      { limit: max, scope: 'principal', kind: 'sessions', retryAfterSeconds: SESSION_CAP_RETRY_S },
    );
  }

  private async connectSession(
    record: SessionRecord,
    identity: ClientIdentity,
    info: RequestInfo,
    admission: Admission | undefined,
  ): Promise<{ sessionId: string; response: JsonRpcResponse }> {
    const { traceId, startedAt } = info;
    const sessionId = record.id;
    const upstreams = record.upstreams as Record<string, { sessionId: string | null; protocolVersion: string; capabilities: Record<string, unknown> }>;
    const configs = this.deps.registry.forTenant(record.tenantId).list;
    const connecting = configs.map((config) => this.deps.connector.connect(config, identity));
    // A slow upstream (a stdio server starting, a connect timeout of two minutes) does not hold the answer: past
    // initializeWaitMs it joins the session once connected, and the agent hears its lists changed (`joinOne`).
    let wake: () => void = () => undefined;
    const stopped = new Promise<void>((resolve) => (wake = resolve));
    if (this.closing) wake();
    else this.stopWaiters.add(wake);
    const settled = await settledWithin(connecting, this.deps.options.initializeWaitMs ?? INITIALIZE_WAIT_MS, stopped);
    this.stopWaiters.delete(wake);
    if (this.closing) {
      // Shut down while the upstreams connected: no session here (its calls could not be served); the agent is told
      // to try again, which a balancer sends to another replica. What connected, or connects later, is closed.
      for (const opening of connecting) void opening.then((session) => session.close()).catch(() => undefined);
      throw new GatewayShuttingDownError();
    }
    const live: LiveSession = this.newLive(record);
    const instructions: string[] = [];
    const late: number[] = [];
    const configured = this.deps.registry.forTenant(record.tenantId).byId;
    settled.forEach((outcome, index) => {
      const config = configs[index] as UpstreamConfig;
      if (outcome === undefined) {
        late.push(index);
        return;
      }
      if (outcome.status === 'rejected') {
        this.logUpstreamFailure(config, 'initialize', outcome.reason, traceId);
        // Tried again later (`joinMissing`), not by the listing that usually follows at once.
        live.joinTriedAt.set(config.id, { at: Date.now(), version: config.version });
        return;
      }
      const session = outcome.value;
      // Disabled, removed or pointed elsewhere while initialize waited: no part of the session (its instructions and
      // capabilities are not the agent's to be told), and closed; one still configured joins as it is now.
      const now = configured.get(config.id);
      if (now === undefined || !(sameEdit(now, config) || sameConnection(config, now))) {
        void session.close().catch(() => undefined);
        return;
      }
      const state = session.state();
      upstreams[config.id] = { ...state, capabilities: { ...session.info.capabilities } };
      live.upstreams.set(config.id, { config, session: Promise.resolve(this.attach(live, config, session, true)), current: session, pages: new PageCache(this.pageStore, live.record.tenantId) });
      const relayed = this.instructionsFor(live.record, config, session.info.instructions, traceId);
      if (relayed) instructions.push(`${config.toolPrefix}: ${relayed}`);
    });
    // An upstream missing now (down, or still connecting) may join later: the agent is told of every list, with
    // listChanged, so that it can be told when one does (else a session whose only upstream was slow had no tools). So
    // is the agent of a tenant with no upstream yet: all it will see joins later (else it was never told of any).
    if (Object.keys(upstreams).length < configs.length || configs.length === 0) live.record = { ...live.record, openLists: true };
    try {
      await this.deps.sessions.create(live.record);
    } catch (error) {
      // No session to hold them: the upstream sessions just opened are ended again (none can be resumed later).
      for (const { session } of live.upstreams.values()) void session.then((s) => s.close()).catch(() => undefined);
      for (const index of late) void connecting[index]?.then((s) => s.close()).catch(() => undefined);
      throw new SessionNotCreatedError(error);
    }
    this.live.set(sessionId, live);
    // A reload while the upstreams connected retired what no longer fits from the sessions live then, not from this one:
    // what it opened under the configurations read before is held to the registry now (else an upstream disabled
    // meanwhile kept its process, and the credentials in its environment, running for the session's whole life).
    this.retireDepartedOf(live, this.deps.registry.forTenant(record.tenantId).byId);
    for (const index of late) {
      const config = configs[index] as UpstreamConfig;
      this.deps.logger.info({ upstream: config.name, upstreamId: config.id, tenantId: config.tenantId, traceId }, 'upstream still connecting when initialize answered; it joins the session once connected');
      void this.joinOne(live, config, traceId, connecting[index]).catch(() => undefined);
    }
    const result: Record<string, unknown> = {
      protocolVersion: record.protocolVersion,
      capabilities: this.capabilitiesOf(live.record),
      serverInfo: { ...this.deps.options.serverInfo },
      ...(instructions.length > 0 ? { instructions: instructions.join('\n\n') } : {}),
    };
    this.deps.hooks?.completed?.(info, { outcome: 'ok', ...(admission ? { admission } : {}), latencyMs: Date.now() - startedAt });
    return { sessionId, response: resultResponse(info.requestId, result) };
  }

  /** What of an upstream's instructions this session's agent is told (`RequestHooks.instructions`). */
  private instructionsFor(record: SessionRecord, config: UpstreamConfig, given: string | undefined, traceId: string): string | undefined {
    // The upstream's text the agent's model reads: without the credentials the gateway configured for it (an upstream
    // that quotes the token it was sent must not show it to the agent). Masked after the hook judged the text as the
    // upstream wrote it (tool pinning compares it with what the control plane's probe approved).
    // Cut to MAX_INSTRUCTIONS_CHARS (`relayedInstructions`): a value running past the cut is masked by its beginning too.
    const shown = (text: string | undefined) => (text ? secretMaskOf(config).maskRelayed(text, MAX_INSTRUCTIONS_CHARS) : text);
    const gate = this.deps.hooks?.instructions;
    if (!given || gate === undefined) return shown(given);
    try {
      return shown(gate(record, config, given));
    } catch (error) {
      this.deps.logger.warn({ err: error, upstream: config.name, upstreamId: config.id, tenantId: config.tenantId, traceId }, 'upstream instructions left out: the hook deciding them failed');
      return undefined;
    }
  }

  /** The session if it exists and belongs to this principal; otherwise undefined (answered as 404). */
  async session(sessionId: string, principal: Principal): Promise<SessionRecord | undefined> {
    if (this.ended.has(sessionId)) return undefined;
    // The store answers from its short in-process cache most of the time, and keeps the Redis TTL moving for the
    // session's own principal only: anyone else presenting the id neither is served nor keeps the session alive.
    const record = await this.deps.sessions.get(sessionId, principal);
    if (!record || !sessionBelongsTo(record, principal)) return undefined;
    const live = this.live.get(sessionId);
    if (live) live.lastUsed = Date.now();
    return record;
  }

  /** Agent sessions this replica holds live (metrics). */
  get liveSessions(): number {
    return this.live.size;
  }

  /** Agent requests under way on this replica (a graceful shutdown waits for them). */
  get inflight(): number {
    let count = 0;
    for (const live of this.live.values()) count += live.inflight.size;
    return count;
  }

  /** Listing pages this replica holds for all its sessions (at most `listCacheMaxPages`): for metrics and tests. */
  get cachedListingPages(): number {
    return this.pageStore.size;
  }

  /**
   * Ends every session of a tenant (of one principal, if named), as DELETE would: a suspended tenant's, or a principal's
   * left without a usable credential (its agent client disabled, its last key revoked or expired). Refused meanwhile,
   * they would be served again, upstream sessions and all, once the tenant or the client were active again. Only those
   * made before `createdBefore` (what refused them could have seen). Returns how many it ended; rejects, once it has
   * tried them all, when one could not be ended (Redis failing), so that the caller tries again.
   */
  async endSessionsOf(tenantId: string, principal: Pick<SessionRecord, 'principalKind' | 'principalId'> | undefined, traceId: string, createdBefore = Number.POSITIVE_INFINITY): Promise<number> {
    const ids = (await this.deps.sessions.sessionsOf?.(tenantId, principal)) ?? [];
    let ended = 0;
    let failed: unknown;
    await Promise.all(
      ids.map(async (id) => {
        try {
          const record = await this.deps.sessions.reload?.(id);
          if (record === undefined || record.tenantId !== tenantId) return;
          if (principal !== undefined && (record.principalKind !== principal.principalKind || record.principalId !== principal.principalId)) return;
          if (record.createdAt >= createdBefore) return;
          await this.end(record, traceId);
          ended += 1;
        } catch (error) {
          failed ??= error;
        }
      }),
    );
    if (failed !== undefined) throw failed;
    return ended;
  }

  /**
   * Ends the sessions of every principal holding some that `refused` says may not (at a replica's start: a tenant
   * suspended, or a principal left with no usable credential, while no replica ran), of those created before
   * `createdBefore`: what `refused` was judged from cannot know of a principal or tenant made since. Rejects when the
   * store cannot be read (nothing was looked at). Returns how many it ended.
   */
  async endSessionsOfRefused(refused: (owner: SessionOwner) => boolean, createdBefore: number, traceId: string): Promise<number> {
    const owners = (await this.deps.sessions.owners?.()) ?? [];
    const counts = await Promise.all(owners.filter(refused).map((owner) => this.endSessionsOf(owner.tenantId, owner, traceId, createdBefore)));
    return counts.reduce((sum, count) => sum + count, 0);
  }

  /** DELETE: removes the record, closes every upstream session, tells the other replicas. */
  async end(record: SessionRecord, traceId: string): Promise<void> {
    this.markEnded(record.id);
    try {
      // The record as stored when it was removed may name upstream sessions newer than this replica's copy (another
      // replica renewed one, up to the removal itself): those are the ones to end. Read before the removal instead, a
      // renewal stored in between was never closed (found by review).
      const removed = await this.deps.sessions.delete(record.id);
      if (removed !== undefined) record = removed;
    } catch (error) {
      // Not ended after all (the record is still in Redis, served by every other replica): nor here, so that the agent's
      // retry ends it rather than being told the session is unknown.
      this.ended.delete(record.id);
      throw new SessionNotEndedError(error);
    }
    this.released.delete(record.id);
    const live = this.liveFor(record);
    this.live.delete(record.id);
    // Calls under way end as cancelled by the agent, before their upstream sessions close under them: closed first,
    // they failed as the upstream's error (-32050) and were audited and counted so, blaming a healthy upstream.
    for (const controller of live.inflight.values()) controller.abort(cancelledBecause('session ended'));
    this.stopTimers(live);
    this.dropRelayed(live);
    // The agent's GET stream ends with the session (left open it would carry keep-alives for a session that is gone),
    // and the other replicas hear of the end, before the upstream sessions are closed: an upstream slow to take its
    // DELETE (up to its connect timeout) held both, and other replicas served the session from their cache meanwhile.
    live.standalone?.close?.();
    live.standalone = undefined;
    this.dropPages(live);
    this.deps.bus?.broadcast({ type: 'session-ended', sessionId: record.id });
    const closing = this.closeUpstreams(record, live).then((settled) => {
      for (const outcome of settled) if (outcome.status === 'rejected') this.deps.logger.debug({ traceId, err: String(outcome.reason) }, 'upstream session not closed');
    });
    const tasks = this.deps.tasks?.delete(record.id).catch(() => undefined);
    // The agent's DELETE is answered once its upstream sessions are closed, or END_WAIT_MS on (the rest closes after).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([closing, tasks]), new Promise((resolve) => (timer = setTimeout(resolve, END_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /** Another replica ended a session: drop what this replica holds (per-replica upstream resources are closed). */
  forget(sessionId: string): void {
    this.markEnded(sessionId);
    this.deps.sessions.forget?.(sessionId);
    this.released.delete(sessionId);
    const live = this.live.get(sessionId);
    if (!live) return;
    this.live.delete(sessionId);
    live.standalone?.close?.();
    live.standalone = undefined;
    this.release(live);
  }

  /**
   * The id of this replica's standalone stream of the session if it resumed stream `streamId`: an agent that resumes
   * `streamId` again never got an event id of that stream (an agent before 2025-11-25 gets no priming event, so a resume
   * with nothing missed leaves it holding the older id), and what that stream logged while parked is what it missed,
   * all of it, from its start (a resume's replayed messages are logged there too). Resumed so, not closed as replaced:
   * before, what it had logged was lost (found by review). A stream held by another replica is not known here.
   */
  standaloneResuming(sessionId: string, streamId: string): string | undefined {
    const live = this.live.get(sessionId);
    const stream = live?.standalone;
    const token = live?.standaloneToken;
    if (stream === undefined || stream.id === undefined || stream.remote === true || token === undefined) return undefined;
    // Along the whole chain: a stream resumed so in turn stands for the streams its predecessor stood for (re-review:
    // the third resume of the first stream's id found only the last hop's, and closed it as replaced).
    return token.resumes === streamId || token.standsFor?.includes(streamId) === true ? stream.id : undefined;
  }

  /**
   * The agent's standalone GET stream (list_changed, log messages, server requests not tied to a call). `resumes`: the
   * stream this one resumes; `named`: the one the agent's Last-Event-ID named, when the GET route took that for a
   * resume of the current stream (`standaloneResuming`).
   */
  attachStandalone(record: SessionRecord, sink: MessageSink, resumes?: string, named?: string): () => void {
    if (this.ended.has(record.id)) {
      sink.close?.();
      return () => undefined;
    }
    const live = this.liveFor(record);
    // The record looked up for this stream may know upstreams joined through another replica.
    if (record !== live.record) this.adoptFrom(live, record);
    // Messages go to one standalone stream, the latest: an earlier one would only hold a socket and a keep-alive
    // timer (an agent opening thousands of them on one session). The specification lets the server close it.
    // The new one first: closing a parked one runs its detach at once, which must find it no longer the session's (it
    // would stop the upstreams' streams, and announce that nobody listens, as the agent reconnects).
    // One it does not resume ends as replaced: another client of the session took its place, and that client's resume
    // of it is refused (409) rather than taking the place back, again and again.
    const previous = live.standalone;
    const before = live.standaloneToken;
    live.standalone = sink;
    if (previous !== undefined && previous !== sink) previous.close?.(previous.id !== undefined && previous.id === resumes ? undefined : 'replaced');
    // The same rule across replicas: announced on the bus, and a replica holding an older stream closes it.
    const token = randomBytes(12).toString('base64url');
    // Resuming a stream of this replica's, closed above: it logged none of what comes from now on (no `early`).
    const resumedHere = previous !== undefined && previous.id !== undefined && previous.id === resumes;
    // What the resumed one stood for, it stands for too (a few: an agent that resumes with nothing missed, again and
    // again, names its first stream each time).
    const standsFor = resumedHere && before?.resumes !== undefined ? chainOf([named !== resumes ? named : undefined, before.resumes, ...(before.standsFor ?? [])]) : undefined;
    const announced = { token, confirmed: this.deps.bus === undefined, resumedHere, attachedAt: Date.now(), resumes, ...(standsFor ? { standsFor } : {}) };
    live.standaloneToken = announced;
    this.deps.bus?.broadcast({ type: 'standalone-attached', sessionId: record.id, token, renews: true, ...(resumes !== undefined ? { resumes } : { fresh: true }) });
    // An announcement that never comes back (a publish lost, the subscriber reconnecting) would leave this stream deaf
    // to later ones for good: after a while it counts as delivered.
    if (!announced.confirmed) setTimeout(() => (announced.confirmed = true), STANDALONE_ECHO_WAIT_MS).unref();
    // Upstream sessions attached on this replica forward their notifications to it.
    this.updateListening(live);
    for (const upstreamId of Object.keys(record.upstreams)) void this.upstream(live, upstreamId, 'standalone').catch(() => undefined);
    return () => {
      if (live.standalone === sink) {
        live.standalone = undefined;
        live.standaloneToken = undefined;
        this.deps.bus?.broadcast({ type: 'standalone-detached', sessionId: record.id, token });
        this.updateListening(live);
      }
    };
  }

  /**
   * Another replica holds a standalone stream of a session this replica holds one of too, long after both were
   * announced: an announcement was lost (a publish during a Redis blink, a subscriber reconnecting), and without this
   * both streams got every message for as long as they lived (found by a review). The rule both replicas compute alike,
   * from what the held rounds say of each stream: a stream the other resumed gives way (ended unmarked, as a handover
   * ends it); else a parked one (its agent gone) gives way to a live one (ended unmarked: its agent may still resume it
   * into the live one's place); else the one with the smaller token (as replaced when both are live: a second client).
   * Only past HELD_CONFLICT_GRACE_MS: a held round sent before that replica heard of a newer stream here is settled by the
   * announcement itself. Replicas of an earlier version say none of this and settle nothing.
   */
  private settleHeldConflict(sessionId: string, token: string, theirs: { readonly id: string; readonly away: boolean; readonly resumes: string }, now: number): void {
    const live = this.live.get(sessionId);
    const ours = live?.standaloneToken;
    const stream = live?.standalone;
    if (live === undefined || stream === undefined || ours === undefined || ours.token === token || !ours.confirmed) return;
    if (now - ours.attachedAt < HELD_CONFLICT_GRACE_MS) return;
    const oursAway = stream.away === true;
    let close: 'unmarked' | 'replaced' | undefined;
    if (stream.id !== undefined && theirs.resumes === stream.id) close = 'unmarked';
    else if (ours.resumes !== undefined && ours.resumes === theirs.id) close = undefined;
    else if (oursAway !== theirs.away) close = oursAway ? 'unmarked' : undefined;
    else if (ours.token < token) close = oursAway ? 'unmarked' : 'replaced';
    if (close === undefined) return;
    this.deps.logger.warn({ sessionIdPrefix: sessionId.slice(0, 8), parked: oursAway }, 'two replicas held a standalone stream of one session (an announcement was lost); this one closed');
    live.standalone = undefined;
    live.standaloneToken = undefined;
    stream.close?.(close === 'replaced' ? 'replaced' : undefined);
  }

  /** A standalone stream of the session was announced: this replica's is closed if the announced one came later. */
  private standaloneAnnounced(sessionId: string, token: string, replacedUnless: string | undefined): void {
    const live = this.live.get(sessionId);
    if (live === undefined) return;
    // Someone listens: the upstream sessions here listen too (one of the replicas gets each upstream's stream).
    this.updateListening(live);
    const ours = live.standaloneToken;
    if (!live.standalone || ours === undefined) return;
    if (token === ours.token) {
      ours.confirmed = true;
      return;
    }
    // Before our own came back: announced earlier than ours, so that replica closes its stream when ours reaches it.
    if (!ours.confirmed) return;
    const stream = live.standalone;
    live.standalone = undefined;
    live.standaloneToken = undefined;
    // The upstreams' streams held here stay (the agent listens on the other replica: `shouldListen`), and what comes
    // on them goes there over the bus.
    stream.close?.(replacedUnless !== undefined && stream.id !== replacedUnless ? 'replaced' : undefined);
  }

  /**
   * The agent resumed POST stream `streamId` of the session here (the resume `token`): the replica writing it (this
   * one, or any other, told over the bus) ends the original response, and every replica ends the other resumes of it
   * it serves, so that what follows goes out once, on this resume.
   */
  postStreamResumed(record: SessionRecord, streamId: string, token: string): void {
    this.postStreams.resumed(record.id, streamId, token);
    // Always told: the original may be written on any replica. (Not bounded as cancellations are: a resume is a GET
    // that opens a stream and reads the log, costing its sender more than the broadcast costs the replicas; bounded,
    // a principal past it had every later message of a stream resumed elsewhere sent twice: found by re-review.)
    this.deps.bus?.broadcast({ type: 'post-resumed', sessionId: record.id, streamId, token });
  }

  onBusMessage(message: BusMessage): void {
    switch (message.type) {
      case 'post-resumed':
        if (typeof message.sessionId === 'string' && typeof message.streamId === 'string') {
          this.postStreams.resumed(message.sessionId, message.streamId, typeof message.token === 'string' ? message.token : undefined);
        }
        return;
      case 'session-ended':
        this.listeners.ended(message.sessionId);
        this.forget(message.sessionId);
        return;
      case 'cancel':
        this.live.get(message.sessionId)?.inflight.get(inflightKey(message.sessionId, message.requestId))?.abort(cancelledByAgent(message.reason ?? 'cancelled'));
        return;
      case 'answer':
        this.settleAnswer(message.sessionId, message.response);
        return;
      case 'lists-changed': {
        const live = this.live.get(message.sessionId);
        live?.upstreams.get(message.upstreamId)?.pages.clear();
        if (live && message.resources === true) this.resourcesChanged(live, message.upstreamId);
        return;
      }
      case 'standalone':
        // Only the replica holding the agent's GET stream delivers; the others (and the sender) drop it. A parked stream
        // (its agent gone for now) logs a notification for the agent's resume, until a stream attached elsewhere is
        // announced (then it closes, and the new stream's replica gets later messages itself; the bus keeps the order
        // of the two). A relayed request is not logged there, nor a cancellation (of one): its replica hears of no
        // delivery and refuses it upstream at once, rather than hold the upstream until the agent perhaps comes back.
        {
          const live = this.live.get(message.sessionId);
          const standalone = live?.standalone;
          // Only a message (another replica's, another version's): anything else on the bus is dropped, not written.
          if (!isObject(message.message) || typeof message.message.method !== 'string') return;
          if (standalone === undefined || (standalone.away === true && ('id' in message.message || message.message.method === 'notifications/cancelled'))) return;
          // Before our stream's announcement came back, an older stream parked elsewhere may log it too (`early`).
          if (!standalone.send(message.message, live?.standaloneToken?.confirmed === false && live.standaloneToken.resumedHere !== true)) return;
          // A relayed request: its replica waits to hear that the agent's stream took it.
          const id = 'id' in message.message ? message.message.id : undefined;
          const owner = relayOwner(id);
          if (owner !== undefined && typeof id === 'string') this.deps.bus?.sendTo(owner, { type: 'standalone-delivered', sessionId: message.sessionId, id });
        }
        return;
      case 'standalone-delivered': {
        const waiting = typeof message.id === 'string' ? this.pending.get(message.id) : undefined;
        if (waiting?.sessionId === message.sessionId) waiting.delivered?.();
        return;
      }
      case 'relayed-progress':
        if (isObject(message.params)) this.relayProgress(message.sessionId, message.params);
        return;
      case 'standalone-attached':
        if (typeof message.token !== 'string' || typeof message.sessionId !== 'string') return;
        // A replica of an earlier version never announces it again, nor its end: its stream counts for an hour (its
        // agents keep hearing upstreams held here through a rolling upgrade, at the price of a broadcast too many).
        this.listeners.announced(message.sessionId, message.token, Date.now(), message.renews === true ? undefined : UNRENEWED_LISTENER_MS);
        // Which older stream is not replaced: the one resumed; none (''), for a fresh stream; any (undefined), when the
        // announcer does not say (an earlier version).
        this.standaloneAnnounced(message.sessionId, message.token, typeof message.resumes === 'string' ? message.resumes : message.fresh === true ? '' : undefined);
        return;
      case 'standalone-held': {
        if (!Array.isArray(message.streams)) return;
        const now = Date.now();
        for (const held of message.streams) {
          if (!Array.isArray(held) || typeof held[0] !== 'string' || typeof held[1] !== 'string') continue;
          const known = this.listeners.listens(held[0], now);
          this.listeners.announced(held[0], held[1], now);
          // A stream this replica had not heard of (it started later, or the attach was lost): its sessions here listen.
          const live = known ? undefined : this.live.get(held[0]);
          if (live !== undefined) this.updateListening(live);
          if (held.length >= 5) this.settleHeldConflict(held[0], held[1], { id: String(held[2]), away: held[3] === 1, resumes: String(held[4]) }, now);
        }
        return;
      }
      case 'standalone-detached': {
        if (typeof message.token !== 'string' || typeof message.sessionId !== 'string') return;
        this.listeners.detached(message.sessionId, message.token);
        const live = this.live.get(message.sessionId);
        if (live !== undefined) this.updateListening(live);
        return;
      }
      case 'upstreams-released': {
        // Held elsewhere until now, the upstreams' streams may be free: the agent's replica asks for them at once.
        const live = typeof message.sessionId === 'string' ? this.live.get(message.sessionId) : undefined;
        if (live?.standalone !== undefined) this.listenAgain(live);
        return;
      }
      case 'task-ended': {
        const live = this.live.get(message.sessionId);
        if (live !== undefined && typeof message.taskId === 'string') this.endTaskSlots(live, message.taskId, false);
        return;
      }
      case 'task-progress': {
        const live = this.live.get(message.sessionId);
        if (live !== undefined && typeof message.upstreamId === 'string' && typeof message.task === 'string' && message.task.length <= 256) {
          this.noteTaskProgress(live, message.upstreamId, message.token, message.task, typeof message.shift === 'number' && Number.isFinite(message.shift) ? message.shift : 0);
        }
        return;
      }
      case 'roots-changed': {
        const live = this.live.get(message.sessionId);
        if (live !== undefined && message.from !== this.deps.options.replicaId) this.rootsChanged(live, false);
        return;
      }
      case 'agent-state': {
        const live = this.live.get(message.sessionId);
        if (live !== undefined) void this.reloadAgentState(live);
        return;
      }
    }
  }

  /**
   * Takes the agent's log level and subscriptions from the stored record into this replica's copy (see `agent-state`).
   * A new level is also told to the upstream sessions this replica holds of its own (stdio, legacy SSE) whose upstream
   * logs: the replica the agent's `logging/setLevel` reached told only its own and the shared ones, and calls served
   * here would go on logging at the old level.
   */
  private async reloadAgentState(live: LiveSession): Promise<void> {
    let stored: SessionRecord | undefined;
    try {
      stored = await (this.deps.sessions.reload?.(live.record.id) ?? this.deps.sessions.get(live.record.id));
    } catch {
      // Redis unreachable: the copy stays as it was until the next change or lookup brings the record.
      return;
    }
    if (stored === undefined || this.live.get(stored.id) !== live) return;
    const { logLevel: _level, subscriptions: _subscriptions, ...rest } = live.record;
    live.record = { ...rest, ...(stored.logLevel !== undefined ? { logLevel: stored.logLevel } : {}), ...(stored.subscriptions !== undefined ? { subscriptions: stored.subscriptions } : {}) };
    this.tellOwnLevel(live);
  }

  /**
   * Tells this replica's own upstream sessions of the session (stdio, legacy SSE: the shared ones were told by the
   * replica the agent's `logging/setLevel` reached) whose upstream logs the level in its copy of the record, once.
   */
  private tellOwnLevel(live: LiveSession): void {
    const level = live.record.logLevel;
    if (level === undefined || level === live.toldLevel) return;
    live.toldLevel = level;
    for (const upstreamId of this.upstreamIdsWith(live, 'logging')) {
      const own = live.record.upstreams[upstreamId]?.sessionId === null ? live.upstreams.get(upstreamId)?.session : undefined;
      void own?.then((session) => session.request('logging/setLevel', { level }, { timeoutMs: this.deps.options.listTimeoutMs })).catch(() => undefined);
    }
  }

  async shutdown(): Promise<void> {
    this.closing = true;
    for (const wake of this.stopWaiters) wake();
    this.stopWaiters.clear();
    clearInterval(this.sweeper);
    clearInterval(this.announcer);
    for (const live of this.live.values()) this.release(live);
    this.live.clear();
  }

  // ---------------------------------------------------------------- messages

  /** A notification from the agent. */
  notification(record: SessionRecord, message: JsonRpcNotification): void {
    if (this.ended.has(record.id)) return;
    const params = message.params ?? {};
    switch (message.method) {
      case 'notifications/cancelled': {
        const requestId = params['requestId'];
        // Only an id a request could have had: anything else names nothing, and would be broadcast to every replica.
        if (!isId(requestId)) return;
        const controller = this.live.get(record.id)?.inflight.get(inflightKey(record.id, requestId));
        // The agent's reason is free text of any length: cut before it is kept, logged or broadcast to other replicas.
        const reason = typeof params['reason'] === 'string' ? params['reason'].slice(0, MAX_CANCEL_REASON) : 'cancelled by the client';
        if (controller) controller.abort(cancelledByAgent(reason));
        else if (this.deps.bus !== undefined) {
          const allowance = this.cancelBroadcasts.of(ownerKey(record.tenantId, record.principalKind, record.principalId));
          if (allowance.take()) this.deps.bus.broadcast({ type: 'cancel', sessionId: record.id, requestId, reason });
          const dropped = allowance.droppedToReport(DROPPED_WARNING_MS);
          if (dropped !== undefined) {
            this.deps.logger.warn({ tenantId: record.tenantId, principalKind: record.principalKind, principalId: record.principalId, dropped }, 'cancellations not told to the other replicas: the principal sent more than they may be told of');
          }
        }
        return;
      }
      case 'notifications/progress': {
        // Progress on a request the gateway relayed to the agent (sampling, elicitation): its token is that request's
        // id, which names the replica holding it.
        const progress = relayableProgress(params);
        if (progress === undefined) return;
        const owner = relayOwner(progress.progressToken);
        if (owner === undefined) return;
        // Each is a message to the upstream (a POST, on Streamable HTTP) and maybe one on the bus: bounded per principal
        // as the other direction is per upstream (found by review: an agent drove any number into the upstream).
        if (!this.agentProgress.of(ownerKey(record.tenantId, record.principalKind, record.principalId)).take()) return;
        if (owner === this.deps.options.replicaId || !this.deps.bus) this.relayProgress(record.id, progress);
        else this.deps.bus.sendTo(owner, { type: 'relayed-progress', sessionId: record.id, params: progress });
        return;
      }
      case 'notifications/roots/list_changed':
        // Upstreams were told the client has roots only if the agent declared them (relayableClientCapabilities).
        if (isObject(clientCapabilitiesIn(record)['roots'])) this.rootsChanged(this.liveFor(record), true);
        return;
      default:
        return; // notifications/initialized and anything else: nothing to relay.
    }
  }

  /** A response from the agent: the answer to a server→client request the gateway relayed. */
  answer(record: SessionRecord, response: JsonRpcResponse): void {
    const id = response.id;
    const owner = relayOwner(id);
    if (owner === undefined || typeof id !== 'string') return;
    if (owner === this.deps.options.replicaId || !this.deps.bus) {
      this.settleAnswer(record.id, response);
      return;
    }
    try {
      this.deps.bus.sendTo(owner, { type: 'answer', sessionId: record.id, response });
    } catch (error) {
      // The agent's answer nested too deeply to serialise for the other replica: that replica's upstream request gets
      // an internal error instead of waiting for an answer that cannot come.
      if (!isStackExhausted(error)) throw error;
      const replacement: JsonRpcResponse = { jsonrpc: '2.0', id, error: { code: JSON_RPC.INTERNAL_ERROR, message: 'The answer could not be relayed' } };
      this.deps.bus.sendTo(owner, { type: 'answer', sessionId: record.id, response: replacement });
    }
  }

  /**
   * A request from the agent on an established session. Never throws: errors become JSON-RPC errors.
   * `clientIp`: the agent's address as the HTTP layer sees it (policy conditions may use it). `credentialId`: the
   * credential this request presented (hooks may check it again after a wait).
   */
  async request(record: SessionRecord, message: JsonRpcRequest, sink: MessageSink, traceId: string, clientIp?: string, credentialId?: string): Promise<JsonRpcResponse> {
    if (this.ended.has(record.id)) {
      return this.refusedEarly(record, message, traceId, credentialId, new GatewayRequestError(GATEWAY_RPC.NOT_FOUND, 'Session not found'));
    }
    const live = this.liveFor(record);
    const key = inflightKey(record.id, message.id);
    if (live.inflight.has(key)) {
      // MCP: an id is not reused within a session. Serving both would leave the first uncancellable (one entry).
      const duplicate = new GatewayRequestError(JSON_RPC.INVALID_REQUEST, 'Invalid Request: a request with this id is still in progress');
      return this.refusedEarly(live.record, message, traceId, credentialId, duplicate);
    }
    const principal = live.principalKey;
    const ofPrincipal = this.inflightByPrincipal.get(principal) ?? 0;
    if (ofPrincipal >= MAX_IN_FLIGHT_PER_PRINCIPAL) {
      const tooMany = new GatewayRequestError(
        GATEWAY_RPC.RATE_LIMITED,
        `Too many requests under way for this client (at most ${MAX_IN_FLIGHT_PER_PRINCIPAL})`,
        { retryAfterSeconds: 1 },
        'rate_limited',
      );
      return this.refusedEarly(live.record, message, traceId, credentialId, tooMany);
    }
    this.inflightByPrincipal.set(principal, ofPrincipal + 1);
    const controller = new Cancellation();
    live.inflight.set(key, controller);
    const hooks = this.deps.hooks;
    const startedAt = Date.now();
    let info: RequestInfo | undefined;
    let admission: Admission | undefined;
    let admitted = false;
    // When the hooks let the call go (after an approval wait, minutes later): its upstream call's timeout runs from here.
    let admittedAt = startedAt;
    const gate: Gate = async (target, args, taskOf) => {
      const meta = message.params?.['_meta'];
      const progressToken = isObject(meta) ? meta['progressToken'] : undefined;
      // Built field by field: no throwaway objects for the optional parts (this runs for every request).
      const built: { -readonly [K in keyof RequestInfo]: RequestInfo[K] } = {
        record: live.record,
        method: message.method,
        requestId: message.id,
        traceId,
        startedAt,
      };
      if (target) built.target = target;
      if (taskOf) built.taskOf = taskOf;
      if (args) built.arguments = args;
      if (clientIp !== undefined) built.clientIp = clientIp;
      if (credentialId !== undefined) built.credentialId = credentialId;
      if (typeof progressToken === 'string' || typeof progressToken === 'number') built.progressToken = progressToken;
      info = built;
      admitted = true;
      if (!hooks?.admit) return undefined;
      const verdict = hooks.admit(info, sink, controller.signal, undefined);
      if (!(verdict instanceof Promise) && verdict?.confirm === undefined) return (admission = verdict);
      admission = await verdict;
      admittedAt = Date.now();
      // The session ended (a DELETE here or elsewhere, expiry) while the hooks decided: the request ends with it.
      if (this.live.get(live.record.id) !== live) throw new GatewayRequestError(GATEWAY_RPC.NOT_FOUND, 'Session not found');
      // An approval is used right before the request goes upstream, once its upstream session is at hand (`forward`).
      if (admission?.confirm !== undefined) this.confirmations.set(message, admission.confirm);
      return admission;
    };
    let retained = false;
    const retain = (): (() => void) | undefined => {
      retained = true;
      return admission?.release;
    };
    let response: JsonRpcResponse;
    let result: Record<string, unknown> | undefined;
    try {
      result = await this.route(live, message, sink, controller.signal, traceId, gate, retain);
      // tasks/result may have waited an hour: the hooks decide again whether its answer is still the agent's.
      if (message.method === 'tasks/result' && info !== undefined) hooks?.recheck?.(info);
      if (message.method === 'resources/read' && info !== undefined) result = this.readableContents(info, result);
      response = resultResponse(message.id, result);
    } catch (error) {
      response = this.errorFor(message.id, error, traceId);
      if (!admitted) {
        // Refused before the hooks saw it (an unknown tool, bad params): recorded all the same, with the key it presented.
        info =
          credentialId === undefined
            ? { record: live.record, method: message.method, requestId: message.id, traceId, startedAt }
            : { record: live.record, method: message.method, requestId: message.id, traceId, startedAt, credentialId };
      }
      this.report(info, response, error, admitted ? admission : undefined, undefined, controller.signal);
      if (controller.aborted && agentCancellations.has(controller.reason as object)) unanswerableResponses.add(response);
      return response;
    } finally {
      // A held call that never got as far as its upstream: its approval stays unused.
      if (this.confirmations.size > 0) this.confirmations.delete(message);
      live.inflight.delete(key);
      const left = (this.inflightByPrincipal.get(principal) ?? 1) - 1;
      if (left > 0) this.inflightByPrincipal.set(principal, left);
      else this.inflightByPrincipal.delete(principal);
      if (!retained) this.releaseAfter(admission, controller.signal, info, admittedAt);
    }
    this.report(info, response, undefined, admission, result, controller.signal);
    // An answer that came all the same (the upstream finished first, or ignores cancellations) is not sent either.
    if (controller.aborted && agentCancellations.has(controller.reason as object)) unanswerableResponses.add(response);
    return response;
  }

  /**
   * Answers a request refused before any of its work (its session ended, its id still in progress, its principal at
   * the in-flight cap), and reports it like every other refusal. Only this branch builds its info: the common call
   * pays nothing for it. Before, these refusals reached the agent and left no audit event.
   */
  private refusedEarly(record: SessionRecord, message: JsonRpcRequest, traceId: string, credentialId: string | undefined, error: GatewayRequestError): JsonRpcResponse {
    const response = rpcError(message.id, error.rpcCode, error.message, traceId, error.data);
    const startedAt = Date.now();
    const info: RequestInfo =
      credentialId === undefined
        ? { record, method: message.method, requestId: message.id, traceId, startedAt }
        : { record, method: message.method, requestId: message.id, traceId, startedAt, credentialId };
    this.report(info, response, error, undefined, undefined, NOT_CANCELLED);
    return response;
  }

  /**
   * Gives back what the call held (concurrency slots). A call the agent cancelled, or hung up on, may still be running
   * upstream (a cancellation is only a request, and many servers never look at it): its slots are kept until its
   * timeout would have passed, counted from when the hooks let it go (`admittedAt`: a call held for approval runs
   * upstream only then), or the agent could cancel and call again without end and run any number at once.
   */
  private releaseAfter(admission: Admission | undefined, signal: { readonly aborted: boolean }, info: RequestInfo | undefined, admittedAt: number): void {
    const release = admission?.release;
    if (release === undefined) return;
    const timeoutMs = info?.target?.upstream.callTimeoutMs;
    // The call's controller is aborted only by cancellations (the agent's, a hang-up, the session's end).
    const heldMs = signal.aborted && timeoutMs !== undefined ? admittedAt + timeoutMs - Date.now() : 0;
    if (heldMs <= 0) {
      release();
      return;
    }
    setTimeout(release, heldMs).unref();
  }

  /**
   * The agent's roots changed: every upstream session of the session is told. One that every replica shares (it has an
   * id: Streamable HTTP) is told by the replica the agent's notice reached (`shared`); one each replica holds of its
   * own (stdio, legacy SSE) by every replica that holds one (`roots-changed` on the bus), and none is opened just to be
   * told (a new one asks for the roots anyway). Each notice is a message to every upstream, and an agent's
   * notifications pass no rate limit, so at most one goes out per ROOTS_NOTICE_INTERVAL_MS per session and replica;
   * changes in between are told by one more notice at the end of the interval (upstreams ask for the roots anyway).
   */
  private rootsChanged(live: LiveSession, shared: boolean): void {
    if (shared) live.rootsNoticeShared = true;
    if (live.rootsNotice === 'scheduled') return;
    const since = live.rootsNotice === undefined ? Infinity : performance.now() - live.rootsNotice;
    const send = () => {
      live.rootsNotice = performance.now();
      const toShared = live.rootsNoticeShared;
      live.rootsNoticeShared = false;
      if (this.ended.has(live.record.id)) return;
      // The other replicas tell theirs: from here, at this notice's pace (an agent's notifications pass no rate limit,
      // and each broadcast reaches every replica).
      if (toShared) this.deps.bus?.broadcast({ type: 'roots-changed', sessionId: live.record.id, from: this.deps.options.replicaId });
      for (const [upstreamId, state] of Object.entries(live.record.upstreams)) {
        const own = live.upstreams.get(upstreamId);
        const session = state.sessionId !== null ? (toShared ? this.upstream(live, upstreamId, 'notify') : undefined) : own?.session;
        void session?.then((opened) => opened.notify('notifications/roots/list_changed')).catch(() => undefined);
      }
    };
    if (since >= ROOTS_NOTICE_INTERVAL_MS) {
      send();
      return;
    }
    live.rootsNotice = 'scheduled';
    setTimeout(send, ROOTS_NOTICE_INTERVAL_MS - since).unref();
  }

  /** Tells the `completed` hook how a request ended. */
  private report(
    info: RequestInfo | undefined,
    response: JsonRpcResponse,
    error: unknown,
    admission: Admission | undefined,
    result: Record<string, unknown> | undefined,
    signal: CancelSignal,
  ): void {
    const completed = this.deps.hooks?.completed;
    if (!completed || !info) return;
    let outcome: RequestOutcome['outcome'] = 'ok';
    if ('error' in response) {
      if (error instanceof GatewayRequestError) outcome = error.outcome;
      else if (signal.aborted) outcome = 'cancelled';
      else if (error instanceof UpstreamRpcError || error instanceof UpstreamUnavailableError) outcome = 'upstream_error';
      else outcome = 'error';
    }
    const report: { -readonly [K in keyof RequestOutcome]: RequestOutcome[K] } = { outcome, latencyMs: 0 };
    if (admission) report.admission = admission;
    if ('error' in response) {
      const { code, message, data } = response.error;
      report.error = data === undefined ? { code, message } : { code, message, data };
    }
    if (result) report.result = result;
    if (error instanceof UpstreamRpcError) report.fromUpstream = true;
    report.latencyMs = Date.now() - info.startedAt;
    completed(info, report);
  }

  private async route(
    live: LiveSession,
    message: JsonRpcRequest,
    sink: MessageSink,
    signal: CancelSignal,
    traceId: string,
    gate: Gate,
    /** Takes the admission's release (concurrency slots) from the request: the caller ends the slots itself. */
    retain: () => (() => void) | undefined,
  ): Promise<Record<string, unknown>> {
    // MCP 2025-11-25: a receiver that did not declare task augmentation for a request type processes such a request
    // normally, ignoring its `task`. The gateway declares it for tools/call at most (decided below, per upstream): the
    // `task` of any other request is dropped here, else it reached upstreams that refuse it (the SDK's server: -32603).
    const params = message.method === 'tools/call' || message.params === undefined || !('task' in message.params) ? (message.params ?? {}) : withoutTask(message.params);
    // What MCP types strictly is checked here, before anything is counted, held or forwarded (see request-params.ts).
    const malformed = metaProblem(params);
    if (malformed !== undefined) throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, malformed);
    const area = AREA_OF_METHOD[message.method];
    // MCP: a method of a capability the server does not have is not found. (tools/list always answers, empty when no
    // upstream has tools: agents list tools whatever was advertised.)
    if (area !== undefined && !this.supports(live, area) && !(await this.supportsOnceJoined(live, area, traceId))) {
      throw new GatewayRequestError(JSON_RPC.METHOD_NOT_FOUND, `Method not found: ${message.method}`);
    }
    switch (message.method) {
      case 'ping':
        await gate();
        return {};
      case 'tools/list':
        await gate();
        return this.list(live, 'tools', params['cursor'], traceId, signal, undefined, sink);
      case 'prompts/list':
        await gate();
        return this.list(live, 'prompts', params['cursor'], traceId, signal, undefined, sink);
      case 'resources/list':
        await gate();
        return this.list(live, 'resources', params['cursor'], traceId, signal, undefined, sink);
      case 'resources/templates/list':
        await gate();
        return this.list(live, 'resourceTemplates', params['cursor'], traceId, signal, undefined, sink);
      case 'tools/call':
      case 'prompts/get': {
        const kind = message.method === 'tools/call' ? 'tool' : 'prompt';
        const target = this.byExposedName(live, params['name'], kind, true) ?? (await this.joinedTarget(live, params['name'], kind, traceId));
        const given = params['arguments'];
        // Arguments are an object (or absent; null taken as absent) in MCP. Anything else would reach the upstream while
        // policy conditions, the approval's copy and the audit row saw no arguments at all.
        if (given !== undefined && given !== null && !isObject(given)) throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, 'arguments must be an object');
        // A prompt's arguments are text (MCP), which the upstream would refuse otherwise.
        const notText = kind === 'prompt' ? textMapProblem(given ?? undefined, 'arguments') : undefined;
        if (notText !== undefined) throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, notText);
        const args = isObject(given) ? given : undefined;
        // MCP: a receiver that did not offer tasks runs the call as a plain one, ignoring the augmentation; so the
        // gateway does where it offered none (initialize told the agent so, even if a task-capable upstream joined
        // since), and it sends none to an upstream that did not declare task-augmented tool calls (MCP: a requestor
        // MUST NOT). Checked before the hooks: an approved call refused after the wait would leave its approval used.
        const tasked = kind === 'tool' && params['task'] !== undefined && this.takesToolTasks(live.record, target.upstreamId);
        if (tasked && !isObject(params['task'])) throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, 'task must be an object');
        const admission = await gate({ upstream: target.config, kind, name: target.name }, args);
        // Arguments an approver edited replace the agent's after the check above: a prompt's must be text all the same
        // (refused before the approval is used, which happens only once the request is forwarded).
        const editedNotText = kind === 'prompt' && admission?.arguments ? textMapProblem(admission.arguments, 'the approved arguments') : undefined;
        if (editedNotText !== undefined) throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, editedNotText);
        const forwarded: Record<string, unknown> = { ...params, name: target.name, ...(admission?.arguments ? { arguments: admission.arguments } : {}) };
        // Null arguments are absent for the upstream too, as for the policy and the audit trail (MCP has no null here).
        if (forwarded['arguments'] === null) delete forwarded['arguments'];
        if (kind === 'tool' && forwarded['task'] !== undefined) {
          if (!tasked) delete forwarded['task'];
          else {
            // Messages about the new task may come with the answer that creates it: they wait until its id is recorded.
            let adopted: (task: TaskContext | undefined) => void = () => undefined;
            const scope = new Promise<TaskContext | undefined>((resolve) => (adopted = resolve));
            const creating = live.creatingTasks.get(target.upstreamId) ?? new Set();
            live.creatingTasks.set(target.upstreamId, creating.add(scope));
            try {
              // MCP 2025-11-25: a task-augmented request is cancelled with tasks/cancel, never notifications/cancelled.
              // The upstream call is not aborted with the agent's request: it runs on to its CreateTaskResult (within its
              // timeout), and the task it created for a request given up meanwhile is cancelled then.
              const answer = this.forward(live, target.upstreamId, message, forwarded, sink, NOT_CANCELLED, traceId, admission?.progressSent, scope);
              const created = await unlessAborted(answer, signal, (late) =>
                late.then(
                  (result) => this.cancelUpstreamTask(live, target.upstreamId, result, traceId),
                  () => undefined,
                ),
              );
              // Cancelled while the task's route was stored: its answer will not be sent, so the agent never learns the
              // task. It is cancelled upstream too (its route and slots go when it is seen to end).
              const cancelledMeanwhile = () => {
                if (signal.aborted) this.cancelUpstreamTask(live, target.upstreamId, created, traceId);
              };
              signal.addEventListener('abort', cancelledMeanwhile);
              try {
                return await this.adoptTask(live, target.upstreamId, target.name, created, traceId, (task) => {
                  adopted(task);
                  this.trackTaskProgress(live, target.upstreamId, forwarded['_meta'], task.agent, admission?.progressSent ?? 0);
                  // The call goes on as a task: its concurrency slots stay taken while it runs (else an agent could run
                  // any number of a limited tool at once as tasks), up to the call timeout their lease is sized by.
                  const release = retain();
                  if (release !== undefined) this.holdSlotsForTask(live, task.agent, release, target.config.callTimeoutMs);
                });
              } finally {
                signal.removeEventListener('abort', cancelledMeanwhile);
              }
            } finally {
              adopted(undefined);
              creating.delete(scope);
              if (creating.size === 0 && live.creatingTasks.get(target.upstreamId) === creating) live.creatingTasks.delete(target.upstreamId);
            }
          }
        }
        const answer = this.forward(live, target.upstreamId, message, forwarded, sink, signal, traceId, admission?.progressSent);
        // An agent on an older protocol version than the upstream's gets only content blocks its version defines. The
        // negotiated versions are dates, compared as strings: from ADAPTED_BEFORE on nothing needs adapting.
        const version = live.record.protocolVersion;
        if (version >= ADAPTED_BEFORE) return answer;
        return answer.then((result) => (kind === 'tool' ? adaptCallResult(result, version) : adaptPromptResult(result, version)));
      }
      case 'tasks/get':
      case 'tasks/result':
      case 'tasks/cancel': {
        const advertised = this.tasksOffered(live.record) ? this.capabilitiesOf(live.record)['tasks'] : undefined;
        if (!isObject(advertised) || (message.method === 'tasks/cancel' && !isObject(advertised['cancel']))) {
          throw new GatewayRequestError(JSON_RPC.METHOD_NOT_FOUND, `Method not found: ${message.method}`);
        }
        const agentTaskId = params['taskId'];
        let route: StoredTaskRoute | undefined;
        try {
          route = typeof agentTaskId === 'string' ? await (this.deps.tasks as TaskRouteStore).route(live.record.id, agentTaskId) : undefined;
        } catch (error) {
          // The routes cannot be read (Redis is out of reach): the request still meets the hooks (rate limits, the
          // audit trail's fail-closed check) before it fails, as any other does.
          await gate();
          throw error;
        }
        const config = route === undefined ? undefined : this.deps.registry.forTenant(live.record.tenantId).byId.get(route.upstreamId);
        // About the tool whose call created the task, when the route knows it: the hooks may decide again whether the
        // principal may still use it, and the audit trail names it.
        await gate(undefined, undefined, route?.tool !== undefined && config !== undefined ? { upstream: config, kind: 'tool', name: route.tool } : undefined);
        if (typeof agentTaskId !== 'string') throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, 'taskId must be a string');
        if (route === undefined || !(await this.hasUpstream(live, route.upstreamId)) || !this.runsTasksOf(live.record, route.upstreamId)) {
          throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, TASK_NOT_FOUND);
        }
        // `tasks.cancel` is advertised when one of the session's upstreams supports it: a task of another is not sent a
        // request its server never declared (found by review).
        if (message.method === 'tasks/cancel' && !cancelsTasks(live.record.upstreams[route.upstreamId]?.capabilities ?? {})) {
          throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, 'This task cannot be cancelled: the server running it does not support cancelling tasks');
        }
        // tasks/result waits for the task: within its lifetime (at most an hour), however short one call's timeout is.
        const callTimeoutMs = config?.callTimeoutMs ?? 0;
        const timeoutMs = message.method === 'tasks/result' ? Math.max(callTimeoutMs, Math.min(route.expiresAt - Date.now(), TASK_RESULT_MAX_WAIT_MS)) : undefined;
        const task: TaskContext = {
          upstream: route.taskId,
          agent: agentTaskId,
          ...(route.tool !== undefined ? { tool: route.tool } : {}),
          ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        };
        const result = await this.forward(live, route.upstreamId, message, upstreamTaskParams(params, route.taskId), sink, signal, traceId, 0, task);
        // A result of tasks/result, or a terminal status: the task has ended. (An error of tasks/result may be the task's
        // own or a passing failure: its slots then go back when its end is seen, or at their deadline.)
        if (message.method === 'tasks/result' || isTerminalTaskStatus(result['status'])) this.endTaskSlots(live, agentTaskId);
        const renamed = renameTask(result, task.upstream, task.agent);
        return message.method === 'tasks/result' ? renamed : maskedTaskStatus(config, renamed);
      }
      case 'resources/read': {
        const upstreamId = await this.byUri(live, params['uri'], traceId);
        await gate(this.resourceTarget(live, upstreamId, params['uri']));
        // The contents of other URIs it may answer with are decided after (`readableContents`).
        return this.forward(live, upstreamId, message, params, sink, signal, traceId);
      }
      case 'resources/subscribe': {
        const uri = params['uri'];
        const upstreamId = await this.byUri(live, uri, traceId);
        // Another upstream's `subscribe` made the gateway advertise it; this resource's server must have it too.
        const capabilities = live.record.upstreams[upstreamId]?.capabilities;
        const resources = capabilities?.['resources'];
        if (capabilities !== undefined && !(isObject(resources) && resources['subscribe'] === true)) {
          throw new GatewayRequestError(JSON_RPC.METHOD_NOT_FOUND, 'Method not found: the server of this resource does not support subscriptions');
        }
        await this.refuseSubscriptionPastBound(live, upstreamId, uri as string);
        await gate(this.resourceTarget(live, upstreamId, uri));
        const making = { upstreamId, uri: uri as string };
        live.subscribing.push(making);
        try {
          const result = await this.forward(live, upstreamId, message, params, sink, signal, traceId);
          const recorded = await this.recordAgentState(live, (record) => withSubscription(record, upstreamId, uri as string, true), traceId);
          if (!recorded) live.unrecorded.set(uri as string, upstreamId);
          return result;
        } finally {
          live.subscribing.splice(live.subscribing.indexOf(making), 1);
        }
      }
      case 'resources/unsubscribe': {
        const uri = params['uri'];
        // The upstream the subscription was made on, as the record says: the URI may no longer be listed anywhere (the
        // resource went away), and the subscription must still be ended and leave the record.
        // Read past the cache: another replica may have made the subscription moments ago.
        const { sessions } = this.deps;
        const reading = typeof uri === 'string' ? (sessions.reload?.(live.record.id) ?? sessions.get(live.record.id)) : undefined;
        const stored = reading !== undefined ? ((await reading.catch(() => undefined)) ?? live.record) : undefined;
        // Made on an upstream another replica joined to the session: adopted here first, so the unsubscribe goes where the
        // subscription is, not to an upstream of this replica's that lists the URI too (or nowhere).
        if (stored !== undefined && stored !== live.record) this.adoptFrom(live, stored);
        const holders = stored !== undefined ? subscribedUpstreams(stored, uri as string) : [];
        const held = holders[0];
        const upstreamId = held !== undefined && Object.hasOwn(live.record.upstreams, held) ? held : await this.byUri(live, uri, traceId);
        try {
          await gate(this.resourceTarget(live, upstreamId, uri));
        } catch (error) {
          // Ending a subscription the session holds only takes access away: a policy that no longer allows the resource
          // does not keep it going (upstream, counted against the session's subscriptions, and subscribed again on every
          // new upstream session). Refused for anything else (a rate limit, an audit trail that cannot record it): refused.
          if (held === undefined || !(error instanceof GatewayRequestError) || error.rpcCode !== GATEWAY_RPC.POLICY_DENIED) throw error;
        }
        try {
          return await this.forward(live, upstreamId, message, params, sink, signal, traceId);
        } finally {
          // Whatever the upstream answered: the agent no longer wants it, so no new upstream session is subscribed to it
          // again (an upstream that says it was not subscribed has usually lost the subscription itself), nor is it
          // recorded by a later write if the store could not record it.
          live.unrecorded.delete(uri as string);
          // Held on other upstreams too (the URI's route moved and the agent subscribed again): ended there as well, or
          // their updates would go on reaching the agent, and the record would keep them.
          for (const other of holders) {
            if (other !== upstreamId && Object.hasOwn(live.record.upstreams, other)) await this.forward(live, other, message, params, NO_STREAM, signal, traceId).catch(() => undefined);
          }
          const ended = [...new Set([upstreamId, ...holders])];
          await this.recordAgentState(
            live,
            (record) => {
              let edited: SessionRecord | undefined;
              for (const id of ended) edited = withSubscription(edited ?? record, id, uri as string, false) ?? edited;
              return edited;
            },
            traceId,
          );
        }
      }
      case 'completion/complete': {
        const ref = params['ref'];
        if (!isObject(ref)) throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, 'completion/complete needs a ref');
        const incomplete = completionProblem(params);
        if (incomplete !== undefined) throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, incomplete);
        if (ref['type'] === 'ref/prompt') {
          const target = this.byExposedName(live, ref['name'], 'prompt', true) ?? (await this.joinedTarget(live, ref['name'], 'prompt', traceId));
          // Decided on the prompt's arguments as the completion states them (its context's, and the one being completed),
          // as prompts/get is: a deny conditioned on them holds for completions too.
          await gate({ upstream: target.config, kind: 'prompt', name: target.name }, completionArguments(params));
          return this.forward(live, target.upstreamId, message, { ...params, ref: { ...ref, name: target.name } }, sink, signal, traceId);
        }
        if (ref['type'] === 'ref/resource') {
          const upstreamId = (await this.byListedTemplate(live, ref['uri'], traceId)) ?? (await this.byUri(live, ref['uri'], traceId));
          await gate(this.resourceTarget(live, upstreamId, ref['uri']));
          const completed = await this.forward(live, upstreamId, message, params, sink, signal, traceId);
          return this.visibleCompletions(live, upstreamId, ref['uri'] as string, params, completed);
        }
        throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, 'unknown completion ref type');
      }
      case 'logging/setLevel': {
        // Only where initialize declared logging: an upstream joined since may have it, but its messages are not passed
        // on to an agent never told of logging (`relayable`), so a level set for them would be a success with no effect.
        if (!isObject(this.capabilitiesOf(live.record)['logging'])) throw new GatewayRequestError(JSON_RPC.METHOD_NOT_FOUND, `Method not found: ${message.method}`);
        await gate();
        // MCP: a level that is not one of RFC 5424's eight is invalid params, answered here rather than by every upstream
        // (whose refusals the fan-out below would turn into a success).
        if (typeof params['level'] !== 'string' || !LOG_LEVELS.includes(params['level'])) {
          throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, 'level must be one of debug, info, notice, warning, error, critical, alert, emergency');
        }
        const targets = this.upstreamIdsWith(live, 'logging');
        // Bounded like a listing: one slow or reconnecting upstream must not hold the answer for its call timeout.
        const timeoutMs = this.deps.options.listTimeoutMs;
        const settled = await Promise.allSettled(
          targets.map((upstreamId) => {
            return this.onUpstream(live, upstreamId, traceId, (session) => session.request('logging/setLevel', params, { signal, timeoutMs }), AbortSignal.timeout(timeoutMs));
          }),
        );
        // No upstream took it: the level is not in force anywhere, and the agent is told so (the first refusal).
        const refusal = settled.find((outcome) => outcome.status === 'rejected');
        if (refusal !== undefined && !settled.some((outcome) => outcome.status === 'fulfilled')) throw refusal.reason;
        // Kept for new upstream sessions once an upstream took it (only MCP's levels: the record holds nothing else), or
        // when none has logging yet (the one that has is down, or joins later): it is told the level when it joins, and
        // what it logs below the level is not passed on. Before, it was answered as set and held nowhere (found by review).
        const level = params['level'];
        if (typeof level === 'string' && LOG_LEVELS.includes(level) && (targets.length === 0 || settled.some((outcome) => outcome.status === 'fulfilled'))) {
          // This replica's own upstream sessions were told above.
          live.toldLevel = level;
          await this.recordAgentState(live, (record) => withLogLevel(record, level), traceId);
        }
        return {};
      }
      case 'initialize':
        throw new GatewayRequestError(JSON_RPC.INVALID_REQUEST, 'the session is already initialised');
      default:
        throw new GatewayRequestError(JSON_RPC.METHOD_NOT_FOUND, `Method not found: ${message.method}`);
    }
  }

  /**
   * A read's contents without the items of other URIs the request could not have read itself. One read may answer with
   * several resources (a directory's files, an index's entries), each under its own URI, and the hooks decided only the
   * URI asked for: without this an agent allowed `file:///srv/**` but denied `file:///srv/secret/**` read the secret
   * files by reading their directory. Each item of another URI is kept only when every hook's `alsoReadable` allows a
   * read of it by this request (its principal, time and address); a hook that throws keeps none of them.
   */
  private readableContents(info: RequestInfo, result: Record<string, unknown>): Record<string, unknown> {
    const check = this.deps.hooks?.alsoReadable;
    const contents = result['contents'];
    const target = info.target;
    if (check === undefined || target === undefined || !Array.isArray(contents)) return result;
    const readable = new Map<string, boolean>();
    const kept = contents.filter((item) => {
      if (!isObject(item) || typeof item['uri'] !== 'string' || item['uri'] === target.name) return true;
      const uri = item['uri'];
      // No read could name it (and the hooks would fold the whole of it): not passed on.
      if (uri.length > MAX_URI_LENGTH) return false;
      let allowed = readable.get(uri);
      if (allowed === undefined) {
        try {
          allowed = check(info, uri);
        } catch (error) {
          allowed = false;
          this.deps.logger.warn({ upstream: target.upstream.name, tenantId: target.upstream.tenantId, reason: this.reasonOf(error) }, 'read contents of another URI not passed on: a hook failed');
        }
        readable.set(uri, allowed);
      }
      return allowed;
    });
    return kept.length === contents.length ? result : { ...result, contents: kept };
  }

  /**
   * A resource template's completions without the values that name only what the principal may not see. A completion
   * lists names (repositories, paths, customers) of an upstream's own choosing, and the template passed the policy as a
   * whole: without this an agent denied `repo://acme/**` learned every name under it by completing `repo://{org}/{name}`.
   * Each value is put into the template with the other arguments the agent gave (`expandKnown`; variables it did not
   * give are left out) and kept when the hooks' listing filter would list a resource at that URI. Fails closed: a
   * filter that throws leaves no values.
   */
  private visibleCompletions(live: LiveSession, upstreamId: string, template: string, params: Record<string, unknown>, result: Record<string, unknown>): Record<string, unknown> {
    const filter = this.deps.hooks?.filter;
    const completion = result['completion'];
    if (filter === undefined || !isObject(completion) || !Array.isArray(completion['values'])) return result;
    const config = this.deps.registry.forTenant(live.record.tenantId).byId.get(upstreamId);
    const argument = params['argument'];
    const name = isObject(argument) ? argument['name'] : undefined;
    const values = completion['values'].filter((value): value is string => typeof value === 'string');
    let kept: string[] = [];
    if (config !== undefined && typeof name === 'string') {
      const context = isObject(params['context']) && isObject(params['context']['arguments']) ? params['context']['arguments'] : {};
      const known: Record<string, string> = {};
      for (const [key, value] of Object.entries(context)) if (typeof value === 'string') known[key] = value;
      const items = values.map((value) => ({ uri: expandKnown(template, { ...known, [name]: value }) }));
      try {
        // A value making a URI no read could name is not passed on (nor folded by the hooks whole).
        const visible = new Set(filter(live.record, 'resource', config, items.filter((item) => item.uri.length <= MAX_URI_LENGTH), false));
        kept = values.filter((_value, index) => visible.has(items[index] as { uri: string }));
      } catch (error) {
        this.deps.logger.warn({ upstream: config.name, tenantId: config.tenantId, reason: this.reasonOf(error) }, 'completion values not passed on: the listing filter failed');
      }
    }
    if (kept.length === completion['values'].length) return result;
    const hidden = completion['values'].length - kept.length;
    const total = completion['total'];
    return { ...result, completion: { ...completion, values: kept, ...(typeof total === 'number' ? { total: Math.max(kept.length, total - hidden) } : {}) } };
  }

  private resourceTarget(live: LiveSession, upstreamId: string, uri: unknown): RequestInfo['target'] {
    const config = this.deps.registry.forTenant(live.record.tenantId).byId.get(upstreamId);
    return config && typeof uri === 'string' ? { upstream: config, kind: 'resource', name: uri } : undefined;
  }

  /**
   * A subscription the session record could not keep (MAX_SUBSCRIPTIONS_PER_SESSION) is refused before it reaches the
   * upstream: a subscription a renewed upstream session would not get again would end silently with the next restart.
   * Counted on the record as this replica last saw it, with the subscriptions the store could not record (`unrecorded`,
   * which its next write adds); `withSubscription` checks again when it is stored.
   */
  private async refuseSubscriptionPastBound(live: LiveSession, upstreamId: string, uri: string): Promise<void> {
    const stored = (await this.deps.sessions.get(live.record.id).catch(() => undefined)) ?? live.record;
    const record = withSubscriptions(stored, live.unrecorded) ?? stored;
    if (record.subscriptions?.[upstreamId]?.includes(uri) === true || subscriptionFits(record, uri)) return;
    throw new GatewayRequestError(
      JSON_RPC.INVALID_PARAMS,
      `A session may be subscribed to at most ${MAX_SUBSCRIPTIONS_PER_SESSION} resources, ${MAX_SUBSCRIBED_URI_CHARS} characters of URIs in all; unsubscribe from one first`,
      { limit: MAX_SUBSCRIPTIONS_PER_SESSION, maxUriChars: MAX_SUBSCRIBED_URI_CHARS },
    );
  }

  /**
   * Stores a change to what the agent set upstream (subscriptions, log level) in the session record, by compare-and-set,
   * for whichever replica starts a new upstream session later (`replay`). The subscriptions an earlier write failed to
   * record (`unrecorded`) go in with it, and leave `unrecorded` once the stored record holds them. A failure is logged,
   * not answered: the upstream took the request, and the agent's session works on; only a later renewal would miss it.
   * Returns whether the write was stored.
   */
  private async recordAgentState(live: LiveSession, edit: RecordEdit, traceId: string): Promise<boolean> {
    try {
      const unrecorded = new Map(live.unrecorded);
      const withUnrecorded: RecordEdit =
        unrecorded.size === 0
          ? edit
          : (stored) => {
              const edited = edit(stored);
              return withSubscriptions(edited ?? stored, unrecorded) ?? edited;
            };
      // This replica's copy takes the change at once (the log level it filters by, the subscriptions it replays).
      const { record } = await this.deps.sessions.change(live.record.id, withUnrecorded);
      if (record !== undefined) {
        live.record = record;
        // The stored record may bring a level set through another replica before its `agent-state` came here.
        this.tellOwnLevel(live);
        for (const [uri, upstreamId] of live.unrecorded) {
          if (record.subscriptions?.[upstreamId]?.includes(uri) === true) live.unrecorded.delete(uri);
        }
        this.deps.bus?.broadcast({ type: 'agent-state', sessionId: record.id });
      }
      return true;
    } catch (error) {
      // The upstream took it all the same: this replica's copy does, so it filters by the level (another replica's
      // copy, read from the store, goes without). A subscription the caller keeps in `unrecorded` as well: the copy is
      // replaced by the stored record with the next write or `agent-state`.
      const local = edit(live.record);
      if (local !== undefined) live.record = local;
      this.deps.logger.warn(
        { sessionIdPrefix: live.record.id.slice(0, 8), tenantId: live.record.tenantId, traceId, err: withoutUserinfo(error instanceof Error ? error.message : String(error)) },
        'subscription or log level not recorded: a new upstream session would not be told it',
      );
      return false;
    }
  }

  // ---------------------------------------------------------------- aggregation

  /**
   * `status.dropped` is set when an upstream dropped out of this page (failed or timed out). `cancel`: the request the
   * listing answers, whose cancellation by the agent cancels the page requests upstream (the listing then ends as
   * cancelled); none for a listing other requests wait on too (`learnRoutes`).
   */
  private async list(live: LiveSession, kind: ListKind, cursor: unknown, traceId: string, cancel: CancelSignal | undefined, status?: { dropped: boolean }, sink?: MessageSink): Promise<Record<string, unknown>> {
    const spec = LIST_METHODS[kind];
    const timeoutMs = this.deps.options.listTimeoutMs;
    const cacheMs = this.deps.options.listCacheMs ?? 0;
    // Pages fetched across a resources change may list what the upstream no longer has: they teach no routes.
    const routesGeneration = live.routesGeneration;
    const cancelled = cancel === undefined ? undefined : asAbortSignal(cancel);
    // One deadline for the whole of a page: getting the upstream session (a stdio or legacy SSE upstream reconnecting
    // takes up to its connect timeout) and the page. A slow upstream drops out of this answer; it never holds it. The
    // page request is this listing's own (a cached page is one that arrived whole), so its cancellation is too: the
    // agent's cancel reaches no other listing's, and the connect under way is kept (`untilDeadline`).
    const fetchPage = (target: PendingPage, withinMs: number) => {
      const signal = cancelled === undefined ? AbortSignal.timeout(withinMs) : AbortSignal.any([AbortSignal.timeout(withinMs), cancelled]);
      return this.onUpstream(
        live,
        target.upstreamId,
        traceId,
        async (session) => {
          const pages = live.upstreams.get(target.upstreamId)?.pages;
          const key = `${spec.method}\u0000${target.cursor}`;
          const cache = cacheMs > 0 && this.hearsChanges(live, session);
          const cached = cache ? pages?.get(key, cacheMs, Date.now()) : undefined;
          if (cached) return { page: cached, fromCache: true };
          const generation = pages?.generation ?? 0;
          // Frozen as it arrives: a cached page is shared by every later answer of the session and by the caches that
          // trust frozen items (the listing's JSON text, tool-pinning hashes).
          // A question the upstream asks while it lists goes on the listing's stream and ends with the page request
          // (`attach`); one several requests of the session may have made (a shared connection) ends by itself.
          const relay = sink === undefined ? undefined : this.serverRequestRelays.get(session);
          // The page request, once made (a transport may deliver a question before it hands the request back).
          const made: { request?: Promise<Record<string, unknown>> } = {};
          let relays: Cancellation | undefined;
          const endsWithPage = (): Cancellation => {
            if (relays !== undefined) return relays;
            relays = new Cancellation();
            if (made.request !== undefined) endWith(made.request, relays);
            return relays;
          };
          const onServerRequest =
            relay === undefined
              ? undefined
              : (received: JsonRpcRequest, upstreamSignal: AbortSignal, context?: { readonly shared?: boolean }) => relay(received, upstreamSignal, sink, context?.shared === true ? undefined : endsWithPage());
          const pageRequest = session.request(spec.method, target.cursor === '' ? undefined : { cursor: target.cursor }, { signal, timeoutMs: withinMs, ...(onServerRequest ? { onServerRequest } : {}) });
          made.request = pageRequest;
          if (relays !== undefined) endWith(pageRequest, relays);
          const page = deepFreeze(listPage(spec, await pageRequest));
          if (cache) pages?.set(key, page, generation, Date.now());
          return { page, fromCache: false };
        },
        signal,
      );
    };
    let targets: PendingPage[];
    let settled: PromiseSettledResult<Awaited<ReturnType<typeof fetchPage>>>[];
    if (cursor !== undefined) {
      const pages = decodeCursor(kind, cursor, live.record.cursorKey);
      // A cursor another replica gave may name an upstream joined there (another request's read may be the one that
      // adds it: the record is what decides).
      const missing = (page: PendingPage) => !Object.hasOwn(live.record.upstreams, page.upstreamId);
      if (pages?.some(missing)) await this.adoptJoined(live, true);
      if (!pages || pages.some(missing)) throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, 'Invalid cursor');
      targets = pages;
      settled = await Promise.allSettled(targets.map((target) => fetchPage(target, timeoutMs)));
    } else {
      // Upstreams the session lacks are joined (at most once per joinRetryMs) while the others' pages are fetched, and
      // their own pages fetched within what is left of the same listTimeoutMs.
      const startedAt = performance.now();
      const joining = this.joinMissing(live, traceId, timeoutMs);
      const present = this.upstreamIdsWith(live, spec.capability).map((upstreamId) => ({ upstreamId, cursor: '' }));
      const presentPages = Promise.allSettled(present.map((target) => fetchPage(target, timeoutMs)));
      await joining;
      const joined = this.upstreamIdsWith(live, spec.capability)
        .filter((upstreamId) => !present.some((target) => target.upstreamId === upstreamId))
        .map((upstreamId) => ({ upstreamId, cursor: '' }));
      const leftMs = Math.floor(timeoutMs - (performance.now() - startedAt));
      const late = leftMs > 0 ? joined : [];
      if (late.length < joined.length && status) status.dropped = true;
      if (late.length === 0) {
        targets = present;
        settled = await presentPages;
      } else {
        const [early, joinedPages] = await Promise.all([presentPages, Promise.allSettled(late.map((target) => fetchPage(target, leftMs)))]);
        // In registry order (by prefix), as every merged listing is.
        const order = this.upstreamIdsWith(live, spec.capability);
        const pairs = [...present, ...late].map((target, index) => ({ target, outcome: (index < present.length ? early[index] : joinedPages[index - present.length]) as (typeof early)[number] }));
        pairs.sort((a, b) => order.indexOf(a.target.upstreamId) - order.indexOf(b.target.upstreamId));
        targets = pairs.map((pair) => pair.target);
        settled = pairs.map((pair) => pair.outcome);
      }
    }
    // Cancelled: the agent gets no answer, and the upstreams' failing the cancelled pages is no failure of theirs.
    if (cancel?.aborted === true) throw cancel.reason instanceof Error ? cancel.reason : new DOMException('The listing was cancelled', 'AbortError');
    const items: unknown[] = [];
    const more: PendingPage[] = [];
    let failed: unknown[] | undefined;
    let recheck: UpstreamConfig[] | undefined;
    // Whether an upstream holding a URI's route lists in this very answer: a copy of another upstream is left out only
    // then. The holder dropping out of the listing (failed, too slow) must not take the URI out of it altogether, and a
    // cursor does not say which upstreams failed an earlier page of the walk (nor does anything per walk: a session may
    // walk twice at once, on several replicas). So a copy on a page after the holder's last is listed too: twice
    // across the walk's pages rather than never (re-reviews found a URI in no page of a walk, twice).
    const answered = new Set<string>();
    settled.forEach((outcome, index) => {
      if (outcome.status === 'fulfilled') answered.add((targets[index] as PendingPage).upstreamId);
    });
    const listsHere = (holder: string): boolean => answered.has(holder);
    // This answer's URIs and templates, each with the upstream whose item it lists (the first in registry order): a copy
    // is left out even when nothing is learned (a list change during the listing; found by review).
    const listedBy = new Map<string, string>();
    settled.forEach((outcome, index) => {
      const target = targets[index] as PendingPage;
      const config = this.deps.registry.forTenant(live.record.tenantId).byId.get(target.upstreamId);
      if (outcome.status === 'rejected') {
        // An upstream with resources but no templates (-32601 to resources/templates/list, as many servers answer) lists
        // none: no failure. Before, it was logged and rechecked on every first page, and every route walk counted
        // itself incomplete, so each read of a URI nobody lists walked every upstream's listings again (found by review).
        if (kind === 'resourceTemplates' && outcome.reason instanceof UpstreamRpcError && outcome.reason.code === JSON_RPC.METHOD_NOT_FOUND) return;
        if (status) status.dropped = true;
        // An upstream no longer configured has nothing more to list: its listing ends, as it would on a first page.
        if (!config) return;
        this.logUpstreamFailure(config, spec.method, outcome.reason, traceId);
        (failed ??= []).push(outcome.reason);
        // A cursor the upstream refused came from a page of its that no longer holds (it restarted, or its cursors
        // expire): the agent is told to list again from the start, which must not be served that page again, here or
        // on another replica (the agent's next listing may go to any of them).
        if (target.cursor !== '' && outcome.reason instanceof UpstreamRpcError && outcome.reason.code === JSON_RPC.INVALID_PARAMS) {
          live.upstreams.get(target.upstreamId)?.pages.clear();
          this.deps.bus?.broadcast({ type: 'lists-changed', sessionId: live.record.id, upstreamId: target.upstreamId });
        }
        if (cursor === undefined && status === undefined && !live.announcedBack.has(`${kind}\u0000${config.id}`)) (recheck ??= []).push(config);
        return;
      }
      if (!config) return;
      const { page, fromCache } = outcome.value;
      // Answering within the deadline again: a later drop-out may be rechecked and announced once more.
      if (cursor === undefined && !fromCache && live.announcedBack.size > 0) live.announcedBack.delete(`${kind}\u0000${config.id}`);
      // Anything this upstream's page makes the filter or the naming throw (an item nested deeper than the stack
      // allows, say) drops this upstream out of the answer, as a failed page does; the others' items stay.
      let kept: unknown[];
      try {
        kept = this.pageItems(live, kind, config, page, fromCache, traceId, live.routesGeneration === routesGeneration, listsHere, listedBy);
      } catch (error) {
        answered.delete(config.id);
        if (status) status.dropped = true;
        this.logUpstreamFailure(config, spec.method, error, traceId);
        return;
      }
      for (const item of kept) items.push(item);
      const next = page['nextCursor'];
      if (typeof next === 'string' && next.length > MAX_UPSTREAM_CURSOR_LENGTH) {
        // Not carried on (the gateway's own cursor would grow past what it takes back): that upstream's listing ends here.
        if (status) status.dropped = true;
        this.logUpstreamFailure(config, spec.method, new Error(`nextCursor longer than ${MAX_UPSTREAM_CURSOR_LENGTH} characters`), traceId);
      } else if (typeof next === 'string' && next.length > 0 && next === target.cursor) {
        // The cursor it was asked with, again: an agent paging on would be given the same page for ever, and a route
        // walk would ask it its full count of pages. That upstream's listing ends here (found by review).
        if (status) status.dropped = true;
        this.logUpstreamFailure(config, spec.method, new Error('nextCursor repeats the cursor the page was asked with'), traceId);
      } else if (typeof next === 'string' && next.length > 0) {
        const page = target.cursor === '' ? 2 : (target.page ?? 2) + 1;
        if (page <= MAX_UPSTREAM_PAGES) more.push({ upstreamId: config.id, cursor: next, page });
        else {
          // Its cursors may go round in a cycle longer than one page: the listing ends here, as above.
          if (status) status.dropped = true;
          this.logUpstreamFailure(config, spec.method, new Error(`more than ${MAX_UPSTREAM_PAGES} pages`), traceId);
        }
      }
    });
    // A first page leaves a failed upstream out (isolation; it is logged). A later page was promised the rest of each
    // upstream its cursor names: answering without a part would end that upstream's listing unannounced, so the agent
    // is told instead (the route walk, `status` given, takes what it gets and counts itself incomplete).
    if (failed !== undefined && cursor !== undefined && status === undefined) throw continuationFailure(failed);
    if (recheck !== undefined) this.recheckLeftOut(live, kind, recheck, traceId);
    return { [spec.field]: items, ...this.mergedCursor(live, kind, more, traceId, status) };
  }

  /**
   * Upstreams left out of an agent's first listing page (slower than the listing's timeout, or failing) are asked for
   * that page again in the background, within their call timeout; once one answers, its page is kept with the session's
   * cached pages (`GATEWAY_LIST_CACHE_MS`) and the agent is told the list changed, so the listing it makes on hearing
   * that has the upstream. Most clients list once and then wait for `list_changed`: without it an upstream that was slow
   * once stayed missing from their view for the rest of the session (one down at initialize is announced when it
   * joins). One recheck per session, list and upstream at a time, and one announcement until a listing has the upstream
   * answer within the deadline again: an upstream that is always slower than the deadline is announced once, not in a
   * loop. A dead upstream's recheck is cut short by its circuit breaker.
   */
  private recheckLeftOut(live: LiveSession, kind: ListKind, configs: readonly UpstreamConfig[], traceId: string): void {
    const spec = LIST_METHODS[kind];
    const cacheMs = this.deps.options.listCacheMs ?? 0;
    for (const config of configs) {
      const key = `${kind}\u0000${config.id}`;
      if (live.rechecking.has(key)) continue;
      live.rechecking.add(key);
      const deadline = AbortSignal.timeout(config.callTimeoutMs);
      void this.onUpstream(
        live,
        config.id,
        traceId,
        async (session) => {
          const pages = live.upstreams.get(config.id)?.pages;
          const generation = pages?.generation ?? 0;
          // Bounded by the upstream's own call timeout, not by a signal of the same length: a signal made first fires first,
          // and its abort is no timeout to the circuit breaker, so an upstream whose listing never answered never opened
          // its circuit (each listing waited for it again). The page requests of listings are bounded by the listing's
          // deadline, which says nothing of the upstream (a slow one is left out and rechecked here).
          const page = deepFreeze(listPage(spec, await session.request(spec.method, undefined, { timeoutMs: config.callTimeoutMs })));
          if (cacheMs > 0 && this.hearsChanges(live, session)) pages?.set(`${spec.method}\u0000`, page, generation, Date.now());
        },
        deadline,
      )
        .then(
          () => {
            const offered = this.capabilitiesOf(live.record)[spec.capability];
            if (this.live.get(live.record.id) !== live || live.announcedBack.has(key)) return;
            live.announcedBack.add(key);
            if (isObject(offered) && offered['listChanged'] === true) this.toStandalone(live, { jsonrpc: '2.0', method: `notifications/${spec.capability}/list_changed` });
          },
          () => undefined,
        )
        .finally(() => live.rechecking.delete(key));
    }
  }

  /**
   * The merged cursor of the upstreams with more to list. Each upstream's part is bounded, how many upstreams have one
   * is not: past what `decodeCursor` takes back, the largest parts go (those listings end here, as an over-long one
   * does), else every later page failed. Each part is measured once, so many upstreams cost one sort, not a loop that
   * encoded everything again per part dropped.
   */
  private mergedCursor(live: LiveSession, kind: ListKind, more: PendingPage[], traceId: string, status: { dropped: boolean } | undefined): { nextCursor?: string } {
    if (more.length === 0) return {};
    const nextCursor = encodeCursor(kind, more, live.record.cursorKey);
    if (nextCursor.length <= MAX_CURSOR_LENGTH) return { nextCursor };
    // Base64 of UTF-8 JSON: a part costs about 4/3 of the bytes of its upstream id and escaped cursor, and a few more.
    const cost = (page: PendingPage) => Math.ceil(((Buffer.byteLength(JSON.stringify(page.cursor)) + Buffer.byteLength(JSON.stringify(page.upstreamId)) + 4) * 4) / 3);
    const bySize = more.map((page) => ({ page, cost: cost(page) })).sort((a, b) => b.cost - a.cost);
    let total = nextCursor.length;
    const dropped = new Set<PendingPage>();
    for (const { page, cost: size } of bySize) {
      if (total <= MAX_CURSOR_LENGTH) break;
      dropped.add(page);
      total -= size;
    }
    const kept = more.filter((page) => !dropped.has(page));
    if (status) status.dropped = true;
    for (const page of dropped) {
      const config = this.deps.registry.forTenant(live.record.tenantId).byId.get(page.upstreamId);
      if (config) this.logUpstreamFailure(config, LIST_METHODS[kind].method, new Error('nextCursor does not fit in the merged cursor beside the other upstreams\''), traceId);
    }
    const fitted = kept.length > 0 ? encodeCursor(kind, kept, live.record.cursorKey) : undefined;
    // The estimate errs by a character or two a part; should the cursor still be too long, one more part goes.
    if (fitted !== undefined && fitted.length > MAX_CURSOR_LENGTH) return this.mergedCursor(live, kind, kept.slice(0, -1), traceId, status);
    return fitted === undefined ? {} : { nextCursor: fitted };
  }

  /**
   * A listed item as the agent is shown it: the upstream's configured secrets masked in its texts (`maskListedItem`),
   * once per item of a cached page (frozen, shared by the session's listings) and configuration.
   */
  private shownItem(config: UpstreamConfig, item: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> {
    const mask = secretMaskOf(config);
    if (mask.longest === 0) return item;
    let shown = this.maskedItems.get(mask);
    if (shown === undefined) this.maskedItems.set(mask, (shown = new WeakMap()));
    let masked = shown.get(item);
    if (masked === undefined) shown.set(item, (masked = maskListedItem(mask, item)));
    return masked;
  }


  /**
   * The items whose key the gateway could list: a tool's name within MCP's 128 characters (its prefixed name could not
   * be longer), a prompt's within the gateway's own bound on exposed prompt names (MCP sets none; 128 was applied
   * here too, and a longer prompt was served by `prompts/get` but never listed; found by review), a resource's URI or
   * a template within what a read may name (`MAX_URI_LENGTH`). The others are skipped with a warning naming their start.
   */
  private withinNameBounds(config: UpstreamConfig, kind: ListKind, list: readonly Record<string, unknown>[], traceId: string): readonly Record<string, unknown>[] {
    const key = LIST_KEY[kind];
    const bound = kind === 'tools' ? MAX_NAME_LENGTH : kind === 'prompts' ? MAX_PROMPT_NAME_LENGTH : MAX_URI_LENGTH;
    const oversized = (item: Record<string, unknown>) => {
      const value = item[key];
      return typeof value === 'string' && value.length > bound;
    };
    if (!list.some(oversized)) return list;
    return list.filter((item) => {
      if (!oversized(item)) return true;
      this.warnSkipped(config, kind, { name: String(item[key]).slice(0, 128) }, traceId, `${key} longer than ${bound} characters; skipped`);
      return false;
    });
  }

  /** One upstream's page of a listing as the agent sees it: filtered by the hooks, named, and its URI routes learned. */
  private pageItems(
    live: LiveSession,
    kind: ListKind,
    config: UpstreamConfig,
    page: Record<string, unknown>,
    fromCache: boolean,
    traceId: string,
    learn: boolean,
    listsHere: (upstreamId: string) => boolean,
    listedBy: Map<string, string>,
  ): unknown[] {
    /** Whether `key` is listed already in this answer as another upstream's; else it is this one's from now on. */
    const listedElsewhere = (key: string): boolean => {
      const first = listedBy.get(key);
      if (first !== undefined) return first !== config.id;
      listedBy.set(key, config.id);
      return false;
    };
    const spec = LIST_METHODS[kind];
    // An array: `listPage` checked the page as it arrived.
    const raw = page[spec.field] as readonly unknown[];
    // Entries that are no objects, and items naming again what an earlier one of the page named, are left out (the
    // first kept): the gateway is the agent's one server, whose names are to be unique (see `ExposedItems.distinct`).
    const distinct = this.exposed.distinct(raw, LIST_KEY[kind], listable[kind]);
    if (distinct.notObjects > 0) this.warnSkipped(config, kind, { name: '' }, traceId, 'upstream listing holds entries that are not objects; skipped');
    for (const name of distinct.repeated) this.warnSkipped(config, kind, { name }, traceId, 'upstream lists this name more than once in a page; the first kept, the others skipped');
    // Names and URIs the gateway could never list are dropped before the hooks, which fold and normalise every name
    // they judge (one 7-million-character URI held the replica for seconds on every listing; found by a review).
    let list = this.withinNameBounds(config, kind, distinct.items, traceId);
    // The hooks see items as the upstream listed them: tool pinning must judge a definition that changed into one
    // breaking MCP's schema (checked after them) as changed, or its calls would still be let through (found by re-review).
    const filter = this.deps.hooks?.filter;
    if (filter) list = filter(live.record, LIST_TARGET[kind], config, list, fromCache);
    list = this.wellFormed(config, kind, list, traceId).map((item) => this.shownItem(config, item));
    const items: unknown[] = [];
    // Tools of an upstream whose tasks the gateway does not run for this session are listed as plain tools, and those
    // that can only run as tasks not at all.
    const plainTools = kind === 'tools' && !this.takesToolTasks(live.record, config.id);
    for (const item of list) {
      if (kind === 'tools' || kind === 'prompts') {
        const exposed = this.exposed.named(config.toolPrefix, item, kind === 'tools' ? 'tool' : 'prompt');
        if (exposed === null) {
          this.warnSkipped(config, kind, item, traceId);
          continue;
        }
        const listed = plainTools ? this.withoutTaskSupport(exposed) : exposed;
        if (listed !== null) items.push(listed);
      } else if (kind === 'resources') {
        const uri = item['uri'];
        // A URI two upstreams list goes to the one first in the listings' order (by prefix), whichever listing arrived
        // first: every session routes it alike. Bounded per session (an upstream whose resources keep changing without
        // saying so would grow it with every listing): past the bound the oldest go, learned again by the next walk.
        if (learn && typeof uri === 'string') live.resourceRoutes.learn(uri, config.id, (held) => this.listsBefore(live, config, held));
        // A read waiting on this walk for its URI gets it even when the bound let the route go again before the end.
        if (learn && typeof uri === 'string' && live.sought.size > 0) {
          const sought = live.sought.get(uri);
          if (sought !== undefined && (sought.upstreamId === undefined || this.listsBefore(live, config, sought.upstreamId))) sought.upstreamId = config.id;
        }
        // A URI another upstream's listing already holds (the one reads of it go to) is listed once, as that one's: the
        // gateway is the agent's one server, and this upstream's copy could never be read, subscribed to or completed.
        // Before, two instances of a server listed each of their URIs twice. The holder is known from this replica's route
        // table; the copy is listed all the same when the holder's part is not in this answer.
        if (typeof uri === 'string' && (heldElsewhere(live.resourceRoutes.get(uri), config.id, listsHere) || listedElsewhere(uri))) continue;
        items.push(this.exposed.asIs(item));
      } else {
        const template = item['uriTemplate'];
        // A template already routed to this upstream (every listing of a session lists it again) builds nothing.
        if (learn && typeof template === 'string' && live.templateRoutes.get(template)?.upstreamId !== config.id) {
          const route: TemplateRoute = { upstreamId: config.id, prefix: config.toolPrefix, matches: uriTemplateMatcher(template), loosely: anyRunMatcher(template), literalLength: template.replace(TEMPLATE_EXPRESSION, '').length };
          live.templateRoutes.learn(template, route, (held) => this.listsBefore(live, config, held.upstreamId));
        }
        // As for a URI: a template another upstream holds is listed once, as that one's.
        if (typeof template === 'string' && (heldElsewhere(live.templateRoutes.get(template)?.upstreamId, config.id, listsHere) || listedElsewhere(`\u0000${template}`))) continue;
        items.push(this.exposed.asIs(item));
      }
    }
    return items;
  }

  /**
   * A listed tool as one the agent may not call as a task: `execution.taskSupport` left out (absent means forbidden).
   * Else a tool of an upstream the gateway sends no task augmentation to (not Streamable HTTP, no task-augmented calls
   * declared, or an agent not offered tasks) was listed as task-capable, and a task call of it got a plain result.
   * Null for a tool whose `taskSupport` is `required`: the upstream refuses (-32601) every call of it without a task,
   * so such a session could call it never. Made once per listed tool and frozen like it (the listing's serialiser
   * keeps the text of frozen items).
   */
  private withoutTaskSupport(tool: Record<string, unknown>): Record<string, unknown> | null {
    const execution = tool['execution'];
    if (!isObject(execution) || execution['taskSupport'] === undefined || execution['taskSupport'] === 'forbidden') return tool;
    if (execution['taskSupport'] === 'required') return null;
    let plain = this.plainTools.get(tool);
    if (plain === undefined) {
      const { taskSupport: _dropped, ...rest } = execution;
      const { execution: _execution, ...others } = tool;
      plain = deepFreeze(Object.keys(rest).length > 0 ? { ...others, execution: rest } : others);
      this.plainTools.set(tool, plain);
    }
    return plain;
  }

  /**
   * An upstream item left out of the listings (its name, prefixed, breaks MCP's naming rules, an earlier item of its
   * page had its name, its URI is too long) is logged once per upstream configuration, name and reason (bounded), not
   * on every listing of every session, which an upstream with many such items would flood.
   */
  private warnSkipped(config: UpstreamConfig, kind: ListKind, item: Record<string, unknown>, traceId: string, why = 'upstream item name breaks the naming rules once prefixed; skipped'): void {
    const name = typeof item['name'] === 'string' ? item['name'].slice(0, 128) : '';
    const key = `${config.id}@${config.version} ${kind} ${name}\u0000${why}`;
    if (this.skippedWarned.has(key)) return;
    if (this.skippedWarned.size >= MAX_SKIPPED_WARNED) this.skippedWarned.clear();
    this.skippedWarned.add(key);
    this.deps.logger.warn({ upstream: config.name, upstreamId: config.id, kind, name, traceId }, why);
  }

  /** The items of a page as MCP's schema lets them be listed (`checkedItem`): mended, or left out, and logged either way. */
  private wellFormed(config: UpstreamConfig, kind: ListKind, list: readonly Record<string, unknown>[], traceId: string): readonly Record<string, unknown>[] {
    let kept: Record<string, unknown>[] | undefined;
    for (let index = 0; index < list.length; index++) {
      const item = list[index] as Record<string, unknown>;
      const checked = checkedItem(kind, item);
      if (checked.why !== undefined) this.warnSkipped(config, kind, item, traceId, checked.why);
      else if (checked.leftOut.length > 0) {
        this.warnSkipped(config, kind, item, traceId, `upstream item breaks MCP's schema for its kind at ${checked.leftOut.join(', ')}; listed without it`);
      }
      if (checked.item === item) {
        kept?.push(item);
        continue;
      }
      kept ??= list.slice(0, index);
      if (checked.item !== undefined) kept.push(checked.item as Record<string, unknown>);
    }
    return kept ?? list;
  }

  /** Whether `config` comes before the upstream `other` in the listings' order (by prefix), or `other` is gone. */
  private listsBefore(live: LiveSession, config: UpstreamConfig, other: string): boolean {
    if (other === config.id) return false;
    const held = this.deps.registry.forTenant(live.record.tenantId).byId.get(other);
    return held === undefined || config.toolPrefix < held.toolPrefix;
  }

  /**
   * The upstream and original name behind an exposed name. `orJoined`: undefined, instead of an error, when the name is
   * of a configured upstream the session does not have (`joinedTarget` then looks whether another replica joined it).
   */
  private byExposedName(live: LiveSession, exposed: unknown, kind: 'tool' | 'prompt', orJoined: true): ExposedTarget | undefined;
  private byExposedName(live: LiveSession, exposed: unknown, kind: 'tool' | 'prompt'): ExposedTarget;
  private byExposedName(live: LiveSession, exposed: unknown, kind: 'tool' | 'prompt', orJoined = false): ExposedTarget | undefined {
    const label = kind === 'tool' ? 'Unknown tool' : 'Unknown prompt';
    if (typeof exposed !== 'string') throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, `${kind} name required`);
    // Only a name the listings could have shown (a tool's: 1–128 characters of [A-Za-z0-9_.-]; a prompt's: 1–512 without
    // control or invisible formatting characters): anything else names nothing, and must not travel on into the policy
    // engine and the other hooks at whatever size the agent chose.
    const valid = kind === 'tool' ? isValidExposedName(exposed) : isValidExposedPromptName(exposed);
    const parts = valid ? splitExposedName(exposed, this.deps.options.separator) : undefined;
    const config = parts ? this.deps.registry.forTenant(live.record.tenantId).byPrefix.get(parts.prefix) : undefined;
    if (!parts || !config || !(config.id in live.record.upstreams)) {
      if (orJoined && parts && config) return undefined;
      throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, `${label}: ${exposed.slice(0, 128)}`);
    }
    return { upstreamId: config.id, name: parts.name, config };
  }

  /**
   * `byExposedName` for a name of a configured upstream the session does not have: once upstreams another replica
   * joined to the session are known here, else once that upstream (down at initialize, or configured since) is joined
   * as a listing joins it (`joinMissing`, within the listing's deadline and as often as `joinRetryMs` lets). An agent
   * may call a tool it knows without listing first; it was told "Unknown tool" for a tool that is there.
   */
  private async joinedTarget(live: LiveSession, exposed: unknown, kind: 'tool' | 'prompt', traceId: string): Promise<ExposedTarget> {
    await this.adoptJoined(live);
    if (this.byExposedName(live, exposed, kind, true) === undefined) {
      // Only the upstream the name is of is joined and waited for (another one slow to connect holds no call).
      const parts = splitExposedName(exposed as string, this.deps.options.separator);
      const config = parts ? this.deps.registry.forTenant(live.record.tenantId).byPrefix.get(parts.prefix) : undefined;
      if (config !== undefined) await this.joinMissing(live, traceId, this.deps.options.listTimeoutMs, config.id);
    }
    return this.byExposedName(live, exposed, kind);
  }

  private async byUri(live: LiveSession, uri: unknown, traceId: string): Promise<string> {
    if (typeof uri !== 'string') throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, 'uri required');
    if (uri.length > MAX_URI_LENGTH) throw new GatewayRequestError(JSON_RPC.INVALID_PARAMS, `uri longer than ${MAX_URI_LENGTH} characters`);
    const unnormalised = unnormalisedUri(uri);
    // A route to an upstream no longer configured (replaced by another that lists the same URIs) is dropped with the
    // rest of that upstream's, so the next walk learns where they are now.
    const current = (upstreamId: string | undefined): string | undefined => {
      if (upstreamId === undefined || this.deps.registry.forTenant(live.record.tenantId).byId.has(upstreamId)) return upstreamId;
      this.resourcesChanged(live, upstreamId);
      return undefined;
    };
    const listed = (): string | undefined => current(live.resourceRoutes.get(uri));
    if (unnormalised) {
      // Policy matches the URI as written; an upstream that resolves `..`, `//`, `\` or an encoded `/` or `.` would read
      // another resource than the one policy decided on (`file:///srv/public/../secret`, `file:///srv/public/..\secret`).
      // Such a URI is read only exactly as an upstream lists it (`postgres://user@host:5432/db/t/schema`, an object key
      // with `//`, a default port written out), from that upstream, never through a template: that upstream named the
      // resource so, and policy judged that same text in the listing. Before, these were listed and could never be read
      // (found by review), and then only where this replica had learned the route (found by re-review).
      let upstreamId = listed();
      if (upstreamId === undefined) {
        const sought = await this.soughtByWalk(live, uri, traceId);
        upstreamId = listed() ?? current(sought);
      }
      if (upstreamId !== undefined) return upstreamId;
      throw new GatewayRequestError(
        JSON_RPC.INVALID_PARAMS,
        'uri must be in normal form: no dot segments, empty segments, backslashes, control characters or surrounding spaces, no encoded "/" or encoded letters, digits or "-._~", no query or fragment on a file: URI, and scheme and host as a URL parser writes them',
      );
    }
    const templated = (): string | undefined => {
      // A template's own text (completion/complete names one) goes to the upstream that listed it, before any other
      // template that its text happens to match.
      const own = live.templateRoutes.get(uri);
      if (own !== undefined) return current(own.upstreamId);
      // A template that can expand to the URI first; only when none can, one written loosely (`file:///{path}` for a
      // nested path, which a simple expression cannot hold, as some servers write them).
      let chosen: TemplateRoute | undefined;
      for (const route of live.templateRoutes.values()) if ((chosen === undefined || decidesOver(route, chosen)) && route.matches(uri)) chosen = route;
      if (chosen === undefined) for (const route of live.templateRoutes.values()) if ((chosen === undefined || decidesOver(route, chosen)) && route.loosely(uri)) chosen = route;
      return chosen === undefined ? undefined : current(chosen.upstreamId);
    };
    // A resource an upstream lists goes to that upstream, before any template that would also match it (`file:///{path}`
    // of another upstream): a URI no listing seen here names yet has the routes learned first (at most one walk a second
    // per session), then the templates decide.
    let upstreamId = listed();
    if (upstreamId === undefined) {
      // A template that matches decides without a walk when one ended within the last second, complete or not (an
      // upstream without resources/templates/list leaves every walk incomplete: each templated read walked again).
      const walked = live.routesWalkedAt;
      const template = walked !== undefined && performance.now() - walked < ROUTE_RELEARN_MS ? templated() : undefined;
      if (template !== undefined) upstreamId = template;
      else {
        const sought = await this.soughtByWalk(live, uri, traceId);
        upstreamId = listed() ?? current(sought) ?? templated();
      }
    }
    if (upstreamId === undefined) throw new GatewayRequestError(RESOURCE_NOT_FOUND, `Resource not found: ${uri.slice(0, 256)}`);
    return upstreamId;
  }

  /**
   * Walks the session's resource listings (`learnRoutes`) for `uri`. Returns the upstream the walk found listing it,
   * which the session's route bound may have let go of already (else it is among the routes, `resourceRoutes`).
   */
  private async soughtByWalk(live: LiveSession, uri: string, traceId: string): Promise<string | undefined> {
    const sought = live.sought.get(uri) ?? { waiting: 0, upstreamId: undefined };
    sought.waiting += 1;
    live.sought.set(uri, sought);
    try {
      await this.learnRoutes(live, traceId);
    } finally {
      sought.waiting -= 1;
      if (sought.waiting === 0 && live.sought.get(uri) === sought) live.sought.delete(uri);
    }
    return sought.upstreamId;
  }

  /**
   * The upstream that listed `template` as a resource template (learning the routes first if none has), or undefined.
   * A template is not a URI: `file:///logs{?level}` is a valid one that the URI checks of `byUri` refuse (a query on a
   * file: URI), and it names no resource to read, so only its exact text is looked up here.
   */
  private async byListedTemplate(live: LiveSession, template: unknown, traceId: string): Promise<string | undefined> {
    if (typeof template !== 'string' || template.length > MAX_URI_LENGTH || !template.includes('{')) return undefined;
    const configured = (upstreamId: string | undefined) =>
      upstreamId !== undefined && this.deps.registry.forTenant(live.record.tenantId).byId.has(upstreamId) ? upstreamId : undefined;
    const known = configured(live.templateRoutes.get(template)?.upstreamId);
    if (known !== undefined) return known;
    await this.learnRoutes(live, traceId);
    return configured(live.templateRoutes.get(template)?.upstreamId);
  }

  /**
   * Walks the session's resource and template listings to learn which upstream serves which URI. One walk at a time
   * per session (requests that arrive meanwhile wait for it), and none again within ROUTE_RELEARN_MS of the last one,
   * complete or not: an agent reading URIs nobody lists would otherwise have every upstream list everything (up to
   * MAX_UPSTREAM_PAGES pages of each) for each read. Before, only a complete walk (every upstream answered) counted, so
   * while one upstream's listing failed every read walked all the others again (found by re-review). After a change
   * an upstream announced, the next unknown URI walks at once (a walk started before the change is not joined).
   */
  private learnRoutes(live: LiveSession, traceId: string): Promise<void> {
    const generation = live.routesGeneration;
    const running = live.learningRoutes;
    if (running?.generation === generation) return running.walk;
    if (running === undefined && live.routesWalkedAt !== undefined && performance.now() - live.routesWalkedAt < ROUTE_RELEARN_MS) {
      return Promise.resolve();
    }
    const status = { dropped: false };
    const walk = (async () => {
      await this.learnAll(live, 'resources', traceId, status);
      await this.learnAll(live, 'resourceTemplates', traceId, status);
    })();
    const entry = { generation, walk };
    live.learningRoutes = entry;
    const settle = () => {
      if (live.learningRoutes === entry) live.learningRoutes = undefined;
      if (live.routesGeneration === generation) live.routesWalkedAt = performance.now();
    };
    walk.then(settle, settle);
    return walk;
  }

  /**
   * An upstream of the session said its resources changed: an unknown URI may now be listed, and the URIs and templates
   * routed to that upstream may have gone (another upstream that lists one of them takes it over at the next walk).
   * Without `upstreamId`, every route goes: what the principal may see changed (routes are learned from what the
   * policy lets it see, so a URI two upstreams list may now be another's to serve).
   */
  private resourcesChanged(live: LiveSession, upstreamId?: string): void {
    live.routesGeneration += 1;
    live.routesWalkedAt = undefined;
    live.resourceRoutes.deleteWhere((owner) => upstreamId === undefined || owner === upstreamId);
    live.templateRoutes.deleteWhere((route) => upstreamId === undefined || route.upstreamId === upstreamId);
  }

  /**
   * One listing walked to its end, as far as an agent may page it: MAX_UPSTREAM_PAGES of each upstream (the merged
   * cursor refuses more). Before, the walk stopped at 50 merged pages, and a resource an agent was shown past them could
   * not be read, subscribed to or completed on any replica that had not served that page itself (found by review).
   */
  private async learnAll(live: LiveSession, kind: ListKind, traceId: string, status: { dropped: boolean }): Promise<void> {
    let cursor: unknown;
    const maxPages = MAX_UPSTREAM_PAGES * Math.max(1, this.deps.registry.forTenant(live.record.tenantId).byId.size);
    for (let pages = 0; pages < maxPages; pages++) {
      let page: Record<string, unknown>;
      try {
        // No request's cancellation: the walk is shared by every request waiting on it.
        page = await this.list(live, kind, cursor, traceId, undefined, status);
      } catch (error) {
        // A page that fails as a whole (its cursor refused) leaves the walk incomplete, not the read that started it
        // failed: the routes learned so far and the templates still decide.
        status.dropped = true;
        this.deps.logger.warn({ traceId, kind, err: error instanceof Error ? error.message : String(error) }, 'resource route walk ended early');
        return;
      }
      cursor = page['nextCursor'];
      if (typeof cursor !== 'string') return;
    }
  }

  /**
   * Whether the session serves `area`: initialize advertised it, or an upstream of the session has it now (one that
   * joined later serves agents that ask without looking at the capabilities).
   */
  private supports(live: LiveSession, area: string): boolean {
    return isObject(this.capabilitiesOf(live.record)[area]) || this.upstreamIdsWith(live, area).length > 0;
  }

  /**
   * `supports`, once the upstreams another replica joined are adopted here and those the session lacks are tried (as a
   * listing would, at most once per joinRetryMs): an upstream configured after initialize may be the one that has it.
   */
  private async supportsOnceJoined(live: LiveSession, area: string, traceId: string): Promise<boolean> {
    await this.adoptJoined(live);
    await this.joinMissing(live, traceId, this.deps.options.listTimeoutMs);
    return this.supports(live, area);
  }

  private upstreamIdsWith(live: LiveSession, capability: string): string[] {
    // Registry order (sorted by prefix) keeps merged listings deterministic.
    return this.deps.registry
      .forTenant(live.record.tenantId)
      .list.filter((config) => {
        const state = live.record.upstreams[config.id];
        return state !== undefined && (state.capabilities === undefined || isObject(state.capabilities[capability]));
      })
      .map((config) => config.id);
  }

  // ---------------------------------------------------------------- upstreams joining a session later

  /**
   * The tenant's upstreams the session does not have (down at its initialize, or configured since) that this replica
   * has not tried for it within `joinRetryMs`, nor is trying now.
   */
  private dueToJoin(live: LiveSession, now: number): UpstreamConfig[] {
    const retryMs = this.deps.options.joinRetryMs ?? JOIN_RETRY_MS;
    const due: UpstreamConfig[] = [];
    for (const config of this.deps.registry.forTenant(live.record.tenantId).list) {
      // A join of another version (one that hangs, under the configuration an admin just repaired) is no join of this
      // one: this one goes beside it (found by re-review: it waited for the doomed join, then for the next sweep).
      if (Object.hasOwn(live.record.upstreams, config.id) || live.joining.get(config.id)?.version === config.version) continue;
      // Not for another version of it: an admin who repaired a failing upstream (another URL, credentials) has it joined
      // at the next listing or reload, not up to joinRetryMs later (found by review: the agent, told its lists changed,
      // listed without it).
      const tried = live.joinTriedAt.get(config.id);
      if (tried !== undefined && tried.version === config.version && now - tried.at < retryMs) continue;
      // A join of this upstream (this version of it) failed on this replica within joinRetryMs, for any session: not
      // tried again for each one (an upstream answering 401 never opens its circuit breaker).
      const failed = this.joinFailed.get(config.id);
      if (failed !== undefined && failed.version === config.version && now - failed.at < retryMs) continue;
      due.push(config);
    }
    return due;
  }

  /**
   * Joins the upstreams due (`dueToJoin`) to the session, all at once, and waits for them (and joins already under way)
   * at most `waitMs` (0: until they end); `only`: just that upstream. Each join tells the agent its lists changed
   * (`joinOne`). Nothing is read or opened when none is due, which is every listing of a session that has all its
   * tenant's upstreams.
   */
  private async joinMissing(live: LiveSession, traceId: string, waitMs: number, only?: string): Promise<void> {
    const dueNow = () => this.dueToJoin(live, Date.now()).filter((config) => only === undefined || config.id === only);
    let due = dueNow();
    if (due.length > 0) {
      // Another replica may have joined them already: then they are resumed here, not opened again.
      await this.adoptJoined(live);
      due = dueNow();
    }
    // Joins already under way (one still connecting when initialize answered, one a listing before started) are waited
    // for too, as a listing waits for an upstream session that reconnects.
    const current = this.deps.registry.forTenant(live.record.tenantId).byId;
    const underway =
      waitMs > 0
        ? [...live.joining].filter(([upstreamId, join]) => (only === undefined || upstreamId === only) && current.get(upstreamId)?.version === join.version).map(([, join]) => join.settled)
        : [];
    if ((due.length === 0 && underway.length === 0) || this.live.get(live.record.id) !== live) return;
    const joins = Promise.allSettled(due.map((config) => this.joinOne(live, config, traceId)));
    if (waitMs > 0) await untilDeadline(Promise.all([joins, ...underway]), AbortSignal.timeout(waitMs)).catch(() => undefined);
    else await joins;
  }

  /**
   * Opens a session of `config` for the agent's session and stores it in the session's record (compare-and-set: when
   * another replica stored one first, this one is ended and theirs is used). The new upstream session is told the
   * agent's log level, and the agent that its lists changed: each list the upstream has and initialize advertised with
   * `listChanged`, also when a listing waited for the join (the agent's other lists changed too). A failure is logged
   * once per upstream and `joinRetryMs` on this replica; the next try waits that long.
   */
  private joinOne(
    live: LiveSession,
    config: UpstreamConfig,
    traceId: string,
    /** A connect already under way (initialize stopped waiting for it). */
    connecting?: Promise<UpstreamSession>,
  ): Promise<void> {
    live.joinTriedAt.set(config.id, { at: Date.now(), version: config.version });
    const sessionId = live.record.id;
    const joining = (async () => {
      if (this.closing) {
        // A connect initialize handed over still ends in a session: closed once it does, or nothing would close it.
        void connecting?.then((session) => session.close()).catch(() => undefined);
        throw new UpstreamUnavailableError('closed', 'the gateway is shutting down');
      }
      const session = await (connecting ?? this.deps.connector.connect(config, identityOf(live.record)));
      // Removed or reconfigured while connecting: not joined under a configuration that is gone.
      if (this.closing || this.deps.registry.forTenant(live.record.tenantId).byId.get(config.id)?.version !== config.version) {
        void session.close().catch(() => undefined);
        throw new UpstreamUnavailableError('closed', 'the upstream was reconfigured or the gateway is shutting down');
      }
      const state = { ...session.state(), capabilities: { ...session.info.capabilities }, joined: true as const };
      let change: RecordChange;
      try {
        change = await this.deps.sessions.change(sessionId, (stored) =>
          Object.hasOwn(stored.upstreams, config.id) ? undefined : { ...stored, upstreams: { ...stored.upstreams, [config.id]: state } },
        );
      } catch (error) {
        void session.close().catch(() => undefined);
        throw error;
      }
      const current = this.live.get(sessionId) === live && !this.ended.has(sessionId) && !this.closing;
      if (!change.changed || !current) {
        // The session ended or left this replica meanwhile, or another replica joined the upstream first (its session
        // is resumed here on first use). One stored here but no longer held is taken out of the record again, so no
        // replica resumes a closed session (nor leaves it open: a DELETE elsewhere may have read the record already).
        void session.close().catch(() => undefined);
        if (change.changed) {
          const ours = state.sessionId;
          void this.deps.sessions
            .change(sessionId, (stored) => {
              if (stored.upstreams[config.id]?.sessionId !== ours) return undefined;
              const { [config.id]: _dropped, ...rest } = stored.upstreams;
              return { ...stored, upstreams: rest };
            })
            .catch(() => undefined);
        } else if (current && change.record !== undefined) this.adoptFrom(live, change.record);
        return;
      }
      this.adoptFrom(live, change.record as SessionRecord);
      live.upstreams.set(config.id, { config, session: Promise.resolve(this.attach(live, config, session, true)), current: session, pages: new PageCache(this.pageStore, live.record.tenantId) });
      // A reload while the record was written retired what no longer fits from the session before this was attached:
      // held to the registry again now, so an upstream disabled meanwhile does not stay with its process running.
      this.retireDepartedOf(live, this.deps.registry.forTenant(live.record.tenantId).byId);
      if (live.upstreams.get(config.id)?.current !== session) return;
      this.deps.logger.info({ upstream: config.name, upstreamId: config.id, tenantId: config.tenantId, sessionIdPrefix: sessionId.slice(0, 8), traceId }, 'upstream joined the session');
      await this.replay(live, config, session, change.record, traceId);
      this.announceLists(live, session.info.capabilities);
    })();
    const settled = joining.then(
      () => void this.joinFailed.delete(config.id),
      (error: unknown) => {
        const previous = this.joinFailed.get(config.id);
        // Not over a newer version's: a join of an older one (it hung) may fail after the repaired one's did.
        if (previous === undefined || previous.version <= config.version) this.joinFailed.set(config.id, { at: Date.now(), version: config.version });
        // Once per upstream and joinRetryMs on this replica, not once per session.
        if (previous === undefined || Date.now() - previous.at >= (this.deps.options.joinRetryMs ?? JOIN_RETRY_MS)) this.logUpstreamFailure(config, 'join', error, traceId);
      },
    );
    live.joining.set(config.id, { settled, version: config.version });
    void settled.finally(() => {
      if (live.joining.get(config.id)?.settled === settled) live.joining.delete(config.id);
    });
    return joining;
  }

  /**
   * Tells the agent its lists changed: `notifications/<area>/list_changed` for each of tools, prompts and resources
   * that initialize advertised with `listChanged` (and, given `capabilities`, that those have).
   */
  private announceLists(live: LiveSession, capabilities?: Readonly<Record<string, unknown>>): void {
    const advertised = this.capabilitiesOf(live.record);
    for (const area of LIST_AREAS) {
      const offered = advertised[area];
      if ((capabilities === undefined || isObject(capabilities[area])) && isObject(offered) && offered['listChanged'] === true) {
        this.toStandalone(live, { jsonrpc: '2.0', method: `notifications/${area}/list_changed` });
      }
    }
  }

  /**
   * What the tenant's principals may see changed (its policy in force, its upstreams): every session of the tenant
   * whose standalone stream this replica holds is told its lists changed (`announceLists`). Each replica tells its own.
   * Every session of the tenant here learns its resource routes again (from what it may now see) when it next needs one.
   */
  listsChangedFor(tenantId: string): void {
    for (const live of this.live.values()) {
      if (live.record.tenantId !== tenantId) continue;
      this.resourcesChanged(live);
      if (live.standalone !== undefined) this.announceLists(live);
    }
  }

  /**
   * The tenant's upstreams changed: on this replica, every session of the tenant lets go at once of its upstream
   * sessions that no longer fit the registry: one whose upstream left the tenant (disabled, deleted, refused), or now
   * connects elsewhere (another URL, other credentials, another command), is retired as a request would retire it (the
   * process stopped, the stream closed), and a next use opens a new one. Before, both were let go only when a request
   * next used them (never, for an upstream that was gone), so a disabled upstream kept talking to the agent (log
   * messages, sampling and elicitation requests) for as long as the session lasted, and an edited one kept its old host
   * and credentials meanwhile.
   */
  retireDeparted(tenantId: string): void {
    const upstreams = this.deps.registry.forTenant(tenantId).byId;
    for (const live of this.live.values()) {
      if (live.record.tenantId === tenantId) this.retireDepartedOf(live, upstreams);
    }
    // What the connector keeps for upstreams that left or start another way now (a stdio server's processes, which would
    // otherwise run on until idle with the tenant's credentials, or a rotated credential, in their environment).
    this.deps.connector.departed?.(tenantId, (upstreamId) => upstreams.get(upstreamId));
  }

  /** `retireDeparted` for one session: its upstream sessions held to the tenant's upstreams as `upstreams` has them. */
  private retireDepartedOf(live: LiveSession, upstreams: ReadonlyMap<string, UpstreamConfig>): void {
    for (const [upstreamId, entry] of [...live.upstreams]) {
      const config = upstreams.get(upstreamId);
      if (config !== undefined && sameEdit(config, entry.config)) continue;
      if (config !== undefined && sameConnection(entry.config, config)) {
        // Edited where it does not connect (a name, a timeout): the session stays, under the new configuration.
        entry.pages.clear();
        live.upstreams.set(upstreamId, { ...entry, config });
        continue;
      }
      entry.pages.clear();
      live.upstreams.delete(upstreamId);
      // Either way the session's calls under way end with it, and so do its requests to the agent (their signals).
      // An upstream gone from the registry is retired, not ended upstream: a Streamable HTTP session is shared by the
      // replicas, and one replica may miss an upstream only because of its own trouble (a keyring without the key its
      // secrets are sealed with) — its DELETE would end the session under every other replica. One that now connects
      // elsewhere is ended at the old server (`retire`), if the endpoint it was opened at is no longer the upstream's
      // (another URL, other sealed credentials: every replica opens a new session then); not for an edit of the URL's
      // spelling alone (a host's case, a default port written out), after which the session is resumed (found by
      // re-review). Judged by the configuration it was opened under, not by the record, which a renewal still under way
      // has not updated yet (found by re-review: the renewal's new session was ended, and then used).
      // Stdio and legacy SSE ones are this replica's, and close.
      this.retire(entry.config, entry.session, config !== undefined && movedEndpoint(entry.config, config));
    }
  }

  /** Adds to this replica's record the upstreams `stored` has and it lacks (joined through another replica). */
  private adoptFrom(live: LiveSession, stored: SessionRecord): boolean {
    let added: Record<string, SessionRecord['upstreams'][string]> | undefined;
    for (const [upstreamId, state] of Object.entries(stored.upstreams)) {
      if (!Object.hasOwn(live.record.upstreams, upstreamId)) (added ??= {})[upstreamId] = state;
    }
    if (added === undefined) return false;
    live.record = { ...live.record, upstreams: { ...live.record.upstreams, ...added } };
    // An agent listening here hears the upstreams joined elsewhere from here too, as it hears the others (opened after
    // the caller is done: a join under way here sets its own session right after this).
    if (live.standalone !== undefined) {
      setImmediate(() => {
        if (this.live.get(live.record.id) === live && live.standalone !== undefined) this.listenAgain(live);
      });
    }
    return true;
  }

  /**
   * Reads the stored record for upstreams another replica joined to the session (at most once a second per session:
   * asked for names of upstreams the session does not have, an agent could otherwise make a Redis read per request).
   * Returns whether any was added. `proven`: the gateway itself named the upstreams (a cursor sealed with the session's
   * key), so they were joined: read now, whatever the interval or a read under way that may predate the join.
   */
  private adoptJoined(live: LiveSession, proven = false): Promise<boolean> {
    // Requests that arrive while a read is under way wait for it (parallel calls to a joined upstream's tools).
    if (live.adopting !== undefined && !proven) return live.adopting;
    const now = performance.now();
    if (now - live.adoptedAt < ADOPT_INTERVAL_MS && !proven) return Promise.resolve(false);
    live.adoptedAt = now;
    const reading = (this.deps.sessions.reload?.(live.record.id) ?? this.deps.sessions.get(live.record.id))
      .then((stored) => stored !== undefined && this.adoptFrom(live, stored))
      .catch(() => false)
      .finally(() => {
        if (live.adopting === reading) live.adopting = undefined;
      });
    live.adopting = reading;
    return reading;
  }

  /** Whether the session has the upstream, here or (read from the store) joined through another replica. */
  private async hasUpstream(live: LiveSession, upstreamId: string): Promise<boolean> {
    if (Object.hasOwn(live.record.upstreams, upstreamId)) return true;
    await this.adoptJoined(live);
    return Object.hasOwn(live.record.upstreams, upstreamId);
  }

  private backgroundJoins: Promise<void> | undefined;
  /** Upstream id → the last failed join on this replica (any session), and of which configuration version. */
  private readonly joinFailed = new Map<string, { readonly at: number; readonly version: number }>();
  /** Set by `shutdown`: no join starts or is kept after it. */
  private closing = false;
  /**
   * Initializes waiting on their upstreams, woken by `shutdown`. Each takes its callback out again when its wait ends:
   * a reaction on one promise pending for the replica's life would keep every initialize's wait in memory.
   */
  private readonly stopWaiters = new Set<() => void>();

  /**
   * Joins the upstreams each session listening on this replica (a standalone stream open here) lacks, a few at a time,
   * so that its agent hears of them (`list_changed`) without listing: after the upstream registry changed, and on
   * every sweep (an upstream back from an outage). One run at a time per replica.
   */
  joinMissingUpstreams(): void {
    if (this.backgroundJoins !== undefined || this.closing) return;
    const sessions = [...this.live.values()].filter((live) => live.standalone !== undefined && this.dueToJoin(live, Date.now()).length > 0);
    if (sessions.length === 0) return;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < sessions.length) {
        const live = sessions[next++] as LiveSession;
        if (this.live.get(live.record.id) === live) await this.joinMissing(live, 'background', 0);
      }
    };
    this.backgroundJoins = Promise.all(Array.from({ length: Math.min(BACKGROUND_JOIN_CONCURRENCY, sessions.length) }, worker))
      .then(() => undefined)
      .catch((error: unknown) => this.deps.logger.warn({ err: error }, 'joining upstreams to listening sessions failed'))
      .finally(() => (this.backgroundJoins = undefined));
  }

  // ---------------------------------------------------------------- forwarding and relays

  /** Held calls' approvals to use right before they go upstream (`Admission.confirm`), by the agent's request. */
  private readonly confirmations = new Map<JsonRpcRequest, () => Promise<void>>();

  /**
   * Uses a held call's approval (`confirm`) unless the call ended meanwhile (cancelled by the agent, the session gone):
   * then it stays unused, and nothing is sent.
   */
  private async confirmed(live: LiveSession, signal: CancelSignal, confirm: () => Promise<void>): Promise<void> {
    if (signal.aborted) throw signal.reason;
    if (this.live.get(live.record.id) !== live) throw new GatewayRequestError(GATEWAY_RPC.NOT_FOUND, 'Session not found');
    await confirm();
  }

  private async forward(
    live: LiveSession,
    upstreamId: string,
    message: JsonRpcRequest,
    params: Record<string, unknown>,
    sink: MessageSink,
    signal: CancelSignal,
    traceId: string,
    progressSent = 0,
    /** The task this request is about (see TaskScope). */
    task?: TaskScope,
  ): Promise<Record<string, unknown>> {
    const meta = params['_meta'];
    const progressToken = isObject(meta) ? meta['progressToken'] : undefined;
    // The upstream's requests to the agent made for this call (sampling, elicitation, roots) end with it: aborted when
    // the call settles, so none is left waiting on the agent for an answer no one takes. Made on the first relay only
    // (most calls have none, and pay nothing for it); one asked before the upstream request was handed back (a
    // transport that delivers at once) is tied to the call as soon as it is.
    let call: Promise<Record<string, unknown>> | undefined;
    let relays: Cancellation | undefined;
    // Messages about a task waiting for the call's answer to name it (see `sendInCall`); made on a first notification.
    let held: { count: number } | undefined;
    const endsWithCall = (): Cancellation => {
      if (relays !== undefined) return relays;
      relays = new Cancellation();
      if (call !== undefined) endWith(call, relays);
      return relays;
    };
    const send = (session: UpstreamSession, callSignal: CancelSignal = signal): Promise<Record<string, unknown>> => {
      // The configuration's current call timeout (read once the session is got: an edit may have changed it), also for
      // a session opened before the edit; `tasks/result` waits longer.
      // Also what the call's log messages are masked with: the configuration this session was opened or kept under,
      // read now (the entry may be gone by the time a message comes: a session the upstream forgot, an edit).
      const config = live.upstreams.get(upstreamId)?.config;
      const timeoutMs = (task instanceof Promise ? undefined : task?.timeoutMs) ?? config?.callTimeoutMs;
      // A second attempt (the upstream had forgotten its session) gets its own: the first one's ended with it.
      relays = undefined;
      call = undefined;
      call = session.request(message.method, params, {
        signal: callSignal,
        timeoutMs,
        onNotification: (received) => {
          const listChanged = isListChange(received.method);
          if (!this.relayable(live, upstreamId, received)) {
            if (listChanged) this.listsChanged(live, upstreamId, received.method);
            return;
          }
          if (!listChanged) {
            // What would be dropped below anyway (progress about no request of this call's, a log message under the
            // agent's level) takes nothing of the bound.
            if (
              received.method === 'notifications/progress'
                ? (progressToken === undefined || received.params?.['progressToken'] !== progressToken) && !this.isTaskProgressOf(live, upstreamId, task, received.params?.['progressToken'])
                : received.method === 'notifications/message' && (config === undefined || belowAgentLevel(live.record, received))
            )
              return;
            if (!this.mayRelay(live, upstreamId, received)) return;
          }
          // Never relayed unmasked: without the configuration its secrets are not known, so a log message is dropped
          // (below) and a progress message's text left out.
          const notification = config ? maskedRelay(config, received) : withoutRelayedText(received);
          if (listChanged) {
            // The bus hears of them at most once an interval (`listsChanged`); the call's own stream of each, as it comes:
            // one folded for the interval's end could find the call over and the agent with no stream of its own (a GET
            // stream is optional), and the agent would miss a change after one it had acted on.
            this.listsChanged(live, upstreamId, notification.method);
            this.sendInCall(live, upstreamId, sink, notification, task, (held ??= { count: 0 }));
            return;
          }
          if (notification.method === 'notifications/progress') {
            // Only progress about this call: the token the agent gave it, which went upstream as it was (MCP: progress
            // references a token of an active request). Another token is some other request's, or none at all, or the
            // task's this request is about.
            if (progressToken === undefined || notification.params?.['progressToken'] !== progressToken) {
              if (!this.isTaskProgressOf(live, upstreamId, task, notification.params?.['progressToken'])) return;
              if (sink.canStream) this.sendInCall(live, upstreamId, sink, this.shiftedTaskProgress(live, upstreamId, notification), task, (held ??= { count: 0 }));
              else this.toSessionStream(live, upstreamId, notification);
              return;
            }
            // The call became a task and its answer is written: its progress goes on on the session's stream.
            if (!sink.canStream && live.taskProgress.size > 0 && live.taskProgress.has(taskProgressKey(upstreamId, progressToken))) {
              this.toSessionStream(live, upstreamId, notification);
              return;
            }
            const progressed: Record<string, unknown> = { ...notification.params };
            // Past what a hook already reported (an approval wait), so the agent sees progress only increase.
            if (progressSent > 0 && typeof progressed['progress'] === 'number') {
              progressed['progress'] = progressed['progress'] + progressSent;
              if (typeof progressed['total'] === 'number') progressed['total'] = progressed['total'] + progressSent;
            }
            this.sendInCall(live, upstreamId, sink, { ...notification, params: progressed }, task, (held ??= { count: 0 }));
          } else {
            if (notification.method === 'notifications/message' && (config === undefined || belowAgentLevel(live.record, notification))) return;
            this.sendInCall(live, upstreamId, sink, notification, task, (held ??= { count: 0 }));
          }
        },
        onServerRequest: (received, upstreamSignal, context) => {
          // Its text may quote a configured secret: not relayed when the configuration (what it is masked with) is gone.
          if (config === undefined) return Promise.reject(new UpstreamRpcError(JSON_RPC.INTERNAL_ERROR, 'The upstream is no longer configured'));
          const request = maskedRelay(config, received);
          const upstreamTask = referencedTask(request.method, request.params);
          // The call's stream gone, its questions go on the session's stream, unless its answer was withdrawn from the
          // agent (its credential went): then they are refused.
          const sinkNow = sink.canStream ? sink : sink.withdrawn === true ? NO_STREAM : this.standaloneSink(live);
          if (upstreamTask === undefined) {
            // One of several calls of the session may have made it (a stdio or legacy SSE connection cannot say which):
            // it ends with none of them, only with the upstream's cancellation or the relay timeout.
            const bounds = context?.shared === true ? { timeoutMs: timeoutMs ?? this.relayTimeoutMs } : { ended: endsWithCall(), timeoutMs: timeoutMs ?? this.relayTimeoutMs };
            return this.relayServerRequest(live.record, request, sinkNow, upstreamSignal, session, bounds);
          }
          // About a task: it outlives the call that created it (its questions may come after the call's answer). Each
          // costs a look-up of the task, bounded as messages about tasks are (`relayClass`).
          if (!this.mayRelay(live, upstreamId, request)) return Promise.reject(tooManyAboutTasks());
          const bounds = { timeoutMs: this.relayTimeoutMs, upstreamTask };
          return this.inTaskScope(live, upstreamId, request, upstreamTask, task).then((named) =>
            named ? this.relayServerRequest(live.record, named, sinkNow, upstreamSignal, session, bounds) : Promise.reject(unknownTaskOf(request)),
          );
        },
      });
      if (relays !== undefined) endWith(call, relays);
      return call;
    };
    // A held call's approval is used (`Admission.confirm`) only once the upstream session is at hand, right before the
    // call goes: one approved and then not sent (the upstream unreachable after the wait) stays unused. Taken now, while
    // the request is surely under way (a task's creation outlives an agent's cancel), and used once, whatever attempts
    // follow.
    let confirm = this.confirmations.size > 0 ? this.confirmations.get(message) : undefined;
    if (confirm !== undefined) this.confirmations.delete(message);
    return this.onUpstream(live, upstreamId, traceId, (session) => {
      if (confirm === undefined) return send(session);
      const using = confirm;
      confirm = undefined;
      // Cancelled while its approval was being used: it is used, so the call goes and runs to its end (its answer is
      // not sent), as one cancelled a moment after it went may; aborted at once, most transports would drop it unsent.
      return this.confirmed(live, signal, using).then(() => send(session, signal.aborted ? NOT_CANCELLED : signal));
    });
  }

  /**
   * Whether `message` of upstream `upstreamId`'s may be relayed to the agent of `live`
   * (RELAYED_NOTIFICATIONS_PER_SECOND, a bound for each `relayClass`); drops are warned of at most once every
   * DROPPED_WARNING_MS.
   */
  private mayRelay(live: LiveSession, upstreamId: string, message: JsonRpcNotification | JsonRpcRequest): boolean {
    const key = relayClass(upstreamId, message);
    let allowance = live.relayAllowances.get(key);
    if (allowance === undefined) live.relayAllowances.set(key, (allowance = new Allowance(RELAYED_NOTIFICATIONS_PER_SECOND, RELAYED_NOTIFICATION_BURST)));
    if (allowance.take()) return true;
    const dropped = allowance.droppedToReport(DROPPED_WARNING_MS);
    if (dropped !== undefined) {
      this.deps.logger.warn({ tenantId: live.record.tenantId, sessionIdPrefix: live.record.id.slice(0, 8), upstreamId, dropped }, "an upstream's messages to the agent dropped: it sent more than may be relayed");
    }
    return false;
  }

  /** A notification that came with an answer to the agent's request; one about a task names it as the agent knows it. */
  private sendInCall(live: LiveSession, upstreamId: string, sink: MessageSink, notification: JsonRpcNotification, task: TaskScope | undefined, held: { count: number }): void {
    const upstreamTask = referencedTask(notification.method, notification.params);
    if (upstreamTask === undefined) sink.send(notification);
    else if (!(task instanceof Promise) && upstreamTask === task?.upstream) {
      if (notification.method === 'notifications/tasks/status' && isTerminalTaskStatus(notification.params?.['status'])) this.endTaskSlots(live, task.agent);
      if (this.refusesTaskMessage(live, upstreamId, task.tool, notification)) return;
      sink.send({ ...notification, params: renameTask(notification.params as Record<string, unknown>, task.upstream, task.agent) });
    }
    else {
      // Each waits in memory (for the task's id to be recorded, or for its route to be read): an upstream that streams
      // them faster than they clear would otherwise hold any number until the call answers. Past the bound they are
      // dropped (a task's status is also there to be polled).
      if (held.count >= MAX_HELD_TASK_MESSAGES) return;
      held.count += 1;
      void this.inTaskScope(live, upstreamId, notification, upstreamTask, task).then(
        (named) => {
          held.count -= 1;
          if (named) sink.send(named);
        },
        () => void (held.count -= 1),
      );
    }
  }

  /**
   * A message about `upstreamTask` that came with a forwarded request, named for the agent: the request's own task
   * (once a task-augmented call's task is recorded: what arrives before its answer waits for it), or another task of
   * the session's; undefined for a task that is not the session's.
   */
  private async inTaskScope<M extends JsonRpcNotification | JsonRpcRequest>(live: LiveSession, upstreamId: string, message: M, upstreamTask: string, task: TaskScope | undefined): Promise<M | undefined> {
    // A request waits a little only: an upstream that holds the creating answer until it is answered would otherwise
    // stall both until the call timeout. Refused after that, as an unknown task.
    const known = task instanceof Promise ? await ('id' in message ? withinMs(task, TASK_SCOPE_WAIT_MS) : task) : task;
    if (known === undefined || upstreamTask !== known.upstream) return this.agentTaskMessage(live, upstreamId, message, upstreamTask);
    if (message.method === 'notifications/tasks/status' && isTerminalTaskStatus(message.params?.['status'])) this.endTaskSlots(live, known.agent);
    if (this.refusesTaskMessage(live, upstreamId, known.tool, message)) return undefined;
    return { ...message, params: renameTask(message.params as Record<string, unknown>, known.upstream, known.agent) };
  }

  /**
   * An upstream's message about one of its tasks, renamed for the agent (the id the agent was given for that task), or
   * undefined when the task is not this session's: another session's task on a shared upstream session, or one the
   * gateway never handed out. Those messages are not passed on.
   */
  private async agentTaskMessage<M extends JsonRpcNotification | JsonRpcRequest>(live: LiveSession, upstreamId: string, message: M, upstreamTask: string): Promise<M | undefined> {
    const tasks = this.deps.tasks;
    const agentTask = await tasks?.agentTaskId(live.record.id, { upstreamId, taskId: upstreamTask }).catch(() => undefined);
    if (tasks === undefined || agentTask === undefined) return undefined;
    if (message.method === 'notifications/tasks/status' && isTerminalTaskStatus(message.params?.['status'])) this.endTaskSlots(live, agentTask);
    if (this.deps.hooks?.taskMessage !== undefined) {
      // Which tool the task is of: only asked when a hook would decide on it. Unreadable (Redis away): not passed on.
      const route = await tasks.route(live.record.id, agentTask).catch(() => null);
      if (route === null) {
        if ('id' in message) throw unknownTaskOf(message);
        return undefined;
      }
      if (this.refusesTaskMessage(live, upstreamId, route?.tool, message)) return undefined;
    }
    return { ...message, params: renameTask(message.params as Record<string, unknown>, upstreamTask, agentTask) };
  }

  /**
   * Whether a message about a task of `tool` stays here because the hooks refuse it (see `taskMessageRefusal`): a
   * request throws the refusal the upstream is answered with; for a notification, true (the caller drops it).
   */
  private refusesTaskMessage(live: LiveSession, upstreamId: string, tool: string | undefined, message: JsonRpcNotification | JsonRpcRequest): boolean {
    const refusal = this.taskMessageRefusal(live, upstreamId, tool, message.method);
    if (refusal === undefined) return false;
    if ('id' in message) throw refusedTaskRequest(message, refusal);
    return true;
  }

  /**
   * The hooks' refusal of a message about a task of `tool` from `upstreamId` (the principal may no longer use the tool,
   * or it is held), undefined when it may go to the agent. A task whose tool is not known (recorded before tools were)
   * is not judged.
   */
  private taskMessageRefusal(live: LiveSession, upstreamId: string, tool: string | undefined, method: string): GatewayRequestError | undefined {
    const check = this.deps.hooks?.taskMessage;
    if (check === undefined || tool === undefined) return undefined;
    const upstream = this.deps.registry.forTenant(live.record.tenantId).byId.get(upstreamId);
    try {
      // An upstream no longer configured: none of its tools is the principal's any more.
      if (upstream === undefined) throw new GatewayRequestError(GATEWAY_RPC.POLICY_DENIED, 'The upstream is no longer configured.', undefined, 'denied');
      check(live.record, { upstream, kind: 'tool', name: tool }, method);
      return undefined;
    } catch (error) {
      if (error instanceof GatewayRequestError) {
        this.deps.logger.debug({ sessionIdPrefix: live.record.id.slice(0, 8), upstreamId, method, code: error.rpcCode }, 'message about a task not passed on: its tool is refused');
        return error;
      }
      // A hook that failed (a bug) decides nothing: the message stays here, as for a refusal.
      this.deps.logger.error({ err: error, sessionIdPrefix: live.record.id.slice(0, 8), upstreamId, method }, 'a hook failed on a message about a task; not passed on');
      return new GatewayRequestError(JSON_RPC.INTERNAL_ERROR, 'Internal error');
    }
  }

  /**
   * A task-augmented `tools/call` answered: an upstream that created a task gets its id recorded for the session and the
   * agent is given the gateway's id for it. (An upstream that ran the call as a plain one answered with its result.)
   */
  /** Cancels (best effort, `tasks/cancel`) the task a CreateTaskResult names: one created for a request given up. */
  private cancelUpstreamTask(live: LiveSession, upstreamId: string, result: Record<string, unknown>, traceId: string): void {
    const task = result['task'];
    if (!isObject(task) || typeof task['taskId'] !== 'string') return;
    // A server that declared no cancelling is not asked (its task runs out its own lifetime).
    if (!cancelsTasks(live.record.upstreams[upstreamId]?.capabilities ?? {})) return;
    const taskId = task['taskId'];
    const timeoutMs = this.deps.options.listTimeoutMs;
    void this.onUpstream(live, upstreamId, traceId, (session) => session.request('tasks/cancel', { taskId }, { timeoutMs })).catch(() => undefined);
  }

  private async adoptTask(live: LiveSession, upstreamId: string, tool: string, result: Record<string, unknown>, traceId: string, adopted: (task: TaskContext) => void): Promise<Record<string, unknown>> {
    const task = result['task'];
    if (!isObject(task) || typeof task['taskId'] !== 'string') return result;
    const route = { upstreamId, taskId: task['taskId'] };
    try {
      const agentTaskId = await (this.deps.tasks as TaskRouteStore).add(live.record.id, route, taskLifetimeMs(task['ttl']), tool);
      // Ended while the route was stored (after its routes were deleted): none is left behind.
      if (this.ended.has(live.record.id)) void this.deps.tasks?.delete(live.record.id).catch(() => undefined);
      adopted({ upstream: route.taskId, agent: agentTaskId, tool });
      const config = this.deps.registry.forTenant(live.record.tenantId).byId.get(upstreamId);
      return { ...result, task: maskedTaskStatus(config, { ...task, taskId: agentTaskId }) };
    } catch (error) {
      // The task runs upstream, but the agent could never reach it: it is cancelled (best effort), and the call fails.
      const timeoutMs = this.deps.options.listTimeoutMs;
      if (cancelsTasks(live.record.upstreams[upstreamId]?.capabilities ?? {})) {
        void this.onUpstream(live, upstreamId, traceId, (session) => session.request('tasks/cancel', { taskId: route.taskId }, { timeoutMs })).catch(() => undefined);
      }
      if (error instanceof TaskRouteError) throw new GatewayRequestError(error.reason === 'too_many' ? JSON_RPC.INVALID_REQUEST : JSON_RPC.INTERNAL_ERROR, error.message);
      this.deps.logger.warn({ traceId, err: error instanceof Error ? error.message : String(error) }, 'task not recorded');
      throw new GatewayRequestError(JSON_RPC.INTERNAL_ERROR, 'The task could not be recorded; try again');
    }
  }

  /**
   * Notes the progress token of a call that became a task (see `LiveSession.taskProgress`), here and on the other
   * replicas: the upstream's progress may come on its session's own stream, which another replica may hold (before,
   * that replica dropped it, knowing no such task).
   */
  private trackTaskProgress(live: LiveSession, upstreamId: string, meta: unknown, agentTaskId: string, shift = 0): void {
    const token = isObject(meta) ? meta['progressToken'] : undefined;
    if (!this.noteTaskProgress(live, upstreamId, token, agentTaskId, shift)) return;
    this.deps.bus?.broadcast({ type: 'task-progress', sessionId: live.record.id, upstreamId, token: token as string | number, task: agentTaskId, ...(shift > 0 ? { shift } : {}) });
  }

  /**
   * Whether progress under `token` is the task's `task` is about: a task's progress keeps the token of the call that
   * created it for the task's life (MCP 2025-11-25), and the SDK's servers queue it for `tasks/result` (found by review:
   * it was dropped as no request's of that one). A method, not a closure made for every forwarded request.
   */
  private isTaskProgressOf(live: LiveSession, upstreamId: string, task: TaskScope | undefined, token: unknown): boolean {
    if (task === undefined || task instanceof Promise || (live.taskProgress.size === 0 && live.endedTaskProgress.size === 0)) return false;
    const key = taskProgressKey(upstreamId, token);
    return (live.taskProgress.get(key) ?? live.endedTaskProgress.get(key)) === task.agent;
  }

  /** `notification` (a task's progress) past what a hook reported first (`LiveSession.taskProgressShift`). */
  private shiftedTaskProgress(live: LiveSession, upstreamId: string, notification: JsonRpcNotification): JsonRpcNotification {
    if (live.taskProgressShift.size === 0) return notification;
    const shift = live.taskProgressShift.get(taskProgressKey(upstreamId, notification.params?.['progressToken']));
    if (shift === undefined || typeof notification.params?.['progress'] !== 'number') return notification;
    const params: Record<string, unknown> = { ...notification.params, progress: notification.params['progress'] + shift };
    if (typeof params['total'] === 'number') params['total'] = params['total'] + shift;
    return { ...notification, params };
  }

  /** Keeps `token` → task for the task's lifetime; false for a token that is not kept. */
  private noteTaskProgress(live: LiveSession, upstreamId: string, token: unknown, agentTaskId: string, shift = 0): boolean {
    // A token longer than a relayed one may be (512) is not kept, and its progress ends with the call.
    if ((typeof token !== 'string' || token.length > MAX_TASK_PROGRESS_TOKEN) && typeof token !== 'number') return false;
    const key = taskProgressKey(upstreamId, token);
    if (!live.taskProgress.has(key) && live.taskProgress.size >= MAX_TRACKED_TASK_PROGRESS) evictOldest(live.taskProgress);
    live.taskProgress.set(key, agentTaskId);
    if (shift > 0) {
      // Kept past the task's end, for tasks/result (as `endedTaskProgress`), within twice the bound.
      if (!live.taskProgressShift.has(key) && live.taskProgressShift.size >= 2 * MAX_TRACKED_TASK_PROGRESS) evictOldest(live.taskProgressShift);
      live.taskProgressShift.set(key, shift);
    } else if (live.taskProgressShift.size > 0) live.taskProgressShift.delete(key);
    return true;
  }

  /** The agent's progress on a relayed request, to the upstream that asked, under the upstream's own token. */
  private relayProgress(sessionId: string, params: Record<string, unknown>): void {
    const token = params['progressToken'];
    const waiting = typeof token === 'string' ? this.pending.get(token) : undefined;
    if (waiting?.progress === undefined || waiting.sessionId !== sessionId) return;
    const { upstream, token: original } = waiting.progress;
    upstream.notify('notifications/progress', { ...params, progressToken: original }).catch(() => undefined);
  }

  /**
   * Sends an upstream's request to the agent under a gateway-minted id and waits for the answer, for at most
   * `bounds.timeoutMs`, and no longer than the call it was made for: on either, or on the upstream's cancellation, the
   * agent is told `notifications/cancelled` and the upstream gets an error.
   */
  private relayServerRequest(record: SessionRecord, received: JsonRpcRequest, sink: MessageSink, signal: CancelSignal, upstream: UpstreamSession | undefined, bounds: RelayBounds): Promise<Record<string, unknown>> {
    const sessionId = record.id;
    // Client-side tasks are not offered to upstreams (`relayableClientCapabilities`): their task methods are refused,
    // and a task augmentation is dropped, so the agent runs the request as a plain one (MCP: as a receiver that did
    // not offer tasks) rather than create a task the upstream could then drive by its id.
    if (received.method.startsWith('tasks/')) return Promise.reject(new UpstreamRpcError(JSON_RPC.METHOD_NOT_FOUND, `Method not found: ${received.method}`));
    let request = received;
    if (received.params !== undefined && 'task' in received.params) {
      const { task: _dropped, ...params } = received.params;
      request = { ...received, params };
    }
    // Context "of this server" would be every upstream's to the agent, handed back to this one: none is asked for.
    if (request.method === 'sampling/createMessage' && request.params !== undefined) {
      const params = relayedSamplingParams(request.params);
      if (params !== request.params) request = { ...request, params };
    }
    // Only what the agent declared at initialize (MCP: use only negotiated capabilities). An upstream process shared
    // by several sessions, or one that ignores the capabilities it was given, may still ask.
    const gap = clientCapabilityGap(request.method, request.params, clientCapabilitiesIn(record));
    if (gap !== undefined) return Promise.reject(new UpstreamRpcError(gap.code, gap.message));
    // In the shape the agent's protocol version defines (an upstream may speak a newer one), or refused.
    if (request.params !== undefined && isBefore(record.protocolVersion, ADAPTED_REQUESTS_BEFORE)) {
      const adapted = adaptRelayedRequest(request.method, request.params, record.protocolVersion);
      if ('refused' in adapted) return Promise.reject(new UpstreamRpcError(JSON_RPC.INVALID_PARAMS, adapted.refused));
      if (adapted.params !== request.params) request = { ...request, params: adapted.params };
    }
    const live = this.live.get(sessionId);
    if (live !== undefined && live.relayed.size >= MAX_RELAYED_PER_SESSION) {
      return Promise.reject(new UpstreamRpcError(JSON_RPC.INTERNAL_ERROR, `The client has ${MAX_RELAYED_PER_SESSION} requests waiting for an answer already`));
    }
    const id = `pcs.${this.deps.options.replicaId}.${randomBytes(12).toString('base64url')}`;
    // The upstream's progress token is its own (two upstreams may both use 1): the agent is given this request's id as
    // the token, and its progress goes back under the original one (`relayProgress`).
    const meta = request.params?.['_meta'];
    const token = isObject(meta) ? meta['progressToken'] : undefined;
    const progress = upstream !== undefined && (typeof token === 'string' || typeof token === 'number') ? { token, upstream } : undefined;
    const params = progress && request.params ? { ...request.params, _meta: { ...(meta as Record<string, unknown>), progressToken: id } } : request.params;
    const { ended } = bounds;
    if (signal.aborted || ended?.aborted) return Promise.reject(new UpstreamRpcError(JSON_RPC.INTERNAL_ERROR, 'Request cancelled'));
    // MCP: the answer to a request about a task carries the same related task: the agent names it by the gateway's id.
    const agentTask = bounds.upstreamTask !== undefined ? relatedTaskId(request.params ?? {}) : undefined;
    const answered = (result: Record<string, unknown>) =>
      agentTask !== undefined && bounds.upstreamTask !== undefined ? renameTask(result, agentTask, bounds.upstreamTask) : result;
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      let delivery: NodeJS.Timeout | undefined;
      /** Confirmed by the replica holding the agent's stream (possibly before `send` returned, on a bus that is quick). */
      let delivered = false;
      const settled = () => {
        clearTimeout(timer);
        clearTimeout(delivery);
        signal.removeEventListener('abort', onAbort);
        ended?.removeEventListener('abort', onEnded);
        live?.relayed.delete(id);
      };
      const giveUp = (reason: string, error: UpstreamRpcError) => {
        if (this.pending.get(id)?.sessionId !== sessionId) return;
        this.pending.delete(id);
        settled();
        const cancelled: JsonRpcMessage = { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason } };
        // The stream it went on may be over: a request of a process shared by several calls outlives the call whose
        // stream carried it (found by a review: the agent's elicitation stayed open for good). Then the session's stream
        // tells the agent, unless the request's answer was withdrawn from it.
        if (!sink.send(cancelled) && sink.withdrawn !== true) {
          const now = this.live.get(sessionId);
          if (now !== undefined) this.standaloneSink(now).send(cancelled);
        }
        reject(error);
      };
      const onAbort = () => giveUp('cancelled upstream', new UpstreamRpcError(JSON_RPC.INTERNAL_ERROR, 'Request cancelled'));
      const onEnded = () => giveUp(RELAY_CALL_ENDED, new UpstreamRpcError(JSON_RPC.INTERNAL_ERROR, 'Request cancelled: the call it was made for ended'));
      const timer = setTimeout(() => giveUp('timed out', new UpstreamRpcError(JSON_RPC.INTERNAL_ERROR, 'The client did not answer in time')), bounds.timeoutMs);
      timer.unref();
      this.pending.set(id, {
        sessionId,
        resolve: (result) => {
          settled();
          resolve(answered(result));
        },
        reject: (error) => {
          settled();
          reject(error);
        },
        ...(progress ? { progress } : {}),
        ...(sink.remote === true
          ? {
              delivered: () => {
                delivered = true;
                clearTimeout(delivery);
              },
            }
          : {}),
      });
      live?.relayed.add(id);
      signal.addEventListener('abort', onAbort, { once: true });
      ended?.addEventListener('abort', onEnded, { once: true });
      const relayed: JsonRpcMessage = { jsonrpc: '2.0', id, method: request.method, ...(params ? { params } : {}) };
      if (!sink.send(relayed)) {
        this.pending.delete(id);
        settled();
        reject(new UpstreamRpcError(JSON_RPC.METHOD_NOT_FOUND, 'The client cannot receive this request now'));
        return;
      }
      if (sink.remote === true && !delivered) {
        delivery = setTimeout(() => giveUp('not delivered', new UpstreamRpcError(JSON_RPC.METHOD_NOT_FOUND, 'The client cannot receive this request now')), REMOTE_DELIVERY_MS);
        delivery.unref();
      }
    });
  }

  private settleAnswer(sessionId: string, response: JsonRpcResponse): void {
    const id = response.id;
    if (typeof id !== 'string') return;
    const waiting = this.pending.get(id);
    if (!waiting || waiting.sessionId !== sessionId) return;
    this.pending.delete(id);
    // A result's `_meta` is typed as a request's (MCP): malformed, the SDK's stdio server drops the whole answer and the
    // call waiting for it runs to its timeout. The upstream is told the answer could not be passed on instead.
    const malformed = 'result' in response ? metaProblem(response.result) : undefined;
    if (malformed !== undefined) waiting.reject(new UpstreamRpcError(JSON_RPC.INVALID_PARAMS, `The client's answer could not be passed on: ${malformed}`));
    else if ('result' in response) waiting.resolve(response.result);
    else waiting.reject(new UpstreamRpcError(response.error.code, response.error.message, response.error.data));
  }

  /** The upstream session on this replica: connected at initialize, or resumed from the record's state. */
  private upstream(live: LiveSession, upstreamId: string, traceId: string): Promise<UpstreamSession> {
    // The session left this replica (ended by a DELETE here or elsewhere, or expired) while the request waited (its
    // hooks, a listing): nothing is opened for it any more. Opened on a state no sweep or end would see again, a stdio
    // or legacy SSE upstream session was never closed.
    if (this.live.get(live.record.id) !== live) return Promise.reject(new GatewayRequestError(GATEWAY_RPC.NOT_FOUND, 'Session not found'));
    const config = this.deps.registry.forTenant(live.record.tenantId).byId.get(upstreamId);
    const state = live.record.upstreams[upstreamId];
    if (!config || !state) {
      return Promise.reject(new UpstreamUnavailableError('closed', 'the upstream is no longer configured'));
    }
    const existing = live.upstreams.get(upstreamId);
    if (existing && sameEdit(existing.config, config)) return existing.session;
    if (existing) {
      existing.pages.clear();
      if (sameConnection(existing.config, config)) {
        // Edited, but not where it connects (a name, a description, a timeout): calls under way must not fail for it.
        // Calls from now on take the new call timeout (`forward` passes it; rate-limit slots are sized by it too).
        live.upstreams.set(upstreamId, { ...existing, config });
        return existing.session;
      }
      // Another URL, other credentials, another command: the session under the old configuration ends here (its
      // calls under way with it). Left open, its streams kept reconnecting to the old host with the old credentials
      // for as long as the gateway ran, and kept relaying notifications beside the new session's.
      this.retire(existing.config, existing.session, movedEndpoint(existing.config, config));
    }
    const identity = identityOf(live.record);
    // The record may name a session opened before an admin repointed the upstream (this replica never held it, or held
    // it under the old configuration): its id must not go to the new URL, so a new session takes its place, as one the
    // upstream forgot does.
    const moved = sessionElsewhere(state, config);
    const forgotten = state.sessionId !== null && (moved || live.forgottenUpstreams.get(upstreamId) === state.sessionId) ? state.sessionId : undefined;
    // A session of this replica that ended by itself (legacy SSE): the one opened now is new upstream.
    const lost = forgotten === undefined && live.lostUpstreams.delete(upstreamId);
    // Nothing to resume (stdio, legacy SSE: the record names no upstream session), so what opens now is new upstream
    // too: on another replica, or here again after the idle session was let go. It is told what the agent set, as the
    // stored record has it (this replica's copy may predate a subscribe made through another).
    const fresh = forgotten === undefined && state.sessionId === null && config.transport !== 'streamable_http';
    const opened: Promise<Opened> =
      forgotten !== undefined
        ? this.renew(live, config, identity, forgotten, traceId, moved ? 'moved' : 'forgotten')
        : this.deps.connector
            .resume(config, identity, resumeState(state))
            .then((session) => ({ session, replay: lost || fresh ? 'reload' : undefined }));
    const entry: LiveUpstream = {
      config,
      session: opened.then(async ({ session: resumed, replay }) => {
        entry.current = resumed;
        // An edit that kept the connection replaced the entry meanwhile (same session, new config): it learns it too.
        const held = live.upstreams.get(upstreamId);
        if (held !== undefined && held !== entry && held.session === entry.session) held.current = resumed;
        const attached = this.attach(live, config, resumed);
        // Attached first, so that updates the upstream sends right after a subscribe reach the agent. Requests wait for
        // it (they would otherwise run against an upstream that does not know the agent's subscriptions and level yet),
        // at most listTimeoutMs.
        if (replay !== undefined) await this.replay(live, config, resumed, replay === 'reload' ? undefined : replay, traceId);
        return attached;
      }),
      current: undefined,
      pages: new PageCache(this.pageStore, live.record.tenantId),
    };
    entry.session.catch((error: unknown) => {
      // Also when an edit that kept the connection replaced the entry meanwhile (same session promise): the next
      // request connects again instead of being handed this failure for as long as the session is used.
      const held = live.upstreams.get(upstreamId);
      if (held !== undefined && held.session === entry.session) {
        held.pages.clear();
        live.upstreams.delete(upstreamId);
      }
      // The new session never came (the upstream still down): the next one opened is new all the same, and is told
      // the agent's subscriptions and level then.
      if (lost) live.lostUpstreams.add(upstreamId);
      this.logUpstreamFailure(config, forgotten ? 'initialize' : 'resume', error, traceId);
    });
    live.upstreams.set(upstreamId, entry);
    return entry.session;
  }

  /**
   * A new upstream session in place of one the upstream forgot (`forgotten`). The record names it from then on, stored
   * by compare-and-set: when another replica replaced the forgotten session first, this replica ends the one it just
   * started and continues the other's, so the agent's session keeps one upstream session whatever replica serves it.
   */
  private async renew(
    live: LiveSession,
    config: UpstreamConfig,
    identity: ClientIdentity,
    forgotten: string,
    traceId: string,
    why: 'forgotten' | 'moved',
  ): Promise<Opened> {
    live.renewedAt.set(config.id, Date.now());
    const fresh = await this.deps.connector.connect(config, identity);
    // The capabilities stay those of initialize: they are what the agent was told (`relayable`, the listings' targets).
    const previous = live.record.upstreams[config.id];
    const next = { ...fresh.state(), ...(previous?.capabilities ? { capabilities: previous.capabilities } : {}), ...(previous?.joined ? { joined: true as const } : {}) };
    let swap: UpstreamSwap;
    try {
      swap = await this.deps.sessions.swapUpstream(live.record.id, config.id, forgotten, next);
    } catch (error) {
      // The store cannot be asked: no new session now (the next renewal waits out RENEW_MIN_INTERVAL_MS).
      live.forgottenUpstreams.delete(config.id);
      void fresh.close().catch(() => undefined);
      this.deps.logger.warn({ upstream: config.name, traceId, err: error instanceof Error ? error.message : String(error) }, 'new upstream session not recorded');
      throw new UpstreamUnavailableError('session_expired', 'The upstream no longer knows this session');
    }
    live.forgottenUpstreams.delete(config.id);
    const stored = swap.record;
    if (stored === undefined) {
      // The session ended meanwhile: nothing to continue.
      void fresh.close().catch(() => undefined);
      throw new UpstreamUnavailableError('closed', 'the session has ended');
    }
    live.record = stored;
    if (swap.swapped) {
      this.deps.logger.info(
        { upstream: config.name, traceId },
        why === 'moved' ? 'upstream session started again: the upstream was repointed since the previous one opened' : 'upstream session started again: the upstream had forgotten the previous one',
      );
      // The agent's subscriptions and level as the compare-and-set read them, through whichever replica they were set.
      return { session: fresh, replay: stored };
    }
    void fresh.close().catch(() => undefined);
    // Lost the race: this replica started no session that stays, so its next renewal need not wait.
    live.renewedAt.delete(config.id);
    const theirs = stored.upstreams[config.id];
    if (theirs === undefined) throw new UpstreamUnavailableError('closed', 'the upstream is no longer part of the session');
    // Stored by a replica that still had the old configuration: the next request starts one here (never sent there).
    if (sessionElsewhere(theirs, config)) throw new UpstreamUnavailableError('session_expired', 'The upstream no longer knows this session');
    // The replica that stored its session tells it the agent's subscriptions and level: nothing to replay here.
    const session = await this.deps.connector.resume(config, identity, resumeState(theirs));
    return { session, replay: undefined };
  }

  /**
   * Tells a new upstream session what the agent had set on the one it replaces: its resource subscriptions on this
   * upstream (the record's, and those this replica holds that the store could not record) and its log level, each only if the new session's initialize advertised the capability
   * (`resources.subscribe`, `logging`). Best effort, all in parallel within listTimeoutMs (the requests that wait for
   * the session wait no longer); failures are logged and leave the record as it is. `record`: the record to take them
   * from (undefined: read it from the store, past any cache).
   */
  private async replay(live: LiveSession, config: UpstreamConfig, session: UpstreamSession, record: SessionRecord | undefined, traceId: string): Promise<void> {
    const timeoutMs = this.deps.options.listTimeoutMs;
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      const source = record ?? (await untilDeadline(this.deps.sessions.reload?.(live.record.id) ?? this.deps.sessions.get(live.record.id), signal)) ?? live.record;
      const capabilities = session.info.capabilities;
      const resources = capabilities['resources'];
      // With the subscriptions this replica holds that the store could not record (`unrecorded`): the upstream took
      // them, and the agent still has them.
      const held = source.subscriptions?.[config.id] ?? [];
      const local: string[] = [];
      for (const [uri, on] of live.unrecorded) if (on === config.id && !held.includes(uri)) local.push(uri);
      const uris = isObject(resources) && resources['subscribe'] === true ? (local.length === 0 ? held : [...held, ...local]) : [];
      const level = isObject(capabilities['logging']) ? source.logLevel : undefined;
      const sent: Promise<unknown>[] = uris.map((uri) => session.request('resources/subscribe', { uri }, { signal, timeoutMs }));
      if (level !== undefined) sent.push(session.request('logging/setLevel', { level }, { signal, timeoutMs }));
      if (sent.length === 0) return;
      const settled = await untilDeadline(Promise.allSettled(sent), signal);
      // A subscription the new session refused (resource not found, invalid params: the resource is gone) leaves the
      // record: kept, it would count toward the bound and be sent again on every renewal. One that failed otherwise (a
      // timeout, an internal error of an upstream still starting) stays.
      const refused = uris.filter((_, index) => {
        const outcome = settled[index];
        return outcome?.status === 'rejected' && outcome.reason instanceof UpstreamRpcError && REFUSED_SUBSCRIPTION_CODES.has(outcome.reason.code);
      });
      if (refused.length > 0) {
        for (const uri of refused) if (live.unrecorded.get(uri) === config.id) live.unrecorded.delete(uri);
        await this.recordAgentState(live, (current) => refused.reduce<SessionRecord | undefined>((edited, uri) => withSubscription(edited ?? current, config.id, uri, false) ?? edited, undefined), traceId);
      }
      const failed = settled.filter((outcome) => outcome.status === 'rejected');
      if (failed.length === 0) return;
      this.deps.logger.warn(
        { upstream: config.name, upstreamId: config.id, tenantId: config.tenantId, traceId, failed: failed.length, of: sent.length, reason: this.reasonOf(failed[0]?.reason) },
        'new upstream session not told all of the agent\'s subscriptions and log level',
      );
    } catch (error) {
      this.deps.logger.warn(
        { upstream: config.name, upstreamId: config.id, tenantId: config.tenantId, traceId, reason: this.reasonOf(error) },
        'new upstream session not told the agent\'s subscriptions and log level in time',
      );
    }
  }

  /**
   * Runs `run` on the session's upstream session. If the upstream answers that it forgot the session (HTTP 404: it
   * ran nothing), a new upstream session is started and `run` goes once more on it: a legacy SSE one too (its POST
   * answered 404), which before failed the call though the upstream had taken nothing.
   */
  private async onUpstream<T>(
    live: LiveSession,
    upstreamId: string,
    traceId: string,
    run: (session: UpstreamSession) => Promise<T>,
    deadline?: AbortSignal,
  ): Promise<T> {
    const session = await untilDeadline(this.upstream(live, upstreamId, traceId), deadline);
    try {
      return await run(session);
    } catch (error) {
      if (!(error instanceof UpstreamUnavailableError) || error.reason !== 'session_expired') throw error;
      if (!this.dropUpstream(live, upstreamId, session, true)) {
        // Renewed a moment ago and forgotten again. Another replica may have started a newer session since: the
        // stored record says. Otherwise (an upstream that answers 404 to every session) the call fails rather than
        // start upstream sessions at the agent's request rate.
        if (!(await this.adoptStoredUpstream(live, upstreamId, session))) throw error;
      }
      return run(await untilDeadline(this.upstream(live, upstreamId, traceId), deadline));
    }
  }

  /**
   * Whether the stored record names another upstream session than `failed` (one another replica started): then this
   * replica's record takes it, and the next use resumes it.
   */
  private async adoptStoredUpstream(live: LiveSession, upstreamId: string, failed: UpstreamSession): Promise<boolean> {
    const stored = await this.deps.sessions.reload?.(live.record.id).catch(() => undefined);
    const theirs = stored?.upstreams[upstreamId];
    if (theirs === undefined || theirs.sessionId === null || theirs.sessionId === failed.state().sessionId) return false;
    live.record = { ...live.record, upstreams: { ...live.record.upstreams, [upstreamId]: { ...theirs, ...(live.record.upstreams[upstreamId]?.capabilities ? { capabilities: live.record.upstreams[upstreamId]?.capabilities } : {}) } } };
    return true;
  }

  /**
   * `session` ended under this replica (its transport closed, or the upstream forgot it): the next use connects again,
   * on a new upstream session unless this replica started one for the upstream in the last RENEW_MIN_INTERVAL_MS
   * (then the record's session is resumed, and fails again at once). Returns whether a new one will be started.
   * `retrying`: a request the upstream refused is to go again on the new one; for a session that cannot be resumed
   * (legacy SSE, always new on the next use), whether it may, by the same interval.
   */
  private dropUpstream(live: LiveSession, upstreamId: string, session: UpstreamSession, retrying = false): boolean {
    const held = live.upstreams.get(upstreamId);
    // Replaced already (another request's renewal, under way or done): the next use goes to that one.
    if (held !== undefined && held.current !== session) return true;
    const id = session.state().sessionId;
    // Not resumable (legacy SSE): the next one is a new upstream session, without the agent's subscriptions and level.
    if (id === null) live.lostUpstreams.add(upstreamId);
    const renewedAt = live.renewedAt.get(upstreamId);
    const due = renewedAt === undefined || Date.now() - renewedAt >= RENEW_MIN_INTERVAL_MS;
    const renew = due && (id !== null || retrying);
    if (renew && id !== null) live.forgottenUpstreams.set(upstreamId, id);
    // Noted here for a legacy session (`renew` notes it for the others), so that one that refuses every session fails
    // the request rather than open upstream sessions at the agent's request rate.
    if (renew && id === null) live.renewedAt.set(upstreamId, Date.now());
    if (held !== undefined) {
      held.pages.clear();
      live.upstreams.delete(upstreamId);
    }
    return renew;
  }

  /**
   * An upstream said a list changed: this replica's cached pages of it go, every other replica's too (`lists-changed`
   * on the bus), and the agent is told (`relay`, when it may hear of it). An upstream sends as many as it likes (one
   * call's stream carried 5,000), and each was a message to every replica and one to the agent: per session, upstream
   * and kind, the first is broadcast and told at once, and those in the LIST_CHANGED_INTERVAL_MS after it once more at
   * its end (which starts another), so a change after the first is never lost. This replica's pages go on each.
   */
  private listsChanged(live: LiveSession, upstreamId: string, method: string, relay?: (late: boolean) => void): void {
    live.upstreams.get(upstreamId)?.pages.clear();
    const resources = method === 'notifications/resources/list_changed';
    if (resources) this.resourcesChanged(live, upstreamId);
    const key = `${method}\u0000${upstreamId}`;
    const notice = live.listNotices.get(key);
    if (notice === undefined) {
      this.announceListChange(live, key, upstreamId, resources, relay, false);
      return;
    }
    notice.folded = true;
    if (relay !== undefined) notice.relay = relay;
  }

  /** A list change (`listsChanged`) goes on the bus and to the agent, and the interval in which more are folded starts. */
  private announceListChange(live: LiveSession, key: string, upstreamId: string, resources: boolean, relay: ((late: boolean) => void) | undefined, late: boolean): void {
    const notice: ListNotice = {
      upstreamId,
      resources,
      folded: false,
      relay: undefined,
      timer: setTimeout(() => {
        live.listNotices.delete(key);
        // Not for a session that left this replica (its timers are stopped then; `stopTimers`).
        if (notice.folded && this.live.get(live.record.id) === live) this.announceListChange(live, key, upstreamId, resources, notice.relay, true);
      }, LIST_CHANGED_INTERVAL_MS),
    };
    notice.timer.unref();
    live.listNotices.set(key, notice);
    this.deps.bus?.broadcast({ type: 'lists-changed', sessionId: live.record.id, upstreamId, ...(resources ? { resources } : {}) });
    relay?.(late);
  }

  /**
   * List changes folded into an interval that has not ended yet go on the bus now, as the interval's end would have sent
   * them: the session is leaving this replica (idle, shutdown), its timers are stopped, and the other replicas (one
   * holding the agent's stream, pages cached since the first change) would otherwise never hear of the later change.
   * The agent's streams here are gone by then; a call's stream was told of each change as it came.
   */
  private sayFoldedListChanges(live: LiveSession): void {
    for (const { folded, upstreamId, resources } of live.listNotices.values()) {
      if (folded) this.deps.bus?.broadcast({ type: 'lists-changed', sessionId: live.record.id, upstreamId, ...(resources ? { resources } : {}) });
    }
  }

  /**
   * Whether the agent may be sent `notification` from the upstream `upstreamId`: a list change only for an area whose
   * `listChanged` the session's initialize advertised (MCP: the server sends them only then; an upstream that sends one
   * anyway is not passed on); a resource update only about a subscription the session holds (`subscribedTo`), and
   * while the principal may still see the resource (`updateVisible`).
   */
  private relayable(live: LiveSession, upstreamId: string, notification: JsonRpcNotification): boolean {
    if (notification.method === 'notifications/resources/updated') {
      return this.subscribedTo(live, upstreamId, notification.params) && this.updateVisible(live, upstreamId, notification.params);
    }
    // MCP: a server that emits log messages declares `logging`. Initialize declared it only if an upstream it had then
    // did: the messages of one that joined later, or of one that sends them undeclared, are not the agent's to get.
    if (notification.method === 'notifications/message') return isObject(this.capabilitiesOf(live.record)['logging']);
    // It ends a url-mode elicitation, which only an agent that declared `elicitation.url` was ever relayed.
    if (notification.method === 'notifications/elicitation/complete') {
      const elicitation = clientCapabilitiesIn(live.record)['elicitation'];
      return isObject(elicitation) && isObject(elicitation['url']);
    }
    const area = LIST_CHANGED_AREA.get(notification.method);
    if (area === undefined) return true;
    const advertised = this.capabilitiesOf(live.record)[area];
    return isObject(advertised) && advertised['listChanged'] === true;
  }

  /**
   * Whether the session is subscribed on `upstreamId` to what a `resources/updated` about `params.uri` names: the URI,
   * or a resource it is part of (`subscriptionCovers`, the rule a shared stdio process applies too). MCP: updates go to
   * subscribers. Without this, an upstream that kept a subscription the agent ended (its unsubscribe failed upstream;
   * the record drops it all the same) or that reported URIs nobody subscribed to reached the agent with them. Read from
   * this replica's copy of the record, which takes subscriptions made through another replica on `agent-state`, from
   * the subscribes under way here (an update may come before the upstream's answer), and from the subscriptions made
   * here that the store could not record (`unrecorded`: the copy is replaced by the stored record, which lacks them).
   */
  private subscribedTo(live: LiveSession, upstreamId: string, params: Record<string, unknown> | undefined): boolean {
    const uri = params?.['uri'];
    // A URI no read could name is no resource of the agent's (a subscription to a directory covers what is under it,
    // at any length): dropped before the hooks fold it whole (found by re-review).
    if (typeof uri !== 'string' || uri.length > MAX_URI_LENGTH) return false;
    if (live.record.subscriptions?.[upstreamId]?.some((held) => subscriptionCovers(held, uri)) === true) return true;
    for (const [held, on] of live.unrecorded) if (on === upstreamId && subscriptionCovers(held, uri)) return true;
    return live.subscribing.some((making) => making.upstreamId === upstreamId && subscriptionCovers(making.uri, uri));
  }

  /**
   * Whether a `resources/updated` about `params.uri` may reach the agent: the hooks' listing filter (policy) must still
   * show that resource to the principal. A subscription outlives the policy that allowed it (the upstream keeps it), so
   * without this an agent whose access was revoked went on learning when the resource changed. Dropped when the update
   * names no URI or the filter fails.
   */
  private updateVisible(live: LiveSession, upstreamId: string, params: Record<string, unknown> | undefined): boolean {
    const filter = this.deps.hooks?.filter;
    if (filter === undefined) return true;
    const uri = params?.['uri'];
    const config = this.deps.registry.forTenant(live.record.tenantId).byId.get(upstreamId);
    if (typeof uri !== 'string' || config === undefined) return false;
    try {
      return filter(live.record, 'resource', config, [{ uri }], false).length > 0;
    } catch (error) {
      this.deps.logger.warn({ upstream: config.name, tenantId: config.tenantId, reason: this.reasonOf(error) }, 'resource update not passed on: the listing filter failed');
      return false;
    }
  }

  /** The capabilities initialize advertised for the session (worked out from the record, remembered per record). */
  private capabilitiesOf(record: SessionRecord): Record<string, unknown> {
    let capabilities = this.advertised.get(record);
    if (capabilities === undefined) {
      capabilities = this.advertise(record, record.upstreams);
      this.advertised.set(record, capabilities);
    }
    return capabilities;
  }

  /** The merged capabilities of `upstreams` (the session's, by id), tasks only from those whose tasks can be routed. */
  private advertise(record: SessionRecord, upstreams: SessionRecord['upstreams']): Record<string, unknown> {
    const all: Readonly<Record<string, unknown>>[] = [];
    const taskUpstreams: Readonly<Record<string, unknown>>[] = [];
    for (const [upstreamId, upstream] of Object.entries(upstreams)) {
      // What initialize told the agent stays as it was: an upstream joined later serves within it.
      if (upstream.joined) continue;
      const capabilities = upstream.capabilities ?? {};
      all.push(capabilities);
      if (this.runsTasksOf(record, upstreamId)) taskUpstreams.push(capabilities);
    }
    const merged = mergeServerCapabilities(all, { taskUpstreams });
    if (record.openLists) {
      for (const area of LIST_AREAS) merged[area] = { ...(isObject(merged[area]) ? merged[area] : {}), listChanged: true };
      // An upstream that joins later may log: declared now, or its messages could never be passed on (`relayable`).
      merged['logging'] ??= {};
    }
    return merged;
  }

  /** Whether the session may use tasks at all: it speaks a version that has them, and their routes can be kept. */
  private tasksOffered(record: SessionRecord): boolean {
    return offersTasks(record.protocolVersion, this.deps.tasks !== undefined);
  }

  /**
   * Whether the session's tasks on this upstream can be routed: a Streamable HTTP upstream, whose upstream session
   * belongs to the agent's session alone and is reached the same from every replica. A stdio process (or a legacy SSE
   * connection) is one replica's, may serve several sessions, and starts numbering its tasks again when it restarts:
   * a task id recorded for it could later name another session's task (ADR 0008). There a task augmentation is
   * dropped and the call runs as a plain one.
   */
  private runsTasksOf(record: SessionRecord, upstreamId: string): boolean {
    return this.tasksOffered(record) && this.deps.registry.forTenant(record.tenantId).byId.get(upstreamId)?.transport === 'streamable_http';
  }

  /** Whether a task-augmented `tools/call` of the session goes to `upstreamId` as one (see the call site). */
  private takesToolTasks(record: SessionRecord, upstreamId: string): boolean {
    return (
      this.runsTasksOf(record, upstreamId) &&
      runsToolCallsAsTasks(record.upstreams[upstreamId]?.capabilities ?? {}) &&
      isObject(this.capabilitiesOf(record)['tasks'])
    );
  }

  /** A session-level message for the agent: on its standalone stream, which may be held by another replica (ADR 0007). */
  private toStandalone(live: LiveSession, notification: JsonRpcNotification): void {
    this.standaloneSink(live).send(notification);
  }

  /**
   * The agent's standalone stream as this replica reaches it: its own, else (replicas sharing a bus) whichever replica
   * holds one. Through the bus a message is only handed on: a relayed request then waits for that replica to confirm
   * it sent it (`remote`, `standalone-delivered`).
   */
  private standaloneSink(live: LiveSession): MessageSink {
    if (live.standalone) return live.standalone;
    const bus = this.deps.bus;
    // Nobody listens on any replica: nothing goes on the bus (an upstream logging for sessions nobody listens to loaded
    // Redis and every replica with each message).
    if (!bus || !this.mayListen(live)) return NO_STREAM;
    const sessionId = live.record.id;
    return {
      canStream: true,
      remote: true,
      send: (message) => {
        if (!('method' in message)) return false;
        try {
          bus.broadcast({ type: 'standalone', sessionId, message });
        } catch (error) {
          // Nested too deeply to serialise for the bus (as a local stream's write would fail): not sent.
          if (!isStackExhausted(error)) throw error;
          return false;
        }
        return true;
      },
    };
  }

  /** An upstream's notification for the agent's standalone stream, one about a task named for the agent. */
  /**
   * Settles once progress token `key` names a task of the session, no creation of a task on `upstreamId` is under way
   * here any more, or TASK_SCOPE_WAIT_MS passed: looked at again each time a creation ends (not only when all have:
   * re-review found a later message of the task relayed before an earlier one held that long).
   */
  private async tokenKnown(live: LiveSession, upstreamId: string, key: string): Promise<void> {
    const deadline = performance.now() + TASK_SCOPE_WAIT_MS;
    // Creations seen to end (each leaves the set a little after it settles): not waited for again.
    const ended = new Set<Promise<unknown>>();
    for (;;) {
      const waiting = [...(live.creatingTasks.get(upstreamId) ?? [])].filter((creation) => !ended.has(creation));
      const left = deadline - performance.now();
      if (live.taskProgress.has(key) || waiting.length === 0 || left <= 0) return;
      let timer: NodeJS.Timeout | undefined;
      const first = await Promise.race([
        ...waiting.map((creation) => creation.then(() => ({ creation }))),
        new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), left);
        }),
      ]);
      clearTimeout(timer);
      if (first !== undefined) ended.add(first.creation);
    }
  }

  private toSessionStream(live: LiveSession, upstreamId: string, received: JsonRpcNotification): void {
    if (!this.relayable(live, upstreamId, received)) return;
    // A task's progress (the only progress that goes here) past what a hook reported before the call became the task.
    const notification = received.method === 'notifications/progress' ? this.shiftedTaskProgress(live, upstreamId, received) : received;
    const upstreamTask = referencedTask(notification.method, notification.params);
    if (upstreamTask === undefined) {
      this.toStandalone(live, notification);
      return;
    }
    // Behind a message of the same task that waits for the task to be known, if there is one: the agent gets them in
    // the order the upstream sent them.
    const key = taskProgressKey(upstreamId, upstreamTask);
    const before = live.taskMessageChains.get(key);
    if (before !== undefined && live.heldTaskMessages >= MAX_HELD_TASK_MESSAGES) return;
    if (before !== undefined) live.heldTaskMessages += 1;
    const sent = (before ?? Promise.resolve())
      .then(async () => {
        if (before !== undefined) live.heldTaskMessages -= 1;
        const named =
          (await this.agentTaskMessage(live, upstreamId, notification, upstreamTask)) ??
          (before === undefined ? await this.unknownTaskMessage(live, upstreamId, notification, upstreamTask) : undefined);
        if (named) this.toStandalone(live, named);
      })
      .catch(() => undefined)
      .finally(() => {
        if (live.taskMessageChains.get(key) === sent) live.taskMessageChains.delete(key);
      });
    live.taskMessageChains.set(key, sent);
  }

  /**
   * A message about a task this session is not known to have, on an upstream session's own stream: the task may be the
   * one a call of the session is creating, whose answer has not come yet (the SDK's servers send a task's first status
   * as they create it). It waits for the session's calls creating tasks on that upstream (at most TASK_SCOPE_WAIT_MS),
   * or, with none here, a moment for one through another replica, and is looked up once more. Bounded per session.
   */
  private async unknownTaskMessage<M extends JsonRpcNotification>(live: LiveSession, upstreamId: string, message: M, upstreamTask: string): Promise<M | undefined> {
    if (this.deps.tasks === undefined || live.heldTaskMessages >= MAX_HELD_TASK_MESSAGES) return undefined;
    live.heldTaskMessages += 1;
    try {
      const creating = live.creatingTasks.get(upstreamId);
      const waited = creating !== undefined && creating.size > 0 ? Promise.allSettled([...creating]).then(() => undefined) : new Promise<undefined>((resolve) => void setTimeout(() => resolve(undefined), TASK_RELOOKUP_MS).unref());
      await withinMs(waited, TASK_SCOPE_WAIT_MS);
      if (this.live.get(live.record.id) !== live) return undefined;
      return await this.agentTaskMessage(live, upstreamId, message, upstreamTask);
    } finally {
      live.heldTaskMessages -= 1;
    }
  }

  /**
   * The hooks' refusal of a message `config`'s upstream sends the agent outside its calls (a policy that gives the
   * principal nothing on that upstream: it may not ask for the agent's roots, its model or its user, nor log to it),
   * undefined when it may go. A hook that fails keeps the message here.
   */
  private keptFromAgent(live: LiveSession, config: UpstreamConfig, method: string): GatewayRequestError | undefined {
    // Judged as the upstream is configured now, not as it was when its session opened: an edit that keeps the
    // connection (a rename) keeps the session too, and the policy names upstreams by name. One that left the tenant
    // has nothing more to say to the agent (its session is being retired).
    const now = this.deps.registry.forTenant(live.record.tenantId).byId.get(config.id);
    if (now === undefined) return new GatewayRequestError(GATEWAY_RPC.UPSTREAM_UNAVAILABLE, 'The upstream is no longer configured');
    const check = this.deps.hooks?.upstreamMessage;
    if (check === undefined) return undefined;
    try {
      check(live.record, sameConnection(now, config) ? now : config, method);
      return undefined;
    } catch (error) {
      if (error instanceof GatewayRequestError) {
        this.deps.logger.debug({ sessionIdPrefix: live.record.id.slice(0, 8), upstreamId: config.id, method, code: error.rpcCode }, 'upstream message not passed on: the upstream is not the client\'s to use');
        return error;
      }
      this.deps.logger.error({ err: error, sessionIdPrefix: live.record.id.slice(0, 8), upstreamId: config.id, method }, 'a hook failed on an upstream message; not passed on');
      return new GatewayRequestError(JSON_RPC.INTERNAL_ERROR, 'Internal error');
    }
  }

  /**
   * Forwards an upstream's session-level messages to the agent's standalone stream. `opened`: the upstream session
   * was just opened for the session (not resumed), see `EngineOptions.firstListenMs`.
   */
  private attach(live: LiveSession, config: UpstreamConfig, session: UpstreamSession, opened = false): UpstreamSession {
    session.onNotification((received) => {
      if (belowAgentLevel(live.record, received)) return;
      if (this.keptFromAgent(live, config, received.method) !== undefined) {
        // Still a changed list for the pages this session keeps of it (not told to the agent).
        if (isListChange(received.method)) this.listsChanged(live, config.id, received.method);
        return;
      }
      // Progress belongs to a request under way and comes with it (`forward`): on the session's own stream it is about
      // no call of this agent's (MCP: only tokens of active requests), and its token could match one of the agent's
      // calls to another upstream. A task's is the exception: its token holds for the task's lifetime.
      if (received.method === 'notifications/progress') {
        const key = taskProgressKey(config.id, received.params?.['progressToken']);
        const before = live.heldProgress.get(key);
        // A task this upstream is creating for the session here may be the one it is about (the upstream reports its
        // progress as soon as it answered the call, before the task's route is stored): it waits for its token to be
        // known, as long as creations are under way (TASK_SCOPE_WAIT_MS at most), bounded as other messages about tasks.
        // Before, it was dropped (found by review). Later progress under the same token waits behind it, in order.
        if (before === undefined && live.taskProgress.has(key)) {
          relayFromSession(received);
          return;
        }
        const creating = live.creatingTasks.get(config.id);
        if (before === undefined && (creating === undefined || creating.size === 0)) return;
        if (live.heldTaskMessages >= MAX_HELD_TASK_MESSAGES) return;
        live.heldTaskMessages += 1;
        const held = (before ?? this.tokenKnown(live, config.id, key)).then(() => {
          live.heldTaskMessages -= 1;
          if (live.taskProgress.has(key) && this.live.get(live.record.id) === live) relayFromSession(received);
        });
        live.heldProgress.set(key, held);
        void held.finally(() => {
          if (live.heldProgress.get(key) === held) live.heldProgress.delete(key);
        });
        return;
      }
      relayFromSession(received);
    });
    const relayFromSession = (received: JsonRpcNotification): void => {
      // An update of a resource the session is not subscribed to is dropped here, before it takes anything of the bound
      // (whether the principal may still see it, a policy decision, is asked only of what the bound lets through).
      if (!isListChange(received.method)) {
        if (received.method === 'notifications/resources/updated' && !this.subscribedTo(live, config.id, received.params)) return;
        if (!this.mayRelay(live, config.id, received)) return;
      }
      const notification = maskedRelay(config, received);
      // A changed list: the pages this upstream session answered are stale (all kinds: the cache is small). The agent is
      // told at most once an interval (`listsChanged`).
      if (isListChange(notification.method)) {
        this.listsChanged(live, config.id, notification.method, () => this.toSessionStream(live, config.id, notification));
        return;
      }
      this.toSessionStream(live, config.id, notification);
    };
    // An upstream's request made for no call of the agent's, or for a listing's page (`sink`: the listing's, `ended`:
    // aborted when the page request settles). A listing's goes on the listing's own stream while it can take it, else on
    // the session's, as a call's does, and ends with the page (cancelled there before the listing's answer); one several
    // requests may have asked (no `ended`) goes on the session's stream, as it may outlive the listing; to no one
    // once the listing's answer was withdrawn from the agent (its credential went). Before, it went on the session's
    // stream whatever became of the listing (the stream may be another key's of the agent client), and was refused
    // when the agent had no GET stream open.
    const relay = (received: JsonRpcRequest, signal: AbortSignal, sink?: MessageSink, ended?: CancelSignal): Promise<Record<string, unknown>> => {
      const refusal = this.keptFromAgent(live, config, received.method);
      if (refusal !== undefined) return Promise.reject(new UpstreamRpcError(refusal.rpcCode, `${received.method}: this server may not reach the client`));
      const request = maskedRelay(config, received);
      const upstreamTask = referencedTask(request.method, request.params);
      // On the listing's stream only when tied to its page (`ended`): one several requests may have asked outlives it.
      const target = sink?.withdrawn === true ? NO_STREAM : sink !== undefined && ended !== undefined && sink.canStream ? sink : this.standaloneSink(live);
      const bounds = { timeoutMs: this.relayTimeoutMs, ...(ended !== undefined && upstreamTask === undefined ? { ended } : {}), ...(upstreamTask !== undefined ? { upstreamTask } : {}) };
      if (upstreamTask === undefined) return this.relayServerRequest(live.record, request, target, signal, session, bounds);
      // Each costs a look-up of the task, bounded as messages about tasks are (`relayClass`).
      if (!this.mayRelay(live, config.id, request)) return Promise.reject(tooManyAboutTasks());
      return this.agentTaskMessage(live, config.id, request, upstreamTask).then((named) =>
        named ? this.relayServerRequest(live.record, named, target, signal, session, bounds) : Promise.reject(unknownTaskOf(request)),
      );
    };
    this.serverRequestRelays.set(session, relay);
    session.onServerRequest((received, signal) => relay(received, signal));
    // A session whose transport ended under it (a legacy SSE stream dropped) is forgotten here, so the next request
    // connects again instead of failing as unavailable until the agent starts a new session. A session this replica
    // released or replaced meanwhile is left alone.
    session.onClosed?.(() => {
      const current = live.upstreams.get(config.id)?.current === session;
      this.dropUpstream(live, config.id, session);
      if (current && this.mayReopen(live, config.id)) this.reopenForListener(live, config.id, 0);
    });
    // What the upstream sends outside requests is only wanted while the agent listens (`shouldListen`). A session
    // just opened also listens until the agent has had time to open its stream.
    if (session.listen !== undefined) {
      const firstMs = opened ? (this.deps.options.firstListenMs ?? FIRST_LISTEN_MS) : 0;
      if (firstMs > 0) this.listenFirst(live, firstMs);
      session.listen(this.shouldListen(live));
    }
    return session;
  }

  /** Upstream sessions of the session listen for at least `ms` from now (`firstListenMs`), whoever listens. */
  private listenFirst(live: LiveSession, ms: number): void {
    const until = Date.now() + ms;
    if (until <= live.firstListenUntil) return;
    live.firstListenUntil = until;
    if (live.firstListenTimer !== undefined) clearTimeout(live.firstListenTimer);
    live.firstListenTimer = setTimeout(() => {
      live.firstListenTimer = undefined;
      // Over, whatever the clock says (a timer may fire a millisecond before `Date.now()` reaches the end: the window
      // would then never close). A later window replaced this timer.
      live.firstListenUntil = 0;
      if (this.live.get(live.record.id) === live) this.updateListening(live);
    }, ms);
    live.firstListenTimer.unref();
  }

  /**
   * Stops the timers of a session leaving this replica: the first-listen one (it held the session 30 s past its end),
   * and those of list changes waiting to be told (`listsChanged`), which would tell them for a session gone from here.
   */
  private stopTimers(live: LiveSession): void {
    if (live.firstListenTimer !== undefined) clearTimeout(live.firstListenTimer);
    live.firstListenTimer = undefined;
    for (const notice of live.listNotices.values()) clearTimeout(notice.timer);
    live.listNotices.clear();
  }

  /**
   * The agent listens here: every upstream of the session listens from this replica, those it holds asked for their
   * streams again at once (one another replica held may be free now), those it does not hold opened (joined through
   * another replica, or let go here).
   */
  private listenAgain(live: LiveSession): void {
    for (const { current } of live.upstreams.values()) current?.listen?.(true);
    for (const upstreamId of Object.keys(live.record.upstreams)) {
      if (!live.upstreams.has(upstreamId)) void this.upstream(live, upstreamId, 'standalone').catch(() => undefined);
    }
  }

  /**
   * An upstream session of an agent that listens here (this replica holds its standalone stream) ended under it — the
   * upstream restarted — while the agent is subscribed to its resources or set a log level: a new one is opened now,
   * and told them, rather than at the agent's next request (an agent that only listens would hear nothing until then).
   * Tried a few times, a little later each time (the upstream may still be starting), while the agent listens.
   */
  /**
   * At most REOPEN_ATTEMPTS rounds of reopening an upstream a minute per session: an upstream that refuses every session
   * (404 at once) is not reopened in a loop; the agent's next request still tries.
   */
  private mayReopen(live: LiveSession, upstreamId: string): boolean {
    const now = Date.now();
    const recent = (live.reopened.get(upstreamId) ?? []).filter((at) => now - at < 60_000);
    if (recent.length >= REOPEN_ATTEMPTS) return false;
    recent.push(now);
    live.reopened.set(upstreamId, recent);
    return true;
  }

  private reopenForListener(live: LiveSession, upstreamId: string, attempt: number): void {
    if (attempt >= REOPEN_ATTEMPTS) return;
    const timer = setTimeout(() => {
      if (this.live.get(live.record.id) !== live || live.standalone === undefined || live.upstreams.has(upstreamId)) return;
      void this.deps.sessions
        .get(live.record.id)
        .then((record) => {
          if (record === undefined || ((record.subscriptions?.[upstreamId]?.length ?? 0) === 0 && record.logLevel === undefined)) return;
          return this.upstream(live, upstreamId, 'upstream-reopen').then(
            () => undefined,
            () => this.reopenForListener(live, upstreamId, attempt + 1),
          );
        })
        .catch(() => undefined);
    }, REOPEN_FIRST_DELAY_MS * 2 ** attempt);
    timer.unref();
  }

  // ---------------------------------------------------------------- bookkeeping

  private newLive(record: SessionRecord): LiveSession {
    // Routes the replica's budget took for another session's: a URI no route knows is walked for again, not refused
    // (or sent to a template) within ROUTE_RELEARN_MS of the last walk (found by re-review).
    const taken = (): void => {
      live.routesWalkedAt = undefined;
    };
    const live: LiveSession = {
      record,
      upstreams: new Map(),
      resourceRoutes: new RouteTable(MAX_RESOURCE_ROUTES, MAX_RESOURCE_ROUTE_CHARS, this.routeBudget, taken),
      templateRoutes: new RouteTable(MAX_TEMPLATE_ROUTES, MAX_TEMPLATE_ROUTE_CHARS, this.routeBudget, taken),
      sought: new Map(),
      learningRoutes: undefined,
      routesGeneration: 0,
      routesWalkedAt: undefined,
      standalone: undefined,
      standaloneToken: undefined,
      firstListenUntil: 0,
      firstListenTimer: undefined,
      forgottenUpstreams: new Map(),
      renewedAt: new Map(),
      rootsNotice: undefined,
      rootsNoticeShared: false,
      listNotices: new Map(),
      lostUpstreams: new Set(),
      inflight: new Map(),
      subscribing: [],
      unrecorded: new Map(),
      rechecking: new Set(),
      principalKey: ownerKey(record.tenantId, record.principalKind, record.principalId),
      announcedBack: new Set(),
      relayed: new Set(),
      taskSlots: new Map(),
      taskProgress: new Map(),
      endedTaskProgress: new Map(),
      taskProgressShift: new Map(),
      heldProgress: new Map(),
      creatingTasks: new Map(),
      taskMessageChains: new Map(),
      heldTaskMessages: 0,
      relayAllowances: new Map(),
      toldLevel: record.logLevel,
      announcedTaskEnds: new Set(),
      reopened: new Map(),
      joinTriedAt: new Map(),
      joining: new Map(),
      adoptedAt: Number.NEGATIVE_INFINITY,
      adopting: undefined,
      lastUsed: Date.now(),
    };
    return live;
  }

  private liveFor(record: SessionRecord): LiveSession {
    let live = this.live.get(record.id);
    if (!live) {
      live = this.newLive(record);
      this.live.set(record.id, live);
    }
    live.lastUsed = Date.now();
    return live;
  }

  /** Local state only: Streamable HTTP upstream sessions stay open for other replicas; per-replica ones close. */
  private release(live: LiveSession): void {
    this.sayFoldedListChanges(live);
    this.stopTimers(live);
    this.dropPages(live);
    for (const controller of live.inflight.values()) controller.abort(cancelledBecause('session released'));
    this.dropRelayed(live);
    for (const { config, session } of live.upstreams.values()) this.retire(config, session);
    // Their streams may have been the upstreams' one (relayed over the bus): the agent's replica asks for them now.
    const listened = live.standalone === undefined && this.listeners.listens(live.record.id, Date.now()) && [...live.upstreams.values()].some((entry) => entry.current?.listen !== undefined);
    if (listened) this.deps.bus?.broadcast({ type: 'upstreams-released', sessionId: live.record.id });
  }

  /**
   * Ends an upstream session on this replica. A Streamable HTTP session stays open upstream (the agent's session may
   * come back, here or elsewhere, and resume it), but its standalone stream and handlers here go: left, they held a
   * socket per idle session and forwarded notifications to a live session that no longer exists. The others cannot be
   * resumed: closed.
   */
  /**
   * Lets go of an upstream session. A Streamable HTTP one is shared by the replicas, so it is only dropped here, unless
   * `ended`: the upstream now connects elsewhere or with other credentials, as the registry knows it (not a replica's own
   * trouble), so the session under the old configuration is of no use to any replica and is ended (DELETE) at the old
   * server, with the old credentials. Before, the old server kept it until its own idle timeout (found by review).
   */
  private retire(config: UpstreamConfig, session: Promise<UpstreamSession>, ended = false): void {
    if (config.transport === 'streamable_http' && !ended) void session.then((s) => s.dispose?.()).catch(() => undefined);
    else void session.then((s) => s.close()).catch(() => undefined);
  }

  /**
   * Holds a call's concurrency slots for the task it became (see `LiveSession.taskSlots`) for at most `ms`; a task id
   * handed out again (an upstream that answered two calls with one task) holds both calls' slots until it ends. A session
   * that ends (or ended meanwhile) does not give them back: nothing cancels its tasks upstream, which may run on, so
   * each slot goes back when its task is seen to end or at its deadline, as a cancelled call's does (`releaseAfter`).
   * Else an agent could start a task and end its session, again and again, and run any number at once.
   */
  private holdSlotsForTask(live: LiveSession, agentTaskId: string, release: () => void, ms: number): void {
    if (this.ended.has(live.record.id) || this.live.get(live.record.id) !== live) {
      setTimeout(release, ms).unref();
      return;
    }
    const earlier = live.taskSlots.get(agentTaskId);
    const timer = setTimeout(() => this.endTaskSlots(live, agentTaskId, true, false), ms);
    timer.unref();
    live.taskSlots.set(agentTaskId, () => {
      clearTimeout(timer);
      release();
      earlier?.();
    });
  }

  /**
   * The task was seen to end: its slots go back. Held by another replica (the call ran there), they are announced on
   * the bus, once per task and replica (an agent polling an ended task would otherwise announce it on every poll).
   */
  private endTaskSlots(live: LiveSession, agentTaskId: string, announce = true, seenToEnd = true): void {
    // Its progress token is done with once the task is (not when only its slots' lease ran out: it may run on).
    if (seenToEnd && live.taskProgress.size > 0) {
      for (const [key, task] of live.taskProgress) {
        if (task !== agentTaskId) continue;
        live.taskProgress.delete(key);
        // Kept for `tasks/result`, which may bring progress the upstream queued (re-review: dropped once a poll saw the end).
        if (live.endedTaskProgress.size >= MAX_TRACKED_TASK_PROGRESS) evictOldest(live.endedTaskProgress);
        live.endedTaskProgress.set(key, task);
      }
    }
    const release = live.taskSlots.get(agentTaskId);
    if (release !== undefined) {
      live.taskSlots.delete(agentTaskId);
      release();
    }
    if (!announce || this.deps.bus === undefined || live.announcedTaskEnds.has(agentTaskId)) return;
    if (live.announcedTaskEnds.size >= MAX_ANNOUNCED_TASK_ENDS) live.announcedTaskEnds.clear();
    // Seen to end here: nothing more to do for it, whoever polls it again.
    live.announcedTaskEnds.add(agentTaskId);
    if (release === undefined) this.deps.bus.broadcast({ type: 'task-ended', sessionId: live.record.id, taskId: agentTaskId });
  }

  /** Requests relayed to the agent wait no more: their answer could only come through this session, here. */
  private dropRelayed(live: LiveSession): void {
    for (const id of [...live.relayed]) {
      const waiting = this.pending.get(id);
      this.pending.delete(id);
      waiting?.reject(new UpstreamRpcError(JSON_RPC.INTERNAL_ERROR, 'The client session ended'));
    }
    live.relayed.clear();
  }

  /** The session's state leaves this replica: so do its cached listing pages, and the routes learned from them. */
  private dropPages(live: LiveSession): void {
    for (const upstream of live.upstreams.values()) upstream.pages.clear();
    live.resourceRoutes.clear();
    live.templateRoutes.clear();
  }

  private sweep(): void {
    if (this.sweeping) return;
    this.sweeping = true;
    void this.sweepNow()
      .catch((error: unknown) => this.deps.logger.warn({ err: error }, 'session sweep failed'))
      .finally(() => {
        this.sweeping = false;
      });
  }

  /**
   * Periodic, on every replica: sessions whose Redis record is gone (idle expiry) have their upstream
   * sessions closed — DELETE to Streamable HTTP upstreams, stdio and SSE sessions released — and their
   * streams ended; sessions merely idle on this replica drop their local state. Redis unreachable: nothing
   * is treated as expired.
   */
  async sweepNow(): Promise<void> {
    // A session with requests in flight is in use however long they run: its record is kept from expiring (the store
    // refreshes the TTL on a lookup), so a long call is not aborted as idle. So is one whose agent listens on a stream
    // (the standalone GET stream, a legacy session's stream): it waits for notifications (a subscribed resource's
    // updates, list changes, an upstream's sampling request), and expiring under it would drop its subscriptions. The
    // stream was opened by the record's own principal, and a revoked key closes it; the sessions a principal holds are
    // bounded. Not a stream whose agent has gone (kept a while for a reconnect): nobody listens there. Nor one with an
    // upstream's request relayed to the agent and not answered yet (a user deciding, perhaps through another replica's
    // stream while this one sees nothing of the session): letting it go would fail that request although the session
    // lives on. Each such request is bounded by its own timeout.
    const inUse = (live: LiveSession): boolean => live.inflight.size > 0 || live.relayed.size > 0;
    const busy = [...this.live.values()].filter((live) => inUse(live) || (live.standalone !== undefined && live.standalone.away !== true));
    await Promise.all(busy.map((live) => this.deps.sessions.get(live.record.id).catch(() => undefined)));
    const checked = [...this.live.keys(), ...this.released.keys()];
    const existing = this.deps.sessions.existing;
    const alive = existing && checked.length > 0 ? await existing.call(this.deps.sessions, checked).catch(() => undefined) : undefined;
    // Only ids that were asked about: a session created meanwhile is not in `alive` but is not expired.
    const checkedSet = new Set(checked);
    const expired = (id: string): boolean => alive !== undefined && !alive.has(id) && checkedSet.has(id);
    const now = Date.now();
    const cutoff = now - this.deps.options.localIdleMs;
    const cacheMs = this.deps.options.listCacheMs ?? 0;
    for (const [id, live] of this.live) {
      if (expired(id)) {
        this.live.delete(id);
        void this.expire(live.record, live);
      } else if (live.lastUsed < cutoff && !inUse(live) && live.standalone === undefined) {
        this.live.delete(id);
        this.release(live);
        if (existing && Object.values(live.record.upstreams).some((state) => state.sessionId !== null)) this.remember(live.record);
      }
    }
    if (cacheMs > 0) this.pageStore.prune(cacheMs, now);
    // Upstreams back from an outage join the sessions listening here.
    this.joinMissingUpstreams();
    // In insertion order, so oldest first: stop at the first one still remembered.
    for (const [id, at] of this.ended) {
      if (now - at < ENDED_MEMORY_MS) break;
      this.ended.delete(id);
    }
    for (const [id, record] of this.released) {
      if (!expired(id)) continue;
      this.released.delete(id);
      void this.expire(record, undefined);
    }
  }

  private markEnded(sessionId: string): void {
    if (this.ended.size >= MAX_ENDED_REMEMBERED) {
      const oldest = this.ended.keys().next();
      if (!oldest.done) this.ended.delete(oldest.value);
    }
    this.ended.delete(sessionId);
    this.ended.set(sessionId, Date.now());
  }

  private remember(record: SessionRecord): void {
    if (this.released.size >= 100_000) {
      const oldest = this.released.keys().next();
      if (!oldest.done) this.released.delete(oldest.value);
    }
    this.released.set(record.id, record);
  }

  /** Closes what an expired session opened upstream (whatever this replica can still reach). */
  private async expire(record: SessionRecord, live: LiveSession | undefined): Promise<void> {
    // Ended here as on DELETE: what is still under way for it (a task's route being stored) is undone when it lands
    // (re-review: a route stored during the expiry stayed).
    this.markEnded(record.id);
    this.deps.sessions.forget?.(record.id);
    if (live) {
      this.dropPages(live);
      this.stopTimers(live);
      this.dropRelayed(live);
      for (const controller of live.inflight.values()) controller.abort(cancelledBecause('session expired'));
      live.standalone?.close?.();
      live.standalone = undefined;
    }
    // Its tasks' routes go as on DELETE: nothing can reach them any more (found by review: they stayed in Redis until
    // each task's own lifetime ran out, counted against the store).
    const tasks = this.deps.tasks?.delete(record.id).catch(() => undefined);
    const settled = await this.closeUpstreams(record, live);
    await tasks;
    this.deps.logger.info(
      { sessionIdPrefix: record.id.slice(0, 8), tenantId: record.tenantId, upstreams: settled.length, failed: settled.filter((s) => s.status === 'rejected').length },
      'session expired: its upstream sessions were closed',
    );
  }

  /**
   * Ends a session's upstream sessions: those this replica holds, and Streamable HTTP ones (DELETE) it does not hold,
   * since only those outlive a replica's local state. Stdio and legacy SSE upstream sessions held elsewhere end where
   * they are held (the `session-ended` notice); here they would be opened (a process spawned, a stream and an
   * initialize) only to be closed again.
   */
  private closeUpstreams(record: SessionRecord, live: LiveSession | undefined): Promise<PromiseSettledResult<unknown>[]> {
    const identity = identityOf(record);
    const upstreams = this.deps.registry.forTenant(record.tenantId).byId;
    return Promise.allSettled(
      Object.entries(record.upstreams).map(async ([upstreamId, state]) => {
        const held = live?.upstreams.get(upstreamId);
        const closing: Promise<unknown>[] = [];
        if (held) closing.push(held.session.then((session) => session.close()));
        // The record may name a newer Streamable HTTP session than the one held here (another replica renewed it):
        // that one is ended too, or the upstream keeps it until its own expiry.
        const config = upstreams.get(upstreamId);
        const heldId = held?.current?.state().sessionId;
        // Not one opened at another URL than the upstream's now: the old server's session id must not go to the new one
        // (that session lapses at its server).
        if (
          config?.transport === 'streamable_http' &&
          state.sessionId !== null &&
          !sessionElsewhere(state, config) &&
          (held === undefined || (heldId !== undefined && heldId !== state.sessionId))
        ) {
          const sessionId = state.sessionId;
          closing.push(this.deps.connector.resume(config, identity, { ...resumeState(state), sessionId }).then((session) => session.close()));
        }
        const outcomes = await Promise.allSettled(closing);
        const failed = outcomes.find((outcome) => outcome.status === 'rejected');
        if (failed) throw failed.reason;
      }),
    );
  }

  /** A failure as a short code for logs (no message: an upstream's text may carry anything). */
  private reasonOf(error: unknown): string {
    if (error instanceof UpstreamUnavailableError) return error.reason;
    if (error instanceof UpstreamRpcError) return `rpc_${error.code}`;
    return error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError') ? 'timeout' : 'error';
  }

  private logUpstreamFailure(config: UpstreamConfig, operation: string, error: unknown, traceId: string): void {
    const reason =
      error instanceof UpstreamUnavailableError
        ? error.reason
        : error instanceof UpstreamRpcError
          ? `rpc_${error.code}`
          : error instanceof DOMException && error.name === 'TimeoutError'
            ? 'timeout'
            : 'error';
    // An upstream's own error text comes with its configured secrets masked already (maskUpstreamError); anything else
    // that looks like a credential goes too, and the text is cut (it is the upstream's to make as long as it likes).
    const detail = error instanceof Error ? (redactSecrets(error.message.slice(0, MAX_LOGGED_DETAIL)) as string) : undefined;
    this.deps.logger.warn(
      { upstream: config.name, upstreamId: config.id, tenantId: config.tenantId, operation, reason, traceId, detail },
      'upstream dropped out of the request',
    );
  }

  private errorFor(id: JsonRpcId, error: unknown, traceId: string): JsonRpcResponse {
    if (error instanceof GatewayRequestError) return rpcError(id, error.rpcCode, error.message, traceId, error.data);
    if (error instanceof UpstreamRpcError) {
      // The upstream's data as it wrote it; the gateway's trace id beside it, unless the upstream gave its own.
      const data = isObject(error.data) ? (Object.hasOwn(error.data, 'traceId') ? error.data : { ...error.data, traceId }) : error.data === undefined ? { traceId } : error.data;
      return { jsonrpc: '2.0', id, error: { code: error.code, message: error.message, data } };
    }
    if (error instanceof UpstreamUnavailableError) {
      return error.reason === 'timeout'
        ? rpcError(id, GATEWAY_RPC.UPSTREAM_TIMEOUT, 'The upstream timed out', traceId)
        : rpcError(id, GATEWAY_RPC.UPSTREAM_UNAVAILABLE, 'The upstream is unavailable', traceId);
    }
    if (error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError')) {
      return rpcError(id, GATEWAY_RPC.UPSTREAM_TIMEOUT, 'The request was cancelled or timed out', traceId);
    }
    if (isStackExhausted(error)) {
      // JSON.parse takes any depth; serialising the params for the upstream (or a hook walking them) recurses and runs
      // out of stack. Answered as the caller's input, but logged: a recursion fault of ours would look the same.
      this.deps.logger.warn({ traceId }, 'request nested too deeply to handle (stack exhausted); answered -32602');
      return rpcError(id, JSON_RPC.INVALID_PARAMS, 'Invalid params: nested too deeply', traceId);
    }
    const errorId = randomBytes(8).toString('hex');
    this.deps.logger.error({ err: error, traceId, errorId }, 'unexpected error while handling a request');
    return rpcError(id, JSON_RPC.INTERNAL_ERROR, 'Internal error', traceId, { errorId });
  }
}
