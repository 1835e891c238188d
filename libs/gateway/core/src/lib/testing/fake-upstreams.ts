import { afterEach } from 'vitest';
import type {
  JsonRpcNotification,
  JsonRpcRequest,
  RecordEdit,
  SessionRecord,
  SessionStore,
  UpstreamConfig,
  UpstreamConnector,
  UpstreamRequestOptions,
  UpstreamSession,
} from '@portcullis/gateway/mcp';
import { endpointOf, UpstreamUnavailableError } from '@portcullis/gateway/mcp';
import type { EngineOptions } from '../dispatch/session-engine';

/** Spec helper: the engine options specs start from (`{ ...SPEC_ENGINE_OPTIONS, listCacheMs: 1_000 }`). */
export const SPEC_ENGINE_OPTIONS = {
  separator: '__',
  listTimeoutMs: 100,
  serverInfo: { name: 'portcullis', version: 'spec' },
  localIdleMs: 60_000,
  replicaId: 'r1',
} as const satisfies EngineOptions;

/** What an engine session answers an upstream's request with. */
type ServerRequestHandler = (request: JsonRpcRequest, signal: AbortSignal) => Promise<Record<string, unknown>>;

/** Spec helper: an upstream answering from a table of handlers, in memory. */
export interface FakeUpstream {
  readonly capabilities: Record<string, unknown>;
  /** What its initialize answer says as `instructions`. */
  readonly instructions?: string;
  readonly handle: (method: string, params: Record<string, unknown> | undefined, options?: UpstreamRequestOptions) => Promise<Record<string, unknown>>;
}

export function fakeConfig(id: string, toolPrefix: string, tenantId = 't1'): UpstreamConfig {
  return {
    id,
    tenantId,
    name: toolPrefix,
    toolPrefix,
    transport: 'streamable_http',
    url: `http://internal-${id}.example/mcp`,
    headers: {},
    command: null,
    args: [],
    env: {},
    connectTimeoutMs: 1_000,
    callTimeoutMs: 1_000,
    version: 1,
  };
}

export class FakeConnector implements UpstreamConnector {
  /** Requests the engine sent to upstreams, and the upstream session each went on. */
  readonly calls: { upstreamId: string; method: string; params: unknown; sessionId: string }[] = [];
  /** Notifications the engine sent to upstreams. */
  readonly notified: { upstreamId: string; method: string; params: unknown }[] = [];
  /** Session-level notification handlers the engine registered, per upstream id (newest last). */
  readonly notificationHandlers = new Map<string, ((notification: JsonRpcNotification) => void)[]>();
  /** Upstream sessions ended (`close`) and dropped locally (`dispose`), by upstream id, in order. */
  readonly ended: { readonly upstreamId: string; readonly how: 'close' | 'dispose' }[] = [];
  /** The upstream session ids ended with `close`, in order. */
  readonly closedSessions: string[] = [];
  /** Sessions opened (`connect`) or resumed, by upstream id, in order. */
  readonly opened: { readonly upstreamId: string; readonly how: 'connect' | 'resume' }[] = [];
  /** The `onClosed` handlers of the sessions handed out, per upstream id (newest last). */
  readonly closedHandlers = new Map<string, (() => void)[]>();
  /**
   * Upstreams whose sessions have no id to resume (legacy SSE, stdio): `state()` names none, and a resume opens a new
   * upstream session, as the real connector does.
   */
  readonly unresumable = new Set<string>();
  /** Milliseconds a connect or resume of an upstream takes (a slow handshake, a process starting). */
  readonly openDelayMs = new Map<string, number>();
  /** Upstreams that cannot be reached: a connect or resume of one fails (after its `openDelayMs`). */
  readonly down = new Set<string>();
  /**
   * Upstreams whose sessions hold a stream only for messages outside requests, as a Streamable HTTP one's GET: they
   * implement `listen`, and each change it makes is logged in `listens` (`session` counts the sessions handed out,
   * from 1; a call that changes nothing is not logged, as it does nothing to a real session).
   */
  readonly listenable = new Set<string>();
  readonly listens: { readonly upstreamId: string; readonly session: number; readonly on: boolean }[] = [];
  private handedOut = 0;
  constructor(private readonly upstreams: Readonly<Record<string, FakeUpstream>>) {}

  private async opening(upstreamId: string): Promise<void> {
    const delay = this.openDelayMs.get(upstreamId) ?? 0;
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    if (this.down.has(upstreamId)) throw new UpstreamUnavailableError('connect_failed', 'connection refused');
  }

