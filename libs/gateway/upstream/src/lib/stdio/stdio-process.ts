import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import {
  JSON_RPC,
  maskResult,
  maskUpstreamError,
  REFUSED_SUBSCRIPTION_CODES,
  UpstreamRpcError,
  untilAborted,
  type CancelSignal,
  type ClientIdentity,
  type JsonRpcId,
  type UpstreamRequestOptions,
  type UpstreamServerInfo,
} from '@portcullis/gateway/mcp';
import { secretMaskOf } from '@portcullis/shared/util-redact';
import { initializeParams, toServerInfo } from '../core/handshake';
import { RequestMultiplexer } from '../core/request-multiplexer';
import { logFields, notifyQuietly, type NotificationHandler, type SessionContext } from '../core/session-base';
import {
  abortAll,
  abortReason,
  answerServerRequest,
  cancelServerRequest,
  encodeError,
  encodeNotification,
  errors,
  type ServerRequestHandler,
} from '../core/wire';
import { parseMessages } from '../http/event-stream';
import { SharedUpstreamState, type SharedStep } from './shared-state';
import { LineSplitter, StderrLog, type StderrLogOptions } from './stdio-streams';
import { privateHome, type StdioUser, type StdioUserIds } from '@portcullis/shared/util-process-user';

/**
 * Signals the child's process group (it leads one: spawned detached), falling back to the child alone where groups
 * do not apply. A group already gone is fine.
 */
function signalGroup(child: ChildProcessWithoutNullStreams, signal: NodeJS.Signals): void {
  const pid = child.pid;
  if (pid !== undefined && process.platform !== 'win32') {
    try {
      process.kill(-pid, signal);
      return;
    } catch {
      // ESRCH: the group is gone (or was never formed); the child itself is tried below.
    }
  }
  try {
    child.kill(signal);
  } catch {
    // Already gone.
  }
}

/** Consecutive timed-out calls, with nothing answered in between, after which a process is taken for hung. */
const UNRESPONSIVE_AFTER = 3;
/**
 * Most bytes written to a process's stdin and not yet taken by it (Node buffers what the pipe cannot hold). A process
 * that stops reading would otherwise let calls pile their arguments up in the gateway's memory until they time out;
 * past this, calls fail at once (`overloaded`) until it reads again or is restarted as hung.
 */
export const STDIN_BUFFER_MAX_BYTES = 8 * 1024 * 1024;
/**
 * How long after a process exited its stdout and stderr are still read, for what it wrote last (an answer, its last
 * error line): Node reports the exit before the pipes are read to their end. Bounded, as something that outlived it
 * may hold them open.
 */
const EXIT_DRAIN_MS = 1_000;

export interface StdioOptions {
  /** A process without traffic for this long is stopped (and started again on the next call). */
  readonly idleMs: number;
  /** Crashes in a row (each within `stableMs` of its start) before the circuit is opened. */
  readonly maxRestarts: number;
  readonly restartBackoffMs: { readonly initial: number; readonly max: number };
  /** A process that served (was ready) this long before dying starts a fresh crash count. */
  readonly stableMs: number;
  /** Between SIGTERM and SIGKILL. */
  readonly killGraceMs: number;
  readonly stderr: StderrLogOptions;
  /**
   * The user and group stdio servers run as. Unset, they run as the gateway's own user, and a process of the same user
   * can read `/proc/<pid>/environ` of the gateway (its keyring and database URL) and of other tenants' servers.
   */
  readonly runAs?: { readonly uid: number; readonly gid: number };
  /**
   * Instead of `runAs`: a user id of its own for each running process (its group the same number), taken from this
   * range when it starts and given back when it has exited, so that no two servers can read each other's environment.
   */
  readonly userIds?: StdioUserIds;
}

/** How long after a session's roots/list_changed a roots/list from the process counts as asking that session. */
const ROOTS_ATTRIBUTION_MS = 5_000;

/** What a process needs from the sessions that use it. */
export interface StdioOwner {
  readonly notificationHandler: NotificationHandler | undefined;
  readonly serverRequestHandler: ServerRequestHandler | undefined;
  /** Whose session it is (ClientIdentity.principal); undefined: unknown. */
  readonly principal: string | undefined;
}

/** Notifications tied to no call that every session sharing a process may hear, whoever its principal. */
const EVERYONES: ReadonlySet<string> = new Set([
  'notifications/tools/list_changed',
  'notifications/prompts/list_changed',
  'notifications/resources/list_changed',
  'notifications/resources/updated',
]);

/** Whether every owner is the same principal's (one owner is; unknown principals never match). */
function onePrincipal(owners: ReadonlySet<StdioOwner>): boolean {
  if (owners.size <= 1) return true;
  let seen: string | undefined;
  for (const owner of owners) {
    if (owner.principal === undefined || (seen !== undefined && owner.principal !== seen)) return false;
    seen = owner.principal;
  }
  return true;
}

type Owner = StdioOwner | StdioProcess;

/**
 * What a process's handshake told the server of its client that decides what it may ask: the protocol version, and
 * which of the client features relayed for the agent it has (sampling and its tools and context, elicitation and its
 * modes, roots and their change notices). Sessions whose identities give the same text are alike for a process; key
 * order and other fields of the capabilities do not matter.
 */
export function compatibilityOf(identity: ClientIdentity): string {
  const caps = identity.capabilities;
  const has = (area: string, feature?: string): string => {
    const value = caps[area];
    if (typeof value !== 'object' || value === null) return '-';
    if (feature === undefined) return '+';
    const inner = (value as Record<string, unknown>)[feature];
    return inner !== undefined && inner !== false && inner !== null ? '+' : '-';
  };
  return `${identity.protocolVersion} ${has('sampling')}${has('sampling', 'tools')}${has('sampling', 'context')} ${has('elicitation')}${has('elicitation', 'form')}${has('elicitation', 'url')} ${has('roots')}${has('roots', 'listChanged')}`;
}

