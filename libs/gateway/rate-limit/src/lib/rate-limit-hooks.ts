import type { TenantSettings } from '@portcullis/contracts/api';
import type { IrRateLimit, RateLimitSpec } from '@portcullis/contracts/policy-ir';
import { GATEWAY_RPC, GatewayRequestError, TASK_RESULT_MAX_WAIT_MS, type Admission, type RequestHooks, type RequestInfo } from '@portcullis/gateway/core';
import type { Logger } from '@portcullis/shared/util-logger';
import { Redis } from 'ioredis';
import { targetKey, TENANT_LIMIT_RULE, type RateLimitSubject } from './keys';
import type { AppliedLimit, RateLimitOutcome, RateLimitService } from './rate-limiter';

export { TENANT_LIMIT_RULE };

export interface RateLimitHooksOptions {
  readonly limiter: RateLimitService;
  /** The tenant's settings (fail mode, tenant-wide limit); undefined = defaults (fail open, no tenant limit). */
  readonly settings: (tenantId: string) => TenantSettings | undefined;
  readonly logger: Logger;
  /** Redis could not be asked and the tenant fails open: the call goes on unchecked (for the audit trail). */
  readonly onDegraded?: (info: RequestInfo) => void;
  /** The call was refused here; `prior` is what the earlier hooks (policy) had admitted it with. */
  readonly onRefused?: (info: RequestInfo, prior: Admission | undefined) => void;
  /** At most one "limits unchecked" warning per tenant per this many ms. Default 10 s. */
  readonly warnEveryMs?: number;
}

const specs = new WeakMap<object, RateLimitSpec>();

/** The compiled form (`null` = not set) as the limiter takes it (`undefined` = not set); cached per IR object. */
function specOf(ir: Readonly<IrRateLimit>): RateLimitSpec {
  let spec = specs.get(ir);
  if (spec === undefined) {
    spec = {
      scope: [...ir.scope],
      ...(ir.requests !== null ? { requests: ir.requests } : {}),
      ...(ir.windowSeconds !== null ? { windowSeconds: ir.windowSeconds } : {}),
      ...(ir.maxConcurrent !== null ? { maxConcurrent: ir.maxConcurrent } : {}),
    };
    specs.set(ir, spec);
  }
  return spec;
}

const tenantLimits = new WeakMap<object, AppliedLimit>();

function tenantLimitOf(settings: TenantSettings): AppliedLimit | undefined {
  const limit = settings.rateLimits.tenant;
  if (limit === undefined) return undefined;
  let applied = tenantLimits.get(limit);
  if (applied === undefined) {
    applied = { ruleId: TENANT_LIMIT_RULE, rateLimit: { scope: ['tenant'], ...limit } };
    tenantLimits.set(limit, applied);
  }
  return applied;
}

function newSubject(record: RequestInfo['record'], target: RequestInfo['target']): RateLimitSubject {
  return Object.freeze({
    tenantId: record.tenantId,
    userId: record.principalKind === 'user' ? record.principalId : null,
    agentClientId: record.principalKind === 'agent_client' ? record.principalId : null,
    tool: target ? targetKey(target.upstream.id, target.kind, target.name) : null,
  });
}

/** A session's subjects: the one without a target, and one per upstream, kind and name it called. */
interface SessionSubjects {
  readonly untargeted: RateLimitSubject;
  readonly targeted: Map<object, Map<string, Map<string, RateLimitSubject>>>;
  count: number;
}

const sessionSubjects = new WeakMap<RequestInfo['record'], SessionSubjects>();
/**
 * Targets remembered per session, and the longest name remembered (resource URIs are the agent's to invent): past
 * either, subjects are built each time.
 */
const MAX_SUBJECTS_PER_SESSION = 256;
const MAX_REMEMBERED_NAME_LENGTH = 512;

/**
 * Who and what a call is counted as. The same object for the same session and target, so the limiter can remember
 * its counter keys instead of building and hashing them on every call.
 */