  /** Upstream sessions started per upstream (each connect starts one; a resume continues the one it names). */
  private readonly started = new Map<string, number>();

  private session(config: UpstreamConfig, resumed?: string | null): UpstreamSession {
    const upstream = this.upstreams[config.id];
    if (!upstream) throw new Error('unknown fake upstream');
    let sessionId = this.unresumable.has(config.id) ? null : (resumed ?? null);
    if (sessionId === null) {
      const count = (this.started.get(config.id) ?? 0) + 1;
      this.started.set(config.id, count);
      sessionId = count === 1 ? `upstream-session-${config.id}` : `upstream-session-${config.id}-${count}`;
    }
    // As a real Streamable HTTP session's: where it was opened, so that a repointed upstream is told apart.
    const endpoint = endpointOf(config);
    const handedOut = ++this.handedOut;
    let listening = false;
    const listen = this.listenable.has(config.id)
      ? {
          listen: (on: boolean) => {
            if (on !== listening) this.listens.push({ upstreamId: config.id, session: handedOut, on });
            listening = on;
          },
        }
      : {};
    return {
      ...listen,
      upstreamId: config.id,
      info: { protocolVersion: '2025-11-25', serverInfo: { name: config.name, version: '1' }, capabilities: upstream.capabilities, ...(upstream.instructions === undefined ? {} : { instructions: upstream.instructions }) },
      state: () => ({ sessionId: this.unresumable.has(config.id) ? null : sessionId, protocolVersion: '2025-11-25', ...(endpoint === undefined ? {} : { endpoint }) }),
      request: (method, params, options) => {
        this.calls.push({ upstreamId: config.id, method, params, sessionId });
        return upstream.handle(method, params, options);
      },
      notify: async (method, params) => void this.notified.push({ upstreamId: config.id, method, params }),
      onNotification: (handler: (notification: JsonRpcNotification) => void) => {
        const handlers = this.notificationHandlers.get(config.id) ?? [];
        handlers.push(handler);
        this.notificationHandlers.set(config.id, handlers);
      },
      onServerRequest: (handler: ServerRequestHandler) => {
        const handlers = this.serverRequestHandlers.get(config.id) ?? [];
        handlers.push(handler);
        this.serverRequestHandlers.set(config.id, handlers);
      },
      close: async () => {
        this.ended.push({ upstreamId: config.id, how: 'close' });
        this.closedSessions.push(sessionId);
      },
      dispose: () => void this.ended.push({ upstreamId: config.id, how: 'dispose' }),
      onClosed: (handler: () => void) => {
        const handlers = this.closedHandlers.get(config.id) ?? [];
        handlers.push(handler);
        this.closedHandlers.set(config.id, handlers);
      },
    };
  }

  /** Plays the newest session of an upstream ending by itself (its transport broke). */
  breakSession(upstreamId: string): void {
    this.closedHandlers.get(upstreamId)?.at(-1)?.();
  }

  private readonly serverRequestHandlers = new Map<string, ServerRequestHandler[]>();

  /**
   * Plays a session-level request from an upstream (outside any call) to the engine session attached last, or first
   * (`from: 'first'`: with two replicas, the one that opened the session, whatever the other attached since).
   */
  ask(upstreamId: string, request: JsonRpcRequest, from: 'first' | 'last' = 'last'): Promise<Record<string, unknown>> {
    const handler = this.serverRequestHandlers.get(upstreamId)?.at(from === 'first' ? 0 : -1);
    if (handler === undefined) return Promise.reject(new Error('no engine session is attached to this upstream'));
    return handler(request, new AbortController().signal);
  }

  /**
   * Plays a session-level notification from an upstream to every engine session attached to it, or only to the first
   * (`from: 'first'`: with two replicas, the one that opened the session).
   */
  emit(upstreamId: string, notification: JsonRpcNotification, from: 'first' | 'all' = 'all'): void {
    const handlers = this.notificationHandlers.get(upstreamId) ?? [];
    for (const handler of from === 'first' ? handlers.slice(0, 1) : handlers) handler(notification);
  }

  async connect(config: UpstreamConfig): Promise<UpstreamSession> {
    this.opened.push({ upstreamId: config.id, how: 'connect' });
    await this.opening(config.id);
    return this.session(config);
  }
  async resume(config: UpstreamConfig, _identity: unknown, state: { readonly sessionId: string | null }): Promise<UpstreamSession> {
    this.opened.push({ upstreamId: config.id, how: 'resume' });
    await this.opening(config.id);
    return this.session(config, state.sessionId);
  }
  async shutdown(): Promise<void> {
    return undefined;
  }
}