/**
 * One stdio upstream process, shared by several gateway-side sessions (multiplexed by
 * RequestMultiplexer). It is started lazily and initialised once; when it dies it is restarted with
 * exponential backoff while sessions use it, up to `maxRestarts` crashes in a row, after which the
 * upstream's circuit is opened. Idle processes are stopped: stdin closed, SIGTERM, then SIGKILL.
 */
export class StdioProcess {
  readonly owners = new Set<StdioOwner>();
  /**
   * The principals whose sessions left this process with work that may still run here, until when it may: calls under
   * way or given up lately (for their timeout: a server is free to ignore a cancellation), tasks they created (for the
   * task's ttl, an hour at most). Whose messages tied to no call may be (`unshared`). Unknown principals are under ''.
   */
  private readonly departed = new Map<string, number>();
  /** The session that last told this process its roots changed, for ROOTS_ATTRIBUTION_MS: whose roots/list comes next. */
  private rootsChangedBy: { readonly owner: StdioOwner; readonly until: number } | undefined;
  info: UpstreamServerInfo | undefined;
  /** The upstream's configuration changed: stop as soon as no session uses this process. */
  retired = false;
  /** The gateway is shutting down: nothing starts again (a restart waiting out its backoff included). */
  private shutDown = false;
  private child: ChildProcessWithoutNullStreams | undefined;
  /** Every child spawned that has not exited yet: what a shutdown must see gone, whatever `child` names by then. */
  private readonly live = new Set<ChildProcessWithoutNullStreams>();
  /**
   * Each child being stopped, with the stop that settles when it has exited. Kept per child: a stop of one child is
   * no answer to a stop of another (a single pending stop made later ones skip the child started meanwhile).
   */
  private readonly stopping = new Map<ChildProcessWithoutNullStreams, Promise<void>>();
  /** Each child's end: it exited and its output was read (`attach`), after its exit was handled. */
  private readonly ends = new WeakMap<ChildProcessWithoutNullStreams, Promise<void>>();
  /** The current child exited and its last output is being read: a start waits for its exit to be handled. */
  private draining: Promise<void> | undefined;
  /**
   * Children that exited before any stop was asked of them: a crash, even if a stop comes while their last output is
   * read (a start whose initialize failed stops its child then), so it still counts and is backed off.
   */
  private readonly exitedUnasked = new WeakSet<ChildProcessWithoutNullStreams>();
  /** Children that closed their stdin or stdout: each is given its grace to exit once, whichever stream told first. */
  private readonly pipesClosed = new WeakSet<ChildProcessWithoutNullStreams>();
  private ready = false;
  private starting: Promise<void> | undefined;
  /** When the running process became ready; undefined while it starts (a death then always counts as a crash). */
  private readyAt: number | undefined;
  private crashes = 0;
  private notBefore = 0;
  private lastActivity = Date.now();
  /** Since when, and for which child, a write found stdin past STDIN_BUFFER_MAX_BYTES (see `stdinFull`). */
  private stdinFullSince: number | undefined;
  private stdinFullOf: ChildProcessWithoutNullStreams | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Calls timed out since the process last answered anything. */
  private timeoutsInARow = 0;
  private readonly mux: RequestMultiplexer<Owner>;
  private readonly serverRequests = new Map<JsonRpcId, AbortController>();
  private readonly shared = new SharedUpstreamState<StdioOwner>();
  private fields: Record<string, unknown>;
  /** What the process is initialised for (`compatibilityOf` its first session's identity). */
  readonly compatibility: string;

  constructor(
    private ctx: SessionContext,
    private readonly options: StdioOptions,
    private readonly identity: ClientIdentity,
    /** Called when this process is stopped for good (no sessions left). */
    private readonly onGone: (process: StdioProcess) => void,
  ) {
    this.fields = logFields(ctx.config);
    this.compatibility = compatibilityOf(identity);
    this.mux = new RequestMultiplexer<Owner>({
      write: (text) => this.write(text),
      onTimeout: (sentAt) => {
        this.ctx.breaker.failure(sentAt);
        this.timedOut();
      },
      onAnswer: (owner) => {
        // The process's own messages say nothing of the upstream's health until its start is over: an error answer to
        // its initialize reset the failure count just before the failed start counted one, so a server refusing every
        // initialize never opened its circuit and was spawned again for each connect (found by review). A start that
        // succeeds counts as the answer (`start`).
        if (owner === this && !this.ready) return;
        this.ctx.breaker.success();
        this.timeoutsInARow = 0;
      },
      rpcError: (error) => maskUpstreamError(this.ctx.config, error),
      result: (result) => maskResult(this.ctx.config, result),
      // Only while the session that created the task is on this process (never another session sharing it).
      taskProgress: (owner, notification) => {
        if (owner !== this && this.owners.has(owner as StdioOwner)) notifyQuietly((owner as StdioOwner).notificationHandler, notification, this.ctx);
      },
    });
  }

