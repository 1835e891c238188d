import type {
  ClientIdentity,
  JsonRpcNotification,
  JsonRpcRequest,
  UpstreamConfig,
  UpstreamRequestOptions,
  UpstreamServerInfo,
  UpstreamSession,
  UpstreamSessionState,
} from '@portcullis/gateway/mcp';
import type { DisposableSession, NotificationHandler, SessionContext } from '../core/session-base';
import { errors, type ServerRequestHandler } from '../core/wire';
import { compatibilityOf, StdioProcess, type StdioOptions, type StdioOwner } from './stdio-process';

/**
 * The processes of one stdio upstream on this replica (at most `maxProcesses`). A process is initialised once, for the
 * first session's agent (its protocol version and the client features relayed for it), so a new session goes to an
 * idle process made for an agent like its own, else to a new process while the bound allows; at the bound, to the
 * least-used process made for an agent like its own unless that one has more than twice the sessions of the least-used
 * process (plus one), which it then shares whatever it was made for (what that server asks that this agent cannot
 * answer is refused, and results are adapted to its version).
 */
export class StdioPool {
  readonly processes: StdioProcess[] = [];
  /** Set by `retire`: told when the last process is gone. */
  private onEmpty: (() => void) | undefined;

  constructor(
    private ctx: SessionContext,
    private readonly options: StdioOptions,
    private readonly maxProcesses: number,
  ) {}

  get version(): number {
    return this.ctx.config.version;
  }

  /** The configuration the pool serves now. */
  get config(): UpstreamConfig {
    return this.ctx.config;
  }

  /**
   * A newer configuration that starts processes the same way (`sameConnection`): the running processes go on serving
   * it, and processes and sessions made from now on take its settings (timeouts) and its circuit breaker.
   */
  keepFor(ctx: SessionContext): void {
    if (ctx.config.version <= this.ctx.config.version) return;
    this.ctx = ctx;
    for (const process of this.processes) process.adopt(ctx);
  }

  async connect(identity: ClientIdentity): Promise<StdioSession> {
    const process = this.pick(identity);
    const session = new StdioSession(process, this.ctx, identity.principal);
    process.owners.add(session);
    try {
      await process.ensureReady();
    } catch (error) {
      session.dispose();
      throw error;
    }
    return session;
  }

  /**
   * The configuration changed: processes stop once their sessions are gone; new sessions go elsewhere. `onEmpty` is
   * called when the last process is gone (at once if there is none), so that whoever keeps the pool for its shutdown
   * can let it go.
   */
  retire(onEmpty: () => void): void {
    if (this.processes.length === 0) {
      onEmpty();
      return;
    }
    this.onEmpty = onEmpty;
    for (const process of [...this.processes]) {
      process.retired = true;
      if (process.owners.size === 0) void process.stop('configuration changed');
    }
  }

  async shutdown(): Promise<void> {
    await Promise.all(this.processes.map((process) => process.shutdown()));
    this.processes.length = 0;
  }

  private pick(identity: ClientIdentity): StdioProcess {
    const alike = compatibilityOf(identity);
    let least: StdioProcess | undefined;
    let leastAlike: StdioProcess | undefined;
    for (const process of this.processes) {
      if (process.retired) continue;
      if (least === undefined || process.owners.size < least.owners.size) least = process;
      if (process.compatibility === alike && (leastAlike === undefined || process.owners.size < leastAlike.owners.size)) leastAlike = process;
    }
    const atBound = this.processes.length >= this.maxProcesses;
    if (leastAlike !== undefined && leastAlike.owners.size === 0) return leastAlike;
    if (least !== undefined && atBound) {
      // At the bound, one alike unless it is much busier than the least-used: one kind of agent must not pile onto
      // one process while others idle.
      return leastAlike !== undefined && leastAlike.owners.size <= 2 * least.owners.size + 1 ? leastAlike : least;
    }
    const created = new StdioProcess(this.ctx, this.options, identity, (gone) => {
      const index = this.processes.indexOf(gone);
      if (index === -1) return;
      this.processes.splice(index, 1);
      if (this.processes.length === 0) this.onEmpty?.();
    });
    this.processes.push(created);
    return created;
  }
}

/** A gateway-side session on a (possibly shared) stdio process. */
export class StdioSession implements UpstreamSession, StdioOwner, DisposableSession {
  readonly upstreamId: string;
  notificationHandler: NotificationHandler | undefined;
  serverRequestHandler: ServerRequestHandler | undefined;
  private closed = false;

  constructor(
    private readonly process: StdioProcess,
    private readonly ctx: SessionContext,
    readonly principal: string | undefined,
  ) {
    this.upstreamId = ctx.config.id;
    ctx.registry.add(this);
  }

  get info(): UpstreamServerInfo {
    const info = this.process.info;
    if (info === undefined) throw errors.closed();
    return info;
  }

  /** The process serving this session (tests and diagnostics). */
  get pid(): number | undefined {
    return this.process.pid;
  }

  state(): UpstreamSessionState {
    return { sessionId: null, protocolVersion: this.process.info?.protocolVersion ?? '' };
  }

  request(
    method: string,
    params: Record<string, unknown> | undefined,
    options?: UpstreamRequestOptions,
  ): Promise<Record<string, unknown>> {
    if (this.closed) return Promise.reject(errors.closed());
    return this.process.request(this, method, params, options);
  }

  async notify(method: string, params?: Record<string, unknown>): Promise<void> {
    if (this.closed) throw errors.closed();
    await this.process.notify(method, params, this);
  }

  onNotification(handler: (notification: JsonRpcNotification) => void): void {
    this.notificationHandler = handler;
  }

  onServerRequest(
    handler: (request: JsonRpcRequest, signal: AbortSignal) => Promise<Record<string, unknown>>,
  ): void {
    this.serverRequestHandler = handler;
  }

  async close(): Promise<void> {
    this.dispose();
  }

  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.registry.delete(this);
    this.process.detach(this);
  }
}
