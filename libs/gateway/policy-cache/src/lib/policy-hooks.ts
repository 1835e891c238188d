import {
  GATEWAY_RPC,
  GatewayRequestError,
  refusalAfter,
  type Admission,
  type ApprovalGate,
  type RequestHooks,
  type RequestInfo,
  type MessageSink,
  type TargetKind,
  type TaskTool,
} from '@portcullis/gateway/core';
import type { CancelSignal, SessionRecord, UpstreamConfig } from '@portcullis/gateway/mcp';
import { evaluate, upstreamInUse, usableTarget, visibleTools, type Decision, type PolicyPrincipal, type PolicySnapshot, type UsageContext } from '@portcullis/policy/engine';

/** Where the hooks find a tenant's snapshot in force (the `SnapshotCache`, or a fixed map in tests). */
export interface SnapshotLookup {
  get(tenantId: string): PolicySnapshot | undefined;
}

const KIND_LABEL: Readonly<Record<TargetKind, string>> = { tool: 'Tool', prompt: 'Prompt', resource: 'Resource' };

/** Agent-facing: names what was refused (as the agent can see it) and never a rule, condition or tenant fact. */
const NO_POLICY_MESSAGE =
  'No access policy is in force for this tenant yet, so the gateway denies every call. Ask a tenant administrator to publish a policy.';

/**
 * The policy principal of a session. API keys are bound to an agent client (the control plane issues no other kind
 * today) or, for keys without one, to a user; the session record carries one of the two. When credentials that act
 * for a user through an agent client arrive (OAuth), the record needs both ids and this maps both.
 */
export function principalOf(record: SessionRecord): PolicyPrincipal {
  return record.principalKind === 'agent_client' ? { agentClientId: record.principalId } : { userId: record.principalId };
}

const describe = (kind: TargetKind, name: string, upstream: UpstreamConfig): string =>
  `${KIND_LABEL[kind]} ${JSON.stringify(name.slice(0, 256))} on ${JSON.stringify(upstream.toolPrefix)}`;

/** Wraps a list item for `visibleTools` without copying it. */
interface Listed {
  readonly kind: TargetKind;
  readonly upstream: string;
  readonly name: string;
  readonly item: Readonly<Record<string, unknown>>;
}

/** `policyHooks`: the deciding hooks, and the hook that holds calls needing approval, to run after the guards. */
export type PolicyHooks = RequestHooks & {
  /**
   * Holds a call the policy said needs approval (`approvalGate.hold`) and decides it again when it resumes. Compose it
   * after the hooks that must refuse a call before it is held (rate limits, the audit trail's fail-closed check), so
   * a flood of calls needing approval is limited like any other instead of filling the approvers' queue; a call that
   * needs approval and never met this hook is refused by `composeHooks`.
   */
  readonly hold: RequestHooks;
};

/** What resource templates are of use for (reads through them). */
const RESOURCES = ['resource'] as const;

/**
 * Policy enforcement on the gateway's request path, as `RequestHooks`:
 *
 * - `filter` hides the tools, prompts and resources the session's principal may not use (`visibleTools`: listed when
 *   some arguments could be allowed). Resource templates stay listed while the principal may read some resource on
 *   their upstream (`upstreamInUse` for resources): a template is a family of URIs, rules are written against concrete
 *   URIs, and every read through a template is decided on its expanded URI by `admit`; an upstream whose resources are
 *   all closed to the principal lists none of its templates either. A tenant without a snapshot lists nothing.
 * - `admit` decides routed requests (tools/call, prompts/get, resources/read and (un)subscribe, completion refs):
 *   deny → a `POLICY_DENIED` JSON-RPC error with the engine's agent message and the snapshot version; allow → an
 *   admission carrying the decision for the audit trail and rate limits; require_approval → the same admission with
 *   that decision (held later by `hold`), or an `APPROVAL_UNAVAILABLE` error when no gate is configured. Reading a
 *   task (tasks/get, tasks/result) asks again whether its tool is still the principal's to use, under some arguments,
 *   at this time and from this address (`usableTarget`: the call's own arguments are not kept): a tool revoked since
 *   denies it. Cancelling a task is never refused. Other requests without a target pass untouched.
 * - `recheck` asks the same of a `tasks/result` that waited, when its answer comes back; `taskMessage` of an
 *   upstream's messages about a task (at the time they arrive, from no known address).
 * - `instructions` relays an upstream's instructions only to a principal who may use something on it
 *   (`upstreamInUse`): they describe the upstream as a whole, and one the policy keeps from the principal is not
 *   theirs to read about. A tenant without a snapshot relays none.
 * - `alsoReadable` decides each item of another URI in a read's answer (a directory's files) as a read of that URI
 *   by the same request: only an allow passes (a deny, conditional or not, and require_approval keep it back).
 * - `upstreamMessage` likewise keeps an upstream the principal may use nothing on from talking to the agent outside
 *   a call: its log messages, and its requests for the agent's roots, model (sampling) or user (elicitation).
 * - `hold.admit`: for an admission that says require_approval, `approvalGate.hold`, then the policy in force when
 *   the call resumes decides again on the arguments it will run with.
 *
 * Everything except an approval hold is synchronous: one map lookup and one `evaluate` per call.
 */