  /** A newer configuration that starts the process the same way: its timeouts and breaker apply from now on. */
  adopt(ctx: SessionContext): void {
    this.ctx = ctx;
    this.fields = logFields(ctx.config);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  request(
    owner: StdioOwner,
    method: string,
    params: Record<string, unknown> | undefined,
    options: UpstreamRequestOptions | undefined,
  ): Promise<Record<string, unknown>> {
    // Subscriptions and the log level are the process's, shared by its sessions: kept apart per session here.
    const step = this.shared.step(owner, method, params);
    if (step === undefined) return this.send(owner, method, params, options);
    if ('answer' in step) return Promise.resolve(step.answer);
    if (method === 'resources/subscribe') return this.subscribe(owner, step, options);
    const sent = this.send(owner, method, step.forward, options);
    if (step.then === undefined && step.failed === undefined) return sent;
    return sent.then(
      (result) => (step.then?.(), result),
      (error: unknown) => {
        step.failed?.();
        throw error;
      },
    );
  }

  /**
   * A subscribe, whose answer matters to the process whoever still waits for it: it is sent without the caller's signal
   * and kept when its session leaves, so a subscribe the process takes after its agent gave up on it (cancelled, or
   * the session ended) still comes back here, and the process is unsubscribed from a URI nobody holds. Given up, it
   * never made the process answer anything else (no `notifications/cancelled`: servers drop the answer of a request
   * they were told is cancelled, not always its effect). The caller stops waiting at once. A timeout still gives it up
   * (ADR 0008).
   */
  private subscribe(
    owner: StdioOwner,
    step: Extract<SharedStep, { readonly forward: unknown }>,
    options: UpstreamRequestOptions | undefined,
  ): Promise<Record<string, unknown>> {
    const { signal, ...rest } = options ?? {};
    if (signal?.aborted) {
      step.failed?.();
      return Promise.reject(abortReason(signal));
    }
    const sent = this.send(owner, 'resources/subscribe', step.forward, rest, true).then(
      (result) => {
        const unwanted = step.then?.();
        if (unwanted !== undefined && this.ready) this.send(this, 'resources/unsubscribe', { uri: unwanted }, undefined).catch(() => undefined);
        return result;
      },
      (error: unknown) => {
        step.failed?.();
        throw error;
      },
    );
    return untilAborted(sent, signal, () => {
      step.failed?.();
      return signal === undefined ? errors.closed() : abortReason(signal);
    });
  }

  private send(
    owner: Owner,
    method: string,
    params: Record<string, unknown> | undefined,
    options: UpstreamRequestOptions | undefined,
    outlivesOwner = false,
  ): Promise<Record<string, unknown>> {
    const timeoutMs = options?.timeoutMs ?? this.ctx.config.callTimeoutMs;
    if (this.ready) {
      const { breaker } = this.ctx;
      if (!breaker.tryPass()) return Promise.reject(errors.circuitOpen());
      const probe = breaker.probe;
      this.lastActivity = Date.now();
      const answered = this.mux.request(owner, method, params, options, timeoutMs, outlivesOwner);
      if (probe === 0) return answered;
      // As the half-open probe, a call given up without a verdict (by its agent, or its session closing) leaves the
      // slot to the next call; a timeout reopened the circuit and an answer closed it already: this then does nothing.
      return answered.catch((error: unknown) => {
        breaker.probeEnded(probe);
        throw error;
      });
    }
    const deadline = Date.now() + timeoutMs;
    return this.readyWithin(options?.signal, timeoutMs).then(() => {
      // Its session closed while it waited (detach cancelled only calls already sent): nothing goes out for it, and
      // nothing of it (a subscription) is recorded.
      if (owner !== this && !this.owners.has(owner as StdioOwner)) throw errors.closed();
      this.lastActivity = Date.now();
      return this.mux.request(owner, method, params, options, Math.max(1, deadline - Date.now()), outlivesOwner);
    });
  }

  /**
   * Waits for the process to be ready (a start, perhaps after a restart backoff) within the caller's limits: its
   * timeout covers the wait and the call together, and its signal cancels the wait. The start itself goes on.
   */
  private readyWithin(signal: CancelSignal | undefined, timeoutMs: number): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const ready = this.ensureReady();
    return new Promise<void>((resolve, reject) => {
      const done = (error?: unknown): void => {
        clearTimeout(timer);
        if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
        if (error === undefined) resolve();
        else reject(error);
      };
      const timer = setTimeout(() => done(errors.timeout()), timeoutMs);
      const onAbort = signal === undefined ? undefined : () => done(abortReason(signal));
      if (onAbort !== undefined) signal?.addEventListener('abort', onAbort, { once: true });
      ready.then(() => done(), (error: unknown) => done(error ?? errors.closed()));
    });
  }

  /**
   * Sends an agent's notification (its roots changed, progress of a request the server made). To a process that is
   * not running it says nothing: a stopped server has no request in flight and reads the roots afresh when it starts,
   * so it is not started (nor restarted) for one. Before, a notification started a process stopped for idleness.
   */
  async notify(method: string, params: Record<string, unknown> | undefined, from?: StdioOwner): Promise<void> {
    if (!this.ready) {
      if (this.starting === undefined) return;
      await this.starting;
    }
    this.lastActivity = Date.now();
    // The server will likely ask for the roots now: the answer is this session's to give (see `onServerRequest`).
    if (method === 'notifications/roots/list_changed' && from !== undefined) this.rootsChangedBy = { owner: from, until: Date.now() + ROOTS_ATTRIBUTION_MS };
    this.write(encodeNotification(method, params));
  }