function subjectOf(info: RequestInfo): RateLimitSubject {
  const { record, target } = info;
  let subjects = sessionSubjects.get(record);
  if (subjects === undefined) {
    subjects = { untargeted: newSubject(record, undefined), targeted: new Map(), count: 0 };
    sessionSubjects.set(record, subjects);
  }
  if (target === undefined) return subjects.untargeted;
  let byKind = subjects.targeted.get(target.upstream);
  let byName = byKind?.get(target.kind);
  const known = byName?.get(target.name);
  if (known !== undefined) return known;
  const subject = newSubject(record, target);
  if (subjects.count < MAX_SUBJECTS_PER_SESSION && target.name.length <= MAX_REMEMBERED_NAME_LENGTH) {
    subjects.count++;
    if (byKind === undefined) subjects.targeted.set(target.upstream, (byKind = new Map()));
    if (byName === undefined) byKind.set(target.kind, (byName = new Map()));
    byName.set(target.name, subject);
  }
  return subject;
}

type RuleLimits = NonNullable<Admission['rateLimits']>;
const NO_TENANT_LIMIT = {};
const NO_RULE_LIMITS: RuleLimits = Object.freeze([]);
const appliedLists = new WeakMap<object, WeakMap<object, readonly AppliedLimit[]>>();

/**
 * The limits a call is counted against: the tenant's own, then the admitting rules'. One frozen list per pair (both
 * come from shared objects: the tenant settings and the policy's remembered decision), so each limit is the same
 * object from call to call.
 */
function appliedOf(tenantLimit: AppliedLimit | undefined, ruleLimits: RuleLimits | undefined): readonly AppliedLimit[] {
  const first = tenantLimit ?? NO_TENANT_LIMIT;
  const second = ruleLimits ?? NO_RULE_LIMITS;
  let byRules = appliedLists.get(first);
  if (byRules === undefined) appliedLists.set(first, (byRules = new WeakMap()));
  let applied = byRules.get(second);
  if (applied === undefined) {
    const list: AppliedLimit[] = tenantLimit ? [tenantLimit] : [];
    for (const limit of second) list.push(Object.freeze({ ruleId: limit.ruleId, rateLimit: specOf(limit.rateLimit) }));
    applied = Object.freeze(list);
    byRules.set(second, applied);
  }
  return applied;
}

/**
 * Rate limits on the request path, as `RequestHooks.admit`. Per request it enforces the tenant's own limit
 * (`settings.rateLimits.tenant`) and the limits of the policy rules that admitted the call (`prior.rateLimits`,
 * from the policy hook that runs before this one), each counted under its scope (tenant, user, agent client,
 * tool, or a combination) and shared by every replica through Redis.
 *
 * Cost: a request with no limit, or whose request-rate limits are all answered from this replica's quota leases
 * (see `QuotaLeases`), returns synchronously (no promise, no Redis). Otherwise all of its Redis commands are issued
 * in one tick and ioredis auto-pipelining (on for the limiter's connection, see `createRateLimitRedis`) sends them
 * as one round trip; a key whose window is spent is refused from memory until the window ends, so a flood against
 * a limit costs no Redis traffic. Concurrency slots are released after the call (fire-and-forget, off the
 * response path).
 *
 * Over a limit → `RATE_LIMITED` with `{ limit, scope, retryAfterSeconds, windowSeconds, kind }` (HTTP 429 for a
 * plain JSON POST). Redis unavailable or slower than the limiter's timeout → the tenant's `rateLimits.failMode`:
 * `open` lets the call through (logged, and reported through `onDegraded` for the audit trail), `closed`
 * refuses it at once with `UNAVAILABLE`.
 */