export function policyHooks(snapshots: SnapshotLookup, approvalGate?: ApprovalGate): PolicyHooks {
  return {
    filter(record, kind, upstream, items) {
      const snapshot = snapshots.get(record.tenantId);
      if (snapshot === undefined) return [];
      if (kind === 'resourceTemplate') return upstreamInUse(snapshot, principalOf(record), upstream.name, RESOURCES) ? items : [];
      const field = kind === 'resource' ? 'uri' : 'name';
      const listed: Listed[] = [];
      for (const item of items) {
        const name = item[field];
        if (typeof name === 'string') listed.push({ kind, upstream: upstream.name, name, item });
      }
      return visibleTools(snapshot, principalOf(record), listed).map((entry) => entry.item);
    },

    instructions(record, upstream, text) {
      const snapshot = snapshots.get(record.tenantId);
      return snapshot !== undefined && upstreamInUse(snapshot, principalOf(record), upstream.name) ? text : undefined;
    },

    alsoReadable(info: RequestInfo, uri: string): boolean {
      const snapshot = snapshots.get(info.record.tenantId);
      const target = info.target;
      if (snapshot === undefined || target === undefined) return false;
      const decision = evaluate(snapshot, {
        principal: principalOf(info.record),
        target: { kind: 'resource', upstream: target.upstream.name, name: uri },
        arguments: null,
        context: { time: new Date(info.startedAt), ip: info.clientIp ?? null },
      });
      return decision.effect === 'allow';
    },

    upstreamMessage(record, upstream) {
      const snapshot = snapshots.get(record.tenantId);
      if (snapshot === undefined || !upstreamInUse(snapshot, principalOf(record), upstream.name)) {
        throw new GatewayRequestError(GATEWAY_RPC.POLICY_DENIED, `Nothing on "${upstream.name}" is this client's to use.`, { snapshotVersion: snapshot?.version ?? null }, 'denied');
      }
    },

    admit(info: RequestInfo): Admission | undefined {
      const target = info.target;
      if (target === undefined) {
        if (info.taskOf !== undefined && info.method !== 'tasks/cancel') admitTaskRead(snapshots, info.record, info.taskOf, { time: new Date(info.startedAt), ip: info.clientIp ?? null });
        return undefined;
      }
      const snapshot = snapshots.get(info.record.tenantId);
      // Built only for a refusal: an allowed call needs no agent-facing wording.
      const what = () => describe(target.kind, target.name, target.upstream);
      if (snapshot === undefined) {
        throw new GatewayRequestError(GATEWAY_RPC.POLICY_DENIED, `${what()} was denied. ${NO_POLICY_MESSAGE}`, { snapshotVersion: null }, 'denied');
      }
      const decision = evaluate(snapshot, {
        principal: principalOf(info.record),
        target: { kind: target.kind, upstream: target.upstream.name, name: target.name },
        arguments: info.arguments ?? null,
        context: { time: new Date(info.startedAt), ip: info.clientIp ?? null },
      });
      if (decision.effect === 'deny') {
        throw new GatewayRequestError(
          GATEWAY_RPC.POLICY_DENIED,
          `${what()} was denied. ${decision.agentMessage}`,
          { snapshotVersion: decision.snapshotVersion },
          'denied',
        );
      }
      if (decision.effect === 'require_approval' && approvalGate === undefined) {
        throw new GatewayRequestError(
          GATEWAY_RPC.APPROVAL_UNAVAILABLE,
          `${what()} needs approval by a person before it runs, and approvals are not available on this gateway, so it was not run.`,
          { snapshotVersion: decision.snapshotVersion },
          'denied',
        );
      }
      return admissionOf(decision);
    },

    recheck(info: RequestInfo): void {
      // A task's result read after a wait: the tool may have been revoked meanwhile.
      if (info.target === undefined && info.taskOf !== undefined && info.method !== 'tasks/cancel') {
        admitTaskRead(snapshots, info.record, info.taskOf, { time: new Date(), ip: info.clientIp ?? null });
      }
    },

    taskMessage(record: SessionRecord, taskOf: TaskTool): void {
      // A task's status and the requests its upstream makes within it are reading the task (from no known address).
      admitTaskRead(snapshots, record, taskOf, { time: new Date(), ip: null });
    },

    hold: {
      admit(info: RequestInfo, sink: MessageSink, signal: CancelSignal, prior?: Admission): Promise<Admission> | undefined {
        const target = info.target;
        if (target === undefined || prior?.decision !== 'require_approval' || prior.approvalId !== undefined) return undefined;
        if (approvalGate === undefined) throw new Error('a call needing approval reached the hold without an approval gate');
        const what = () => describe(target.kind, target.name, target.upstream);
        return approvalGate
          .hold(info, { reason: prior.reason ?? '', ruleIds: prior.ruleIds ?? [], snapshotVersion: prior.snapshotVersion ?? 0 }, sink, signal)
          .then((held): Admission => {
            // The call waited (minutes, perhaps): it runs only if the policy in force now still lets it, with the
            // arguments it will run with (an approver's edits were never what the policy decided on). A human's
            // approval covers "needs approval", never a deny, a rule removed meanwhile or a tenant without policy.
            const current = snapshots.get(info.record.tenantId);
            const edited = held.arguments !== undefined;
            const recheck = current
              ? evaluate(current, {
                  principal: principalOf(info.record),
                  target: { kind: target.kind, upstream: target.upstream.name, name: target.name },
                  arguments: held.arguments ?? info.arguments ?? null,
                  context: { time: new Date(), ip: info.clientIp ?? null },
                })
              : undefined;
            if (recheck === undefined || recheck.effect === 'deny') {
              const why = edited ? 'was approved with edited arguments, which the policy denies' : 'was approved, but the policy in force now denies it';
              throw refusalAfter(
                new GatewayRequestError(
                  GATEWAY_RPC.POLICY_DENIED,
                  `${what()} ${why}. ${recheck?.agentMessage ?? NO_POLICY_MESSAGE}`,
                  { snapshotVersion: recheck?.snapshotVersion ?? null, approvalId: held.approvalId ?? null },
                  'denied',
                ),
                held,
              );
            }
            return held;
          });
      },
    },
  };
}