  /** Starts and initialises the process unless it is running; fails fast while the circuit is open. */
  ensureReady(): Promise<void> {
    if (this.ready) return Promise.resolve();
    if (this.shutDown) return Promise.reject(errors.closed());
    if (this.starting !== undefined) return this.starting;
    if (this.draining !== undefined) return this.draining.then(() => this.ensureReady());
    const { breaker } = this.ctx;
    if (!breaker.tryPass()) return Promise.reject(errors.circuitOpen());
    const probe = breaker.probe;
    this.starting = this.start().finally(() => {
      this.starting = undefined;
    });
    // As the half-open probe, a start that failed without a verdict (no free user id, every session gone during the
    // backoff) leaves the slot to the next; a failed start reopened the circuit already, and this then does nothing.
    if (probe !== 0) this.starting.catch(() => breaker.probeEnded(probe));
    return this.starting;
  }

  /**
   * Whether what the process says tied to no call (a log message, a server request with no call in flight) can be
   * only its sessions' principal's: every session on it is one principal's, and so is any work a session that left
   * may have left running (`departed`). Before, only the sessions on it counted: the logs of a call another
   * principal's session left running went to the principal left alone on the process (found by review).
   */
  private unshared(): boolean {
    if (!onePrincipal(this.owners)) return false;
    const principal = [...this.owners][0]?.principal;
    const now = Date.now();
    let alone = true;
    for (const [left, until] of this.departed) {
      if (until <= now) this.departed.delete(left);
      else if (left === '' || left !== principal) alone = false;
    }
    return alone;
  }

  detach(owner: StdioOwner): void {
    if (!this.owners.delete(owner)) return;
    // Cancelled upstream too, not only failed here: the process serves other sessions (or waits to idle), and would run
    // on tools whose results nobody takes. Where it is gone or being stopped the write fails, quietly. A server may
    // run them on all the same, and the tasks the session created: while they may, what the process says tied to no
    // call may be about them.
    const workUntil = this.mux.cancelOwner(owner, 'session closed', errors.closed());
    if (workUntil > 0) {
      const left = owner.principal ?? '';
      this.departed.set(left, Math.max(this.departed.get(left) ?? 0, workUntil));
    }
    this.lastActivity = Date.now();
    // What only this session wanted goes: its last subscriptions, and its log level if it was the most verbose.
    const { unsubscribe, level } = this.shared.leave(owner);
    // The process runs on after its last session too (until idle): it is unsubscribed all the same, or the next
    // session to use it would be fed updates of a resource only the one gone subscribed to.
    if (this.ready) for (const uri of unsubscribe) this.send(this, 'resources/unsubscribe', { uri }, undefined).catch(() => undefined);
    if (this.ready && this.owners.size > 0) {
      if (level !== undefined) {
        this.send(this, 'logging/setLevel', { level }, undefined).then(() => this.shared.levelSet(level), () => undefined);
      }
    }
    if (this.owners.size === 0 && (this.retired || this.child === undefined)) void this.stop('released');
  }

  /**
   * Stops the process for good (gateway shutdown): no restart after this, not even one already waiting. Settles once
   * every child it spawned has exited (killed after the grace period if need be), not only the current one.
   */
  async shutdown(): Promise<void> {
    this.shutDown = true;
    const current = this.stop('shutdown');
    await Promise.all([current, ...[...this.live].map((child) => this.stopChild(child, 'shutdown'))]);
  }

  /** Stops the current child: stdin closed and SIGTERM, SIGKILL after the grace period. */
  stop(why: string): Promise<void> {
    const child = this.child;
    if (this.idleTimer !== undefined) clearInterval(this.idleTimer);
    this.idleTimer = undefined;
    if (child === undefined) {
      this.goneIfUnused();
      return Promise.resolve();
    }
    this.ready = false;
    return this.stopChild(child, why);
  }

  /** Stops one running child, once however often asked: the stop settles when it has exited. */
  private stopChild(child: ChildProcessWithoutNullStreams, why: string): Promise<void> {
    const pending = this.stopping.get(child);
    if (pending !== undefined) return pending;
    this.ctx.logger.debug({ ...this.fields, why }, 'stopping upstream process');
    const stopped = new Promise<void>((resolve) => {
      const kill = setTimeout(() => signalGroup(child, 'SIGKILL'), this.options.killGraceMs);
      const ended = (): void => {
        clearTimeout(kill);
        resolve();
      };
      // Exited: no SIGKILL for its group later (its id may be another process's by then).
      child.once('exit', () => clearTimeout(kill));
      const end = this.ends.get(child);
      if (end !== undefined) void end.then(ended);
      else child.once('exit', ended);
      child.stdin.end();
      signalGroup(child, 'SIGTERM');
    }).finally(() => {
      this.stopping.delete(child);
      this.goneIfUnused();
    });
    this.stopping.set(child, stopped);
    return stopped;
  }

  /** No session uses the process and no child of it runs: the pool forgets it (its shutdown would not reach it). */
  private goneIfUnused(): void {
    if (this.owners.size === 0 && this.live.size === 0) this.onGone(this);
  }

