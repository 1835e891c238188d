import { editedArgumentsProblem, MAX_APPROVAL_ARGUMENT_BYTES } from '@portcullis/contracts/api';
import { GATEWAY_RPC, GatewayRequestError, type Admission, type ApprovalGate, type MessageSink, type RequestInfo } from '@portcullis/gateway/core';
import { isUuid, tenantId as toTenantId, type TenantId } from '@portcullis/shared/util-ids';
import type { CancelSignal } from '@portcullis/gateway/mcp';
import type { Logger } from '@portcullis/shared/util-logger';
import { redactSecrets } from '@portcullis/shared/util-redact';
import type { ApprovalState, ApprovalStore } from './approval-store';
import { argumentsHash } from './arguments-hash';

/**
 * JSON-RPC codes of a held call that does not go ahead (docs/policy.md, "Approvals"), next to the policy's own
 * (`POLICY_DENIED` -32030, `APPROVAL_UNAVAILABLE` -32031).
 */
export const APPROVAL_RPC = {
  /** An approver denied the call (or the approval no longer matches it, or was already used). */
  DENIED: -32032,
  /** Nobody decided before the approval timed out. */
  EXPIRED: -32033,
  /** The approval could not be recorded (database unavailable). */
  UNAVAILABLE: GATEWAY_RPC.APPROVAL_UNAVAILABLE,
} as const;

export interface HeldCallGateOptions {
  readonly store: ApprovalStore;
  readonly logger: Logger;
  /** How long a call waits for a decision before it fails (and its approval is marked expired). */
  readonly timeoutMs: number;
  /** Fallback check of every held approval in the database (the Redis notice is the fast path). */
  readonly pollMs: number;
  /** Interval of progress notifications to an agent that sent a progress token. */
  readonly progressMs: number;
  /**
   * How long a held call's row says this replica holds it (`heldUntil`), renewed every third of it while the call
   * waits. Past it the control plane takes no decision: a replica that died holds nothing that could run. Default 60 s.
   */
  readonly leaseMs?: number;
  /**
   * When the credential that made a call expires (epoch ms; null: never, or not known here). A call held past its
   * key's expiry could never run (`credentialsAfterApproval` refuses it): at the expiry it is cancelled, its approval
   * marked so, instead of staying approvable until its own timeout.
   */
  readonly credentialExpiresAt?: (credentialId: string) => number | null;
  readonly now?: () => number;
}

interface Held {
  readonly tenantId: TenantId;
  readonly id: string;
  /** Called once with the approval's first non-pending state. */
  readonly decided: (state: ApprovalState) => void;
}

const MAX_NOTE = 500;

/**
 * Calls one MCP session may have waiting for approval on a replica at once. Each is an Approval row in an approver's
 * queue and a request kept in memory for up to the approval timeout: an agent looping over a tool that needs approval
 * (or sending batches of such calls) is refused past this rather than filling the queue.
 */
export const MAX_HELD_PER_SESSION = 32;

/**
 * A held call cancelled (by its agent, a hang-up, the session's end). Once its approval exists the refusal names it,
 * so the call's audit event is linked to the approval, as a denied or expired one is.
 */
function cancelled(approvalId?: string): Error {
  const message = 'The call was cancelled while it waited for approval';
  if (approvalId !== undefined) return new GatewayRequestError(GATEWAY_RPC.UPSTREAM_TIMEOUT, message, { approvalId, reason: 'approval_cancelled' }, 'cancelled');
  const error = new Error(message);
  error.name = 'AbortError';
  return error;
}

/** A held call whose credential expired while it waited: cancelled, as `credentialsAfterApproval` would refuse it. */
function credentialExpired(approvalId: string): Error {
  return new GatewayRequestError(
    GATEWAY_RPC.FORBIDDEN,
    'The credential that made this call expired while it waited for approval, so it was cancelled.',
    { reason: 'credential_no_longer_valid', approvalId },
    'denied',
  );
}

/** Default `leaseMs`. */
export const HOLD_LEASE_MS = 60_000;


/** Arguments nested deeper than this cannot be recorded for review (nobody could read them, and storing them recurses). */
const MAX_REVIEW_DEPTH = 64;

/** Whether `value` nests objects or arrays more than `max` deep (iterative: any depth is safe to look at). */
function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const [item, depth] = next;
    if (typeof item !== 'object' || item === null) continue;
    if (depth >= max) return true;
    for (const child of Object.values(item)) stack.push([child, depth + 1]);
  }
  return false;
}