/**
 * Refuses to read a task whose tool the principal may no longer use under any arguments, at this time and from this
 * address (the call's own arguments are not kept).
 */
function admitTaskRead(snapshots: SnapshotLookup, record: SessionRecord, tool: TaskTool, context: UsageContext): void {
  const snapshot = snapshots.get(record.tenantId);
  const what = () => describe(tool.kind, tool.name, tool.upstream);
  if (snapshot === undefined) {
    throw new GatewayRequestError(GATEWAY_RPC.POLICY_DENIED, `${what()} was denied. ${NO_POLICY_MESSAGE}`, { snapshotVersion: null }, 'denied');
  }
  if (!usableTarget(snapshot, principalOf(record), { kind: tool.kind, upstream: tool.upstream.name, name: tool.name }, context)) {
    throw new GatewayRequestError(
      GATEWAY_RPC.POLICY_DENIED,
      `${what()} is no longer allowed for you, so the task its call started cannot be read.`,
      { snapshotVersion: snapshot.version },
      'denied',
    );
  }
}

/** One admission per decision: the engine answers repeated questions with the same (frozen) decision. */
const admissions = new WeakMap<Decision, Admission>();

function admissionOf(decision: Decision): Admission {
  let admission = admissions.get(decision);
  if (admission === undefined) {
    admission = Object.freeze(newAdmission(decision));
    admissions.set(decision, admission);
  }
  return admission;
}

function newAdmission(decision: Decision): Admission {
  return {
    decision: decision.effect === 'require_approval' ? 'require_approval' : 'allow',
    reason: decision.reason,
    ruleIds: decision.ruleIds,
    snapshotVersion: decision.snapshotVersion,
    // The snapshot's arrays are frozen (deeply readonly); the admission type's scope array is only shallowly so.
    rateLimits: decision.rateLimits as Admission['rateLimits'],
  };
}