  private async start(): Promise<void> {
    const wait = this.notBefore - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    // The last child may still be exiting (stopped when its initialize failed, or idle): it is `child` until it has.
    // Spawned beside it, the new one would take its place there, and no stop would reach either one.
    if (this.stopping.size > 0) await Promise.all(this.stopping.values());
    // Shut down, or every session left, while the backoff ran: starting now would leave a child nobody stops.
    if (this.shutDown || this.owners.size === 0) throw errors.closed();
    const { config, logger } = this.ctx;
    if (config.command === null || config.command === '') throw errors.connectFailed();
    const deadline = Date.now() + config.connectTimeoutMs;
    const userIds = this.options.userIds;
    // Taken for the tenant: near the end of the range, one holding its share gets no more (`StdioUserIds.take`).
    const user = userIds !== undefined ? userIds.take(config.tenantId) : this.options.runAs;
    if (userIds !== undefined && user === undefined) {
      // Not the upstream's failure (another tenant's processes may hold the ids): its circuit is left alone.
      logger.warn(
        { ...this.fields, ids: userIds.size, running: userIds.inUse, retired: userIds.retired, tenantHolds: userIds.heldFor(config.tenantId) },
        'no free user id for a stdio server: every id of GATEWAY_STDIO_UID_RANGE is in use or retired, or this tenant holds its share of the last ones',
      );
      throw errors.connectFailed();
    }
    // With an id of its own, a home of its own too (HOME, TMPDIR and working directory; 0700, removed with it): what it
    // writes there is nobody else's to read, and leaves nothing behind for the next holder of the id.
    let home: string | undefined;
    if (userIds !== undefined) {
      try {
        home = await privateHome(await userIds.ensureHomes(), user as StdioUser);
      } catch (error) {
        userIds.give(user as StdioUser);
        logger.warn({ ...this.fields, code: (error as NodeJS.ErrnoException).code }, 'could not make a private home directory for a stdio server');
        throw errors.connectFailed(error);
      }
    }
    // The id and the home go once, when the process has exited (or never started): the id only once its home is
    // gone, so the next holder of the id finds nothing of this process's; one whose home cannot be removed is retired.
    let userReleased = userIds === undefined;
    const releaseUser = (): void => {
      if (userReleased || userIds === undefined) return;
      userReleased = true;
      const held = user as StdioUser;
      if (home === undefined) {
        userIds.give(held);
        return;
      }
      userIds.removeHome(home, held).then(
        () => userIds.give(held),
        (error: NodeJS.ErrnoException) => {
          userIds.retire(held);
          logger.warn({ ...this.fields, code: error.code }, 'could not clear what a stdio server left (its processes, temporary files or home); its user id is not used again');
        },
      );
    };
    // Again after the awaits for the home: a shutdown meanwhile found no child to stop, so one spawned now would outlive it.
    if (this.shutDown || this.owners.size === 0) {
      releaseUser();
      throw errors.closed();
    }
    let child: ChildProcessWithoutNullStreams;
    try {
      // The configured environment exactly: the gateway's own (with its secrets) is never inherited. A private home
      // is offered where the configuration names none.
      child = spawn(config.command, [...config.args], {
        shell: false,
        env: home === undefined ? { ...config.env } : { HOME: home, TMPDIR: home, ...config.env },
        ...(home !== undefined ? { cwd: home } : {}),
        stdio: ['pipe', 'pipe', 'pipe'],
        windowsHide: true,
        // Its own process group, so stopping it reaches what it started too: a wrapper (`npx`, `uvx`, a script)
        // runs the real server as a grandchild, which would otherwise outlive every stop and restart.
        detached: process.platform !== 'win32',
        ...(user ? { uid: user.uid, gid: user.gid } : {}),
      });
    } catch (error) {
      releaseUser();
      this.ctx.breaker.failure();
      logger.debug(
        { ...this.fields, code: (error as NodeJS.ErrnoException).code },
        'could not spawn upstream process',
      );
      throw errors.connectFailed(error);
    }
    this.child = child;
    this.live.add(child);
    this.readyAt = undefined;
    logger.debug(
      // Arguments are not logged: they may carry tokens (`--token=…`); the command names the program.
      { ...this.fields, pid: child.pid, command: config.command, argCount: config.args.length },
      'upstream process started',
    );
    const spawnFailed = new Promise<never>((_, reject) => {
      child.once('error', (error: NodeJS.ErrnoException) => {
        logger.debug({ ...this.fields, code: error.code }, 'upstream process error');
        // Never started (ENOENT, EACCES): there will be no 'exit' to wait for.
        if (child.pid === undefined) {
          releaseUser();
          this.live.delete(child);
          if (this.child === child) this.child = undefined;
          // Its initialize is failed with it: left to time out, it would count a second failure toward the circuit
          // (or reopen one cooling down). Only this start's calls are under way: calls wait until a start is ready.
          this.mux.failAll(errors.connectFailed(error));
        }
        reject(errors.connectFailed(error));
      });
    });
    spawnFailed.catch(() => undefined);
    this.attach(child);
    // After `attach`'s own exit handler, which kills what the process left in its group: then nothing runs as its id.
    child.once('exit', releaseUser);
    try {
      const result = await Promise.race([
        this.mux.request(
          this,
          'initialize',
          initializeParams(this.identity),
          undefined,
          Math.max(1, deadline - Date.now()),
        ),
        spawnFailed,
      ]);
      this.info = toServerInfo(result);
      this.write(encodeNotification('notifications/initialized', undefined));
    } catch (error) {
      const timedOut = (error as { reason?: unknown }).reason === 'timeout';
      // One failed start is one failure: a timed-out initialize was counted already (the multiplexer's `onTimeout`).
      if (!timedOut) this.ctx.breaker.failure();
      void this.stop('initialize failed');
      throw timedOut ? errors.connectTimeout() : error;
    }
    // Calls wait until the process knows its sessions' subscriptions and log level again (after a crash, or an idle stop).
    await this.replay(this.info);
    // It died meanwhile (its exit handled, or its last output still being read): this start failed.
    if (this.child !== child || child.exitCode !== null || child.signalCode !== null) throw errors.closed();
    this.ready = true;
    this.readyAt = Date.now();
    // The start is the answer its own messages were not counted as (see `onAnswer`): a circuit not closed (this start
    // was its probe) closes, and this process starts with no timeouts in a row (the last one's would otherwise kill it
    // on its first; found by review). In a closed circuit it says nothing of the calls: the failures counted stay, so a
    // server that starts but answers no call opens its circuit after the threshold of timeouts, across the kills that
    // restart it. Before, each restart reset the count, and such a server held every call for its whole timeout, for
    // good (found by re-review).
    if (this.ctx.breaker.state !== 'closed') this.ctx.breaker.success();
    this.timeoutsInARow = 0;
    this.lastActivity = Date.now();
    this.idleTimer = setInterval(
      () => this.checkIdle(),
      Math.max(25, Math.min(60_000, Math.floor(this.options.idleMs / 4))),
    );
    this.idleTimer.unref();
  }