export function rateLimitHooks(options: RateLimitHooksOptions): RequestHooks {
  const { limiter, logger } = options;
  const warnEveryMs = options.warnEveryMs ?? 10_000;
  const lastWarned = new Map<string, number>();
  const warn = (tenantId: string, failMode: string): void => {
    const now = Date.now();
    if (now - (lastWarned.get(tenantId) ?? Number.NEGATIVE_INFINITY) < warnEveryMs) return;
    lastWarned.set(tenantId, now);
    logger.warn({ tenantId, failMode }, failMode === 'open' ? 'rate limits unchecked: Redis unavailable, tenant fails open' : 'calls refused: rate limits cannot be checked (Redis unavailable), tenant fails closed');
  };

  /** The admission for an allowed call; throws the agent's error for a refused one. */
  const admitOrRefuse = (info: RequestInfo, prior: Admission | undefined, outcome: RateLimitOutcome, failMode: string): Admission | undefined => {
    if (outcome.allowed) {
      if (outcome.degraded) {
        warn(info.record.tenantId, failMode);
        options.onDegraded?.(info);
      }
      // Nothing to hand back after the call: no admission object (the common case costs no allocation).
      return outcome.holdsSlots ? { release: outcome.release } : undefined;
    }
    options.onRefused?.(info, prior);
    if (outcome.reason === 'unavailable') {
      warn(info.record.tenantId, failMode);
      throw new GatewayRequestError(
        GATEWAY_RPC.UNAVAILABLE,
        'Rate limits cannot be checked right now and this tenant does not allow unchecked calls; try again shortly',
        { reason: 'rate_limits_unavailable', retryAfterSeconds: outcome.retryAfterSeconds },
        'error',
      );
    }
    const tenantWide = outcome.ruleId === TENANT_LIMIT_RULE;
    throw new GatewayRequestError(
      GATEWAY_RPC.RATE_LIMITED,
      outcome.reason === 'rate'
        ? `Rate limit exceeded: ${outcome.limit} requests per ${outcome.windowSeconds} s ${describeScope(outcome.scope, tenantWide)}; retry after ${outcome.retryAfterSeconds} s`
        : `Too many calls in flight: at most ${outcome.limit} at once ${describeScope(outcome.scope, tenantWide)}; retry shortly`,
      {
        kind: outcome.reason === 'rate' ? 'requests' : 'concurrency',
        limit: outcome.limit,
        windowSeconds: outcome.windowSeconds,
        scope: outcome.scope,
        retryAfterSeconds: outcome.retryAfterSeconds,
      },
      'rate_limited',
    );
  };

  return {
    admit(info, _sink, _signal, prior) {
      const settings = options.settings(info.record.tenantId);
      const tenantLimit = settings ? tenantLimitOf(settings) : undefined;
      const ruleLimits = prior?.rateLimits;
      if (tenantLimit === undefined && (ruleLimits === undefined || ruleLimits.length === 0)) return undefined;
      const limits = appliedOf(tenantLimit, ruleLimits);
      const failMode = settings?.rateLimits.failMode ?? 'open';

      // A concurrency slot must outlive the call it is held for: the upstream's call timeout (up to an hour) on top of
      // the configured lease (itself longer than any approval wait); a tasks/result may wait for the task up to an hour.
      const callTimeoutMs = (info.target ?? info.taskOf)?.upstream.callTimeoutMs ?? 0;
      const heldForMs = info.method === 'tasks/result' ? Math.max(callTimeoutMs, TASK_RESULT_MAX_WAIT_MS) : callTimeoutMs;
      const outcome = limiter.check(subjectOf(info), limits, failMode, heldForMs);
      return outcome instanceof Promise ? outcome.then((settled) => admitOrRefuse(info, prior, settled, failMode)) : admitOrRefuse(info, prior, outcome, failMode);
    },
  };
}

function describeScope(scope: readonly string[], tenantWide: boolean): string {
  if (tenantWide) return 'for this tenant';
  return `per ${scope.map((part) => part.replace('_', ' ')).join(' and ')}`;
}

/**
 * The limiter's own Redis connection: auto-pipelining (all of a call's checks in one round trip), no offline queue
 * and no retries (while Redis is away a check fails at once and the tenant's fail mode applies instead of a wait).
 */
export function createRateLimitRedis(url: string, connectionName = 'gateway-rate-limit'): Redis {
  const redis = new Redis(url, {
    connectionName,
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.max(0, attempt - 1), 1_000),
  });
  redis.on('error', () => undefined);
  return redis;
}