export class MemorySessionStore implements SessionStore {
  readonly records = new Map<string, SessionRecord>();
  async create(record: SessionRecord) {
    this.records.set(record.id, record);
    this.reserved.delete(record.id);
  }
  async get(id: string) {
    return this.records.get(id);
  }
  async update(record: SessionRecord) {
    this.records.set(record.id, record);
  }
  async delete(id: string) {
    const record = this.records.get(id);
    this.records.delete(id);
    return record;
  }
  /** As the Redis store's: which of `ids` still have a record (the engine's sweep expires the others). */
  async existing(ids: readonly string[]) {
    return new Set(ids.filter((id) => this.records.has(id)));
  }
  async reload(id: string) {
    return this.records.get(id);
  }
  /** Places taken by `reserve` for sessions not created yet, by id. */
  readonly reserved = new Map<string, Pick<SessionRecord, 'tenantId' | 'principalKind' | 'principalId'>>();
  /** As the Redis store's: the sessions of one principal (records here never expire), places reserved included. */
  async heldBy(owner: Pick<SessionRecord, 'tenantId' | 'principalKind' | 'principalId'>) {
    return this.held(owner);
  }
  private held(owner: Pick<SessionRecord, 'tenantId' | 'principalKind' | 'principalId'>) {
    const same = (r: Pick<SessionRecord, 'tenantId' | 'principalKind' | 'principalId'>) => r.tenantId === owner.tenantId && r.principalKind === owner.principalKind && r.principalId === owner.principalId;
    return [...this.records.values()].filter(same).length + [...this.reserved.entries()].filter(([id, r]) => !this.records.has(id) && same(r)).length;
  }
  /** As the Redis store's: counted and taken in one step (nothing runs in between here either). */
  async reserve(owner: Pick<SessionRecord, 'tenantId' | 'principalKind' | 'principalId'>, id: string, max: number) {
    if (this.held(owner) >= max) return false;
    this.reserved.set(id, owner);
    return true;
  }
  async release(_owner: unknown, id: string) {
    this.reserved.delete(id);
  }
  /** As the Redis store's: the ids of a tenant's sessions (of one principal, if named). */
  async sessionsOf(tenantId: string, principal?: Pick<SessionRecord, 'principalKind' | 'principalId'>) {
    return [...this.records.values()]
      .filter((r) => r.tenantId === tenantId && (principal === undefined || (r.principalKind === principal.principalKind && r.principalId === principal.principalId)))
      .map((r) => r.id);
  }
  /** As the Redis store's: every principal holding sessions. */
  async owners() {
    const owners = new Map<string, Pick<SessionRecord, 'tenantId' | 'principalKind' | 'principalId'>>();
    for (const { tenantId, principalKind, principalId } of this.records.values()) owners.set(`${tenantId}:${principalKind}:${principalId}`, { tenantId, principalKind, principalId });
    return [...owners.values()];
  }
  /** As the Redis store's: compare-and-set of one upstream's state (through `change`). */
  async swapUpstream(id: string, upstreamId: string, expected: string, next: SessionRecord['upstreams'][string]) {
    const { changed, record } = await this.change(id, (stored) =>
      stored.upstreams[upstreamId]?.sessionId === expected ? { ...stored, upstreams: { ...stored.upstreams, [upstreamId]: next } } : undefined,
    );
    return { swapped: changed, record };
  }
  /** As the Redis store's: `edit` applied to the record as stored (nothing else can write in between here). */
  async change(id: string, edit: RecordEdit) {
    const record = this.records.get(id);
    const updated = record === undefined ? undefined : edit(record);
    if (updated === undefined) return { changed: false, record };
    this.records.set(id, updated);
    return { changed: true, record: updated };
  }
}

/** Spec helper: a list for the engines a spec file makes, each shut down after every test. Call once, at the top. */
export function shutDownAfterEach<E extends { shutdown(): Promise<void> }>(): E[] {
  const engines: E[] = [];
  afterEach(async () => {
    await Promise.all(engines.splice(0).map((engine) => engine.shutdown()));
  });
  return engines;
}

/** Spec helper: makes JSON-RPC requests with ids counting up from 1 (one counter a call). */
export function requestMaker(): (method: string, params?: Record<string, unknown>) => JsonRpcRequest {
  let nextId = 1;
  return (method, params) => ({ jsonrpc: '2.0', id: nextId++, method, ...(params ? { params } : {}) });
}