  /**
   * Tells a process that has just started the subscriptions and the log level its sessions hold (nothing on its first
   * start), each only if its initialize advertised the capability (`resources.subscribe`, `logging`). Best effort, in
   * parallel, within the shorter of the upstream's connect and call timeouts; failures are logged. A subscription it
   * refuses is dropped (see `SharedUpstreamState.refused`); one that timed out or met the process's end is kept.
   */
  private async replay(info: UpstreamServerInfo): Promise<void> {
    const { subscribe, level } = this.shared.replay();
    const resources = info.capabilities['resources'];
    const subscribable = typeof resources === 'object' && resources !== null && (resources as Record<string, unknown>)['subscribe'] === true;
    const logging = typeof info.capabilities['logging'] === 'object' && info.capabilities['logging'] !== null;
    const uris = subscribable ? subscribe : [];
    const levelToSet = logging ? level : undefined;
    if (uris.length === 0 && levelToSet === undefined) return;
    const timeoutMs = Math.max(1, Math.min(this.ctx.config.connectTimeoutMs, this.ctx.config.callTimeoutMs));
    const sent = uris.map((uri) =>
      this.mux.request(this, 'resources/subscribe', { uri }, undefined, timeoutMs).catch((error: unknown) => {
        // Refused for good (the resource is gone); a passing failure (an internal error while starting) keeps it.
        if (error instanceof UpstreamRpcError && REFUSED_SUBSCRIPTION_CODES.has(error.code)) this.shared.refused(uri);
        throw error;
      }),
    );
    if (levelToSet !== undefined) sent.push(this.mux.request(this, 'logging/setLevel', { level: levelToSet }, undefined, timeoutMs).then((result) => (this.shared.levelSet(levelToSet), result)));
    const failed = (await Promise.allSettled(sent)).filter((outcome) => outcome.status === 'rejected');
    await this.reconcile(uris, timeoutMs);
    if (failed.length === 0) return;
    const first = (failed[0] as PromiseRejectedResult).reason as { reason?: unknown; code?: unknown };
    this.ctx.logger.warn(
      { ...this.fields, failed: failed.length, of: sent.length, reason: first instanceof UpstreamRpcError ? `rpc_${String(first.code)}` : first.reason },
      'restarted upstream process not told all of its sessions\' subscriptions and log level',
    );
  }

  /**
   * Sessions that left while the replay ran (the process was not ready: `detach` told it nothing) leave no trace on
   * it: a URI told again that nobody holds now is unsubscribed, and the level follows the sessions that remain. Kept,
   * the subscription would feed its updates to whichever session uses the process next (one alone gets them all).
   */
  private async reconcile(told: readonly string[], timeoutMs: number): Promise<void> {
    const { subscribe, level } = this.shared.replay();
    const held = new Set(subscribe);
    const steps: Promise<unknown>[] = told.filter((uri) => !held.has(uri)).map((uri) => this.mux.request(this, 'resources/unsubscribe', { uri }, undefined, timeoutMs));
    if (level !== undefined && level !== this.shared.upstreamLevelNow()) {
      steps.push(this.mux.request(this, 'logging/setLevel', { level }, undefined, timeoutMs).then(() => this.shared.levelSet(level)));
    }
    await Promise.allSettled(steps);
  }