/**
 * Why arguments cannot be shown to an approver exactly as they would run, or undefined when they can. Postgres keeps
 * no NUL in text, so the stored copy has U+FFFD in its place: in a key, two keys that differ only there become one,
 * and the approver is shown fewer arguments than would run (`{"sql\u0000": "DROP …", "sql\uFFFD": "SELECT 1"}` showed
 * only the second); in a value, what an upstream that stops at NUL reads is not what is shown. A number JSON cannot
 * carry (`1e999` parses as Infinity) has no canonical form to bind a decision to. Depth is bounded by the caller.
 */
function unreviewableArguments(value: unknown): string | undefined {
  if (typeof value === 'string') return value.includes('\u0000') ? 'they hold a NUL character, which cannot be stored for review' : undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : 'they hold a number too large to record';
  if (typeof value !== 'object' || value === null) return undefined;
  for (const [key, item] of Object.entries(value)) {
    const problem = unreviewableArguments(key) ?? unreviewableArguments(item);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

/**
 * Holds calls that need a human's approval (the policy's `require_approval`). Each held call gets an Approval row;
 * the call waits in memory on the replica that holds it until the row is decided through the control plane (on any
 * replica), it expires, or the agent cancels. The control plane announces decisions on `CHANGE_CHANNELS.approvals`
 * (`onDecided`); a periodic database check covers lost notices and a Redis outage.
 */
export class HeldCallGate implements ApprovalGate {
  private readonly held = new Map<string, Held>();
  /** Held calls (and calls being recorded) per MCP session. */
  private readonly perSession = new Map<string, number>();
  private readonly checks = new Map<TenantId, Promise<void>>();
  private readonly recheck = new Set<TenantId>();
  private readonly writes = new Set<Promise<unknown>>();
  private readonly poller: NodeJS.Timeout;
  private readonly renewer: NodeJS.Timeout;
  private readonly leaseMs: number;
  private readonly now: () => number;

  constructor(private readonly options: HeldCallGateOptions) {
    this.now = options.now ?? Date.now;
    this.leaseMs = options.leaseMs ?? HOLD_LEASE_MS;
    this.poller = setInterval(() => this.checkAll(), options.pollMs);
    this.poller.unref();
    this.renewer = setInterval(() => void this.renewLeases(), Math.max(1, Math.floor(this.leaseMs / 3)));
    this.renewer.unref();
  }

  /** Moves on the lease of every call held here, per tenant (one update each); a failure is logged, not fatal. */
  async renewLeases(): Promise<void> {
    const byTenant = new Map<TenantId, string[]>();
    for (const held of this.held.values()) {
      const ids = byTenant.get(held.tenantId);
      if (ids === undefined) byTenant.set(held.tenantId, [held.id]);
      else ids.push(held.id);
    }
    const now = this.now();
    const until = new Date(now + this.leaseMs);
    await Promise.all(
      [...byTenant].map(([tenant, ids]) =>
        this.track(this.options.store.renew(tenant, ids, until, new Date(now))).then(
          // Some leases had lapsed (their rows are now cancelled): their calls end now, not at their timeout.
          (lapsed) => (lapsed > 0 ? this.check(tenant) : undefined),
          (error: unknown) => this.options.logger.warn({ err: error, tenantId: tenant, held: ids.length }, 'approval leases not renewed'),
        ),
      ),
    );
  }

  /** Calls waiting on this replica. */
  get size(): number {
    return this.held.size;
  }

  async hold(
    info: RequestInfo,
    decision: { readonly reason: string; readonly ruleIds: readonly string[]; readonly snapshotVersion: number },
    sink: MessageSink,
    signal: CancelSignal,
  ): Promise<Admission> {
    if (signal.aborted) throw cancelled();
    const target = info.target;
    if (!target) throw new GatewayRequestError(APPROVAL_RPC.DENIED, 'This request needs approval, which only applies to calls of a tool, prompt or resource', undefined, 'denied');
    const tenant = toTenantId(info.record.tenantId);
    let hash: string;
    if (nestedDeeperThan(info.arguments, MAX_REVIEW_DEPTH)) {
      // Hashing recurses: arguments nested thousands deep overflow the stack. The caller's mistake.
      throw new GatewayRequestError(-32602, 'This call needs a human approval, and its arguments cannot be recorded for review (nested too deeply)', undefined, 'denied');
    }
    const unreviewable = unreviewableArguments(info.arguments);
    if (unreviewable !== undefined) {
      throw new GatewayRequestError(-32602, `This call needs a human approval, and its arguments cannot be recorded for review (${unreviewable})`, undefined, 'denied');
    }
    // Held whole for the approver, listed whole in the queue and repeated in each decision's audit event: no more than
    // an approver's edit may hold (megabytes of arguments made every listing of the queue hundreds of MiB; found by a
    // review). The body limit alone allowed up to 50 MiB.
    if (Buffer.byteLength(JSON.stringify(info.arguments ?? {}), 'utf8') > MAX_APPROVAL_ARGUMENT_BYTES) {
      throw new GatewayRequestError(-32602, `This call needs a human approval, and its arguments are too large to review (over ${MAX_APPROVAL_ARGUMENT_BYTES / 1024} KiB)`, undefined, 'denied');
    }
    try {
      hash = argumentsHash(info.arguments);
    } catch {
      // RFC 8785 has no canonical form for a lone surrogate (half of a UTF-16 pair, which JSON allows): nothing to bind
      // a decision to. Also the caller's mistake.
      throw new GatewayRequestError(-32602, 'This call needs a human approval, and its arguments cannot be recorded for review (they hold text that is not well-formed Unicode)', undefined, 'denied');
    }
    const session = info.record.id;
    const waiting = this.perSession.get(session) ?? 0;
    if (waiting >= MAX_HELD_PER_SESSION) {
      throw new GatewayRequestError(
        GATEWAY_RPC.RATE_LIMITED,
        `This session already has ${MAX_HELD_PER_SESSION} calls waiting for approval; try again once some are decided`,
        { reason: 'too_many_calls_awaiting_approval', retryAfterSeconds: 30 },
        'rate_limited',
      );
    }
    this.perSession.set(session, waiting + 1);
    const leave = () => {
      const left = (this.perSession.get(session) ?? 1) - 1;
      if (left > 0) this.perSession.set(session, left);
      else this.perSession.delete(session);
    };
    const expiresAt = this.now() + this.options.timeoutMs;
    const principal = info.record.principalKind;
    let id: string;
    try {
      id = await this.options.store.create({
        tenantId: tenant,
        requesterUserId: principal === 'user' && isUuid(info.record.principalId) ? info.record.principalId : null,
        agentClientId: principal === 'agent_client' && isUuid(info.record.principalId) ? info.record.principalId : null,
        apiKeyId: info.credentialId !== undefined && isUuid(info.credentialId) ? info.credentialId : null,
        mcpSessionId: info.record.id,
        upstreamId: target.upstream.id,
        // What is held, for the approver: a prompt and a tool may share a name, and a completion of a prompt's argument
        // is not the prompt itself.
        kind: target.kind,
        method: info.method,
        tool: target.name,
        argumentsHash: hash,
        // Exactly what will run if approved: a reviewer shown a redacted copy could approve what they could not see
        // (a free-text argument whose tail a secret pattern swallowed, a value under a key named like a credential).
        // The control plane shows it in full only to those who may decide (ADR 0014).
        arguments: info.arguments ?? {},
        // The policy's reason names the target, and a resource's name is its URI, which may carry credentials: the
        // reason only explains, so it is stored redacted (`tool` above keeps the URI whole, for the approver).
        reason: redactSecrets(decision.reason) as string,
        snapshotVersion: decision.snapshotVersion,
        expiresAt: new Date(expiresAt),
        heldUntil: new Date(this.now() + this.leaseMs),
        traceId: info.traceId,
      });
    } catch (error) {
      leave();
      this.options.logger.error({ err: error, tenantId: tenant, traceId: info.traceId }, 'approval not recorded; the held call fails');
      throw new GatewayRequestError(
        APPROVAL_RPC.UNAVAILABLE,
        'This call needs a human approval, and the approval could not be recorded right now; try again later',
        undefined,
        'error',
      );
    }
    // A resource's name is its URI, which may carry credentials: logged redacted.
    this.options.logger.info(
      { tenantId: tenant, approvalId: id, upstreamId: target.upstream.id, kind: target.kind, method: info.method, tool: redactSecrets(target.name), traceId: info.traceId },
      'call held for approval',
    );

    return new Promise<Admission>((resolve, reject) => {
      // How many progress notifications were sent, numbered from 0: the upstream's own progress is shifted by this
      // count (`progressSent`), so its first value, often 0, comes after the last of these (re-review: numbered from 1,
      // the upstream's 0 repeated the last one, and MCP has progress increase).
      let progress = 0;
      const sendProgress = () => {
        if (info.progressToken === undefined) return;
        sink.send({
          jsonrpc: '2.0',
          method: 'notifications/progress',
          params: { progressToken: info.progressToken, progress: progress++, message: `Waiting for a human to approve this call (approval ${id})` },
        });
      };
      const ticker = info.progressToken === undefined ? undefined : setInterval(sendProgress, this.options.progressMs);
      const expiry = setTimeout(() => void this.expire(tenant, id), Math.max(0, expiresAt - this.now()));
      // Before, a call whose key expired while it waited stayed approvable (the API showed it pending, an approval was
      // recorded) though nothing would run it: a revoked key's approvals are cancelled by the control plane, an expired
      // one's by nobody.
      const keyExpiresAt = info.credentialId === undefined ? null : (this.options.credentialExpiresAt?.(info.credentialId) ?? null);
      const keyExpiry =
        keyExpiresAt !== null && keyExpiresAt < expiresAt ? setTimeout(() => cancel(credentialExpired(id)), Math.max(0, keyExpiresAt - this.now())) : undefined;
      const stop = () => {
        this.held.delete(id);
        leave();
        clearInterval(ticker);
        clearTimeout(expiry);
        clearTimeout(keyExpiry);
        signal.removeEventListener('abort', onAbort);
      };
      const cancel = (error: Error) => {
        if (!this.held.has(id)) return;
        stop();
        this.track(this.options.store.close(tenant, id, 'cancelled')).catch((closeError: unknown) =>
          this.options.logger.warn({ err: closeError, tenantId: tenant, approvalId: id }, 'cancelled approval not marked'),
        );
        reject(error);
      };
      const onAbort = () => cancel(cancelled(id));
      const decided = (state: ApprovalState) => {
        if (!this.held.has(id)) return;
        stop();
        this.conclude(tenant, id, hash, state, decision, target.name, info.method).then((admission) => resolve(progress > 0 ? { ...admission, progressSent: progress } : admission), reject);
      };
      this.held.set(id, { tenantId: tenant, id, decided });
      signal.addEventListener('abort', onAbort, { once: true });
      // Cancelled while the row was being written: the listener above will never fire.
      if (signal.aborted) onAbort();
      else sendProgress();
    });
  }

  /** The control plane decided an approval of this tenant (Redis notice): look at the tenant's held calls now. */
  onDecided(tenantId: string): void {
    if (!isUuid(tenantId)) return;
    const tenant = toTenantId(tenantId);
    if ([...this.held.values()].some((held) => held.tenantId === tenant)) void this.check(tenant);
  }

  /** Checks every held approval in the database (the periodic fallback; tests call it directly). */
  async checkAll(): Promise<void> {
    const tenants = new Set([...this.held.values()].map((held) => held.tenantId));
    await Promise.all([...tenants].map((tenant) => this.check(tenant)));
  }

  /** Stops the poller and waits (bounded) for cancellation writes. Held calls end when their requests are aborted. */
  async close(graceMs = 2_000): Promise<void> {
    clearInterval(this.poller);
    clearInterval(this.renewer);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.writes]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, graceMs);
      }),
    ]);
    clearTimeout(timer);
  }

  private check(tenant: TenantId): Promise<void> {
    const running = this.checks.get(tenant);
    if (running) {
      // A notice during a read: read again afterwards, so a decision committed meanwhile is not missed.
      this.recheck.add(tenant);
      return running;
    }
    const run = (async () => {
      do {
        this.recheck.delete(tenant);
        const ids = [...this.held.values()].filter((held) => held.tenantId === tenant).map((held) => held.id);
        if (ids.length === 0) return;
        for (const state of await this.options.store.states(tenant, ids)) {
          if (state.status !== 'pending') this.held.get(state.id)?.decided(state);
        }
      } while (this.recheck.has(tenant));
    })()
      .catch((error: unknown) => this.options.logger.warn({ err: error, tenantId: tenant }, 'held approvals not checked; retrying on the next poll'))
      .finally(() => this.checks.delete(tenant));
    this.checks.set(tenant, run);
    return run;
  }

  private async expire(tenant: TenantId, id: string): Promise<void> {
    const held = this.held.get(id);
    if (!held) return;
    let state: ApprovalState | undefined;
    try {
      if (!(await this.track(this.options.store.close(tenant, id, 'expired')))) {
        // Decided at the last moment: honour the decision.
        state = (await this.options.store.states(tenant, [id]))[0];
      }
    } catch (error) {
      this.options.logger.warn({ err: error, tenantId: tenant, approvalId: id }, 'expired approval not marked');
    }
    held.decided(state && state.status !== 'pending' ? state : { id, status: 'expired', argumentsHash: '', editedArguments: null, decisionNote: null, consumedAt: null });
  }

  private async conclude(
    tenant: TenantId,
    id: string,
    hash: string,
    state: ApprovalState,
    decision: { readonly reason: string; readonly ruleIds: readonly string[]; readonly snapshotVersion: number },
    name: string,
    /** The held request's method: what an approver's edits must fit (`editedArgumentsProblem`). */
    method: string,
  ): Promise<Admission> {
    const log = { tenantId: tenant, approvalId: id, status: state.status };
    switch (state.status) {
      case 'approved': {
        if (state.argumentsHash !== hash) {
          this.options.logger.error(log, 'approval does not match the held call’s arguments; refused');
          throw new GatewayRequestError(APPROVAL_RPC.DENIED, 'The approval does not match this call’s arguments', { approvalId: id, reason: 'approval_mismatch' }, 'denied');
        }
        const editProblem = state.editedArguments === null ? undefined : editedArgumentsProblem(method, state.editedArguments);
        if (editProblem !== undefined) {
          // A resource read or a completion carries no arguments to replace: run as held, it would not be what the
          // approver approved (and the audit trail would record the edits as what ran). A prompt's edited to something
          // other than text would be refused upstream (or dropped by a stdio server). Refused before it is used.
          this.options.logger.warn({ ...log, problem: editProblem }, 'approval edited the arguments into something the request cannot run with; refused');
          throw new GatewayRequestError(
            APPROVAL_RPC.DENIED,
            `The approval's edited arguments cannot run (${editProblem}), so the call was not run; ask for an approval without such edits`,
            { approvalId: id, reason: 'edits_not_applicable' },
            'denied',
          );
        }
        // Used (`consumedAt`, "executed") only once every check after the wait let the call through (`confirm`): one
        // refused then (its key revoked meanwhile, the tool changed) ran nothing, and its approval stays unused.
        const confirm = async (): Promise<void> => {
          let consumed: boolean;
          try {
            consumed = await this.track(this.options.store.consume(tenant, id, new Date(this.now())));
          } catch (error) {
            this.options.logger.error({ ...log, err: error }, 'approved call not confirmed; it fails');
            throw new GatewayRequestError(APPROVAL_RPC.UNAVAILABLE, 'The call was approved but the approval could not be confirmed right now; try again later', { approvalId: id }, 'error');
          }
          if (!consumed) {
            throw new GatewayRequestError(APPROVAL_RPC.DENIED, 'The approval was already used', { approvalId: id, reason: 'approval_used' }, 'denied');
          }
          this.options.logger.info({ ...log, edited: state.editedArguments !== null }, 'held call approved');
        };
        return {
          decision: 'require_approval',
          reason: decision.reason,
          ruleIds: decision.ruleIds,
          snapshotVersion: decision.snapshotVersion,
          approvalId: id,
          ...(state.editedArguments ? { arguments: state.editedArguments } : {}),
          confirm,
        };
      }
      case 'denied': {
        this.options.logger.info(log, 'held call denied');
        const note = state.decisionNote?.slice(0, MAX_NOTE);
        throw new GatewayRequestError(
          APPROVAL_RPC.DENIED,
          `An approver denied this call of ${name}${note ? `: ${note}` : ''}`,
          { approvalId: id, reason: 'approval_denied', ...(note ? { note } : {}) },
          'denied',
        );
      }
      case 'expired':
        this.options.logger.info(log, 'held call expired');
        throw new GatewayRequestError(
          APPROVAL_RPC.EXPIRED,
          `This call of ${name} needed a human approval and none was given within ${Math.round(this.options.timeoutMs / 1000)} s`,
          { approvalId: id, reason: 'approval_expired', timeoutMs: this.options.timeoutMs },
          'denied',
        );
      default:
        throw new GatewayRequestError(APPROVAL_RPC.DENIED, 'The approval of this call was cancelled', { approvalId: id, reason: 'approval_cancelled' }, 'denied');
    }
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.writes.add(promise);
    void promise.finally(() => this.writes.delete(promise)).catch(() => undefined);
    return promise;
  }
}