  private attach(child: ChildProcessWithoutNullStreams): void {
    const lines = new LineSplitter(this.ctx.maxMessageBytes);
    // The mask errors and results get: a connection string's password alone, URL-encoded forms, … (not only whole values).
    const stderr = new StderrLog(this.ctx.logger, { ...this.fields, pid: child.pid }, this.options.stderr, secretMaskOf(this.ctx.config));
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      try {
        lines.push(chunk, (line) => this.receive(line));
      } catch {
        // Killed as a crash (not stopped): counted for the restart backoff and the circuit, so a process that keeps
        // doing it is not respawned for every call, each time buffering up to the limit again.
        this.ctx.logger.warn(this.fields, 'upstream process wrote an oversized message; killing it');
        signalGroup(child, 'SIGKILL');
      }
    });
    child.stderr.on('data', (chunk: string) => stderr.push(chunk));
    // EPIPE: the child died ('exit' handles it), or closed its stdin and runs on; its end of either pipe closed alike.
    child.stdin.on('error', () => this.pipeClosed(child, 'stdin'));
    child.stdin.on('close', () => this.pipeClosed(child, 'stdin'));
    child.stdout.on('end', () => this.pipeClosed(child, 'stdout'));
    this.ends.set(
      child,
      new Promise<void>((resolve) => {
        child.once('exit', (code, signal) => {
          if (!this.stopping.has(child)) this.exitedUnasked.add(child);
          // Whatever the process started and left behind (a wrapper's server, a stray helper) goes with it.
          signalGroup(child, 'SIGKILL');
          if (this.child === child) this.ready = false;
          // What it wrote before it exited is read first ('close': both pipes ended), within EXIT_DRAIN_MS.
          const drained = new Promise<void>((done) => {
            const bound = setTimeout(() => {
              child.stdout.destroy();
              child.stderr.destroy();
            }, EXIT_DRAIN_MS);
            bound.unref();
            child.once('close', () => {
              clearTimeout(bound);
              done();
            });
          });
          const handled = drained.then(() => {
            if (this.draining === handled) this.draining = undefined;
            stderr.flush();
            try {
              this.exited(child, code, signal);
            } finally {
              resolve();
            }
          });
          if (this.child === child) this.draining = handled;
        });
      }),
    );
  }

  private exited(
    child: ChildProcessWithoutNullStreams,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    this.live.delete(child);
    if (this.child !== child) return;
    this.child = undefined;
    this.ready = false;
    this.shared.restarted();
    if (this.idleTimer !== undefined) clearInterval(this.idleTimer);
    this.idleTimer = undefined;
    this.mux.failAll(errors.closed());
    // The work sessions that left had running here ended with this child: a restarted one says nothing of it.
    this.departed.clear();
    abortAll(this.serverRequests);
    // This child was stopped on purpose: not a crash (a stop of an earlier child no longer hides this one's death). One
    // that had served stableMs (stopped when idle, or released) ends the row of crashes, as a later crash of it would.
    if (this.stopping.has(child) && !this.exitedUnasked.has(child)) {
      if (this.readyAt !== undefined && Date.now() - this.readyAt >= this.options.stableMs) this.crashes = 0;
      return;
    }
    // Stable only once it served for stableMs: one that dies while starting, however slowly, counts toward the circuit.
    const stable = this.readyAt !== undefined && Date.now() - this.readyAt >= this.options.stableMs;
    this.crashes = stable ? 1 : this.crashes + 1;
    this.ctx.logger.warn({ ...this.fields, code, signal, crashes: this.crashes }, 'upstream process exited');
    if (this.crashes > this.options.maxRestarts) {
      this.ctx.breaker.open();
      this.crashes = 0;
      this.notBefore = 0;
      this.ctx.logger.warn(this.fields, 'upstream process keeps crashing; circuit opened');
      return;
    }
    if (this.shutDown) return;
    const { initial, max } = this.options.restartBackoffMs;
    this.notBefore = Date.now() + Math.min(max, initial * 2 ** (this.crashes - 1));
    if (this.owners.size === 0) {
      this.onGone(this);
      return;
    }
    // Died while it was being started (during its initialize, or while told its sessions' subscriptions): that start
    // fails, and the restart follows it, so that a session only listening for updates gets a process again too.
    if (this.starting !== undefined) void this.starting.catch(() => this.restart());
    else this.restart();
  }

  /** Starts the process again after a crash, within the backoff and the circuit; failures are logged. */
  private restart(): void {
    if (this.shutDown || this.owners.size === 0 || this.ready) return;
    this.ensureReady().catch((error: unknown) => {
      if (this.shutDown || this.owners.size === 0) return; // nobody is waiting for it any more
      this.ctx.logger.warn(
        { ...this.fields, reason: (error as { reason?: unknown }).reason },
        'upstream process restart failed',
      );
    });
  }

  /**
   * A process that lets UNRESPONSIVE_AFTER calls in a row time out without answering anything in between is taken
   * for hung (deadlocked, or no longer reading its stdin): it is killed, which counts as a crash (restart with
   * backoff, circuit opened if it keeps happening). Left alone it would never be restarted: the breaker's half-open
   * probes keep it from ever being idle.
   */
  private timedOut(): void {
    this.timeoutsInARow += 1;
    const child = this.child;
    if (this.timeoutsInARow < UNRESPONSIVE_AFTER || child === undefined || this.stopping.has(child) || !this.ready) return;
    this.timeoutsInARow = 0;
    this.ctx.logger.warn({ ...this.fields, timeouts: UNRESPONSIVE_AFTER }, 'upstream process stopped answering; killing it for a restart');
    signalGroup(child, 'SIGKILL');
  }

  /**
   * The child closed its stdin (a write found it closed: EPIPE) or its stdout. One that is exiting is left to its
   * exit; one that runs on can serve no call again: calls would fail at once (stdin) or each wait out its timeout
   * (stdout), never as the three timeouts in a row that take it for hung, no exit would restart it, and its sessions'
   * traffic would keep the idle stop away. Unless it exits within the kill grace, it is killed as a crash (as for an
   * oversized message): its exit restarts it with backoff, and opens the circuit if it keeps happening. A child being
   * stopped (its stdin ended on purpose) is its stop's.
   */
  private pipeClosed(child: ChildProcessWithoutNullStreams, stream: 'stdin' | 'stdout'): void {
    if (this.pipesClosed.has(child) || !this.runsOn(child)) return;
    this.pipesClosed.add(child);
    setTimeout(() => {
      if (!this.runsOn(child)) return;
      this.ctx.logger.warn({ ...this.fields, stream }, 'upstream process closed its stdin or stdout but runs on; killing it for a restart');
      signalGroup(child, 'SIGKILL');
    }, this.options.killGraceMs).unref();
  }

  /** Whether `child` is the current process, not exited and not being stopped. */
  private runsOn(child: ChildProcessWithoutNullStreams): boolean {
    return this.child === child && child.exitCode === null && child.signalCode === null && !this.stopping.has(child);
  }

  /**
   * Stops a process nobody has used for `idleMs`. Not one a session is subscribed to a resource of: it would send no
   * updates until a call started it again. The subscriptions end when their sessions unsubscribe or go. Nor one
   * waiting on an agent's answer to its own request (an elicitation, a sampling, roots asked outside any call): a
   * person may take minutes to answer, and stopped, the process would lose the work that asked.
   */
  private checkIdle(): void {
    if (this.ready && this.mux.pending === 0 && this.serverRequests.size === 0 && !this.shared.watched && Date.now() - this.lastActivity >= this.options.idleMs)
      void this.stop('idle');
  }

  private write(text: string): void {
    const child = this.child;
    if (child === undefined || !child.stdin.writable) {
      // Closed by the child, not by a stop: see `pipeClosed` (only here on a failure, not on every write).
      if (child !== undefined) this.pipeClosed(child, 'stdin');
      throw errors.closed();
    }
    if (child.stdin.writableLength > STDIN_BUFFER_MAX_BYTES) {
      this.stdinFull(child);
      throw errors.overloaded();
    }
    this.stdinFullSince = undefined;
    child.stdin.write(`${text}\n`);
  }

  /**
   * A child whose stdin stays past its bound for a call timeout reads no more: each call is refused at once, so none
   * times out (the three in a row that take it for hung never come), and the calls keep the idle stop away. It is
   * killed as hung then, which restarts it with backoff (found by a review: it failed every call for as long as agents
   * called). Judged at each refused write: one nobody writes to any more stops when idle.
   */
  private stdinFull(child: ChildProcessWithoutNullStreams): void {
    const now = Date.now();
    if (this.stdinFullSince === undefined || this.stdinFullOf !== child) {
      this.stdinFullSince = now;
      this.stdinFullOf = child;
      return;
    }
    if (now - this.stdinFullSince < this.ctx.config.callTimeoutMs || !this.runsOn(child)) return;
    this.stdinFullSince = undefined;
    this.ctx.logger.warn({ ...this.fields, waitingBytes: child.stdin.writableLength }, 'upstream process stopped reading its stdin; killing it for a restart');
    signalGroup(child, 'SIGKILL');
  }

  private receive(line: string): void {
    const messages = parseMessages(line);
    if (messages === undefined) {
      this.ctx.logger.debug(this.fields, 'upstream process wrote a line that is not JSON');
      return;
    }
    for (const classified of messages) {
      switch (classified.kind) {
        case 'response':
          this.mux.handleResponse(classified.message);
          break;
        case 'notification': {
          const notification = classified.message;
          if (notification.method === 'notifications/cancelled') {
            cancelServerRequest(notification.params, this.serverRequests);
            break;
          }
          const unrouted = this.mux.routeNotification(notification);
          // Progress belongs to one call: one that matches no call in flight (late, or a stray token) is dropped, never
          // shown to the other sessions sharing this process (other principals of the tenant).
          if (unrouted === undefined || unrouted.method === 'notifications/progress') break;
          // Not attributable to a call: list changes go to every session of this process; resource updates to those
          // subscribed to the URI. Anything else (log messages, to those whose level lets them through; an elicitation's
          // completion; a server's own notifications) only while every session on the process is one principal's: it
          // may be about a call, carry its arguments or results, and other principals of the tenant, whose policy may
          // deny that tool, never see it.
          const owners = EVERYONES.has(unrouted.method) || this.unshared() ? this.owners : [];
          for (const owner of this.shared.recipients(unrouted, owners)) notifyQuietly(owner.notificationHandler, unrouted, this.ctx);
          break;
        }
        case 'request': {
          const request = classified.message;
          // A ping is the process's check of its connection: answered whoever shares the process (see answerServerRequest).
          if (request.method === 'ping') {
            answerServerRequest(request, undefined, (text) => this.safeWrite(text), this.serverRequests);
            break;
          }
          // The process's own calls (its handshake, the subscriptions and log level it restores for every session after
          // a restart) ask no agent, as if not in flight; the call of a session that left (a subscribe outlives its
          // session) asks no agent either, but may have caused the request (see `routeServerRequest`).
          let route = this.mux.routeServerRequest(request, (owner) => (owner === this ? 'ignored' : this.owners.has(owner as StdioOwner) ? 'asked' : 'gone'));
          let handler: ServerRequestHandler | undefined;
          // A roots/list soon after a session said its roots changed is that session's to answer. Another session's
          // call in flight must not be asked on its behalf (that session's roots would reach a process the first one
          // uses, and answer for it): then nobody can tell whose roots are meant, and it is refused.
          const changed = this.rootsChangedBy;
          if (request.method === 'roots/list' && changed !== undefined && changed.until >= Date.now() && this.owners.has(changed.owner)) {
            this.rootsChangedBy = undefined;
            if ((route.kind === 'call' || route.kind === 'owner') && route.owner !== changed.owner) route = { kind: 'ambiguous' };
            else if (route.kind === 'none') handler = changed.owner.serverRequestHandler;
          }
          if (route.kind === 'call') handler = route.handler;
          // A call of one session's without a handler of its own (a listing): that session's agent is asked.
          else if (route.kind === 'owner' && route.owner !== this) handler = (route.owner as StdioOwner).serverRequestHandler;
          else if (route.kind === 'none' && handler === undefined && this.owners.size === 1 && this.unshared())
            handler = [...this.owners][0]?.serverRequestHandler;
          if (route.kind === 'ambiguous') {
            this.ctx.logger.warn(
              { ...this.fields, method: request.method },
              'server request from a shared process is ambiguous; refused',
            );
            this.safeWrite(
              encodeError(request.id, JSON_RPC.INTERNAL_ERROR, 'Request could not be attributed to a client'),
            );
            break;
          }
          answerServerRequest(request, handler, (text) => this.safeWrite(text), this.serverRequests);
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

  private safeWrite(text: string): void {
    try {
      this.write(text);
    } catch {
      // the process is gone; its exit already failed what depended on it
    }
  }
}
