import type { IrRateLimit, PolicyEffect, PolicySnapshotIr, TargetKind } from '@portcullis/contracts/policy-ir';

export type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/**
 * A compiled, deep-frozen snapshot. It is plain JSON data (`JSON.stringify` works; `serializeSnapshot` gives
 * the canonical bytes). Snapshots returned by `compile` and `loadSnapshot` also carry precompiled matchers
 * and CEL programs, held privately by the engine.
 */
export type PolicySnapshot = DeepReadonly<PolicySnapshotIr>;

/** Who is calling. An agent client acting for a user sets both. */
export interface PolicyPrincipal {
  readonly userId?: string | null;
  readonly agentClientId?: string | null;
}

/** What is being called: an upstream's own tool/prompt name, or a resource URI. */
export interface PolicyTargetRef {
  readonly kind: TargetKind;
  readonly upstream: string;
  readonly name: string;
}

export interface PolicyInput {
  readonly principal: PolicyPrincipal;
  readonly target: PolicyTargetRef;
  /** Tool call / prompt arguments (JSON). Numbers are CEL doubles. */
  readonly arguments?: Readonly<Record<string, unknown>> | null;
  readonly context: {
    /** Request time: an ISO 8601 string or a Date. The engine never reads the clock itself. */
    readonly time: string | Date;
    readonly ip?: string | null;
  };
}

export interface ConditionError {
  readonly ruleId: string;
  readonly effect: PolicyEffect;
  /** Whether the rule counted as matched anyway (deny and require_approval rules fail safe). */
  readonly countedAsMatched: boolean;
  readonly message: string;
}

export interface Decision {
  readonly effect: PolicyEffect;
  /** The rules that decided (all matching rules of the winning effect), sorted; empty when the default applied. */
  readonly ruleIds: readonly string[];
  /** Operator-facing explanation: which rules decided and why. For audit logs and the portal, not for agents. */
  readonly reason: string;
  /** Agent-facing message: says what happened without revealing rules, conditions or tenant structure. */
  readonly agentMessage: string;
  readonly snapshotVersion: number;
  /** True when no rule matched and the tenant default decided. */
  readonly defaulted: boolean;
  /** Conditions that failed to evaluate while deciding. */
  readonly conditionErrors: readonly ConditionError[];
  /** Rate limits of the deciding rules (only for allow / require_approval); enforced by the gateway. */
  readonly rateLimits: readonly { readonly ruleId: string; readonly rateLimit: DeepReadonly<IrRateLimit> }[];
}

export interface CompileError {
  /** The rule the error belongs to, or null for errors outside rules (directory, tenant fields). */
  readonly ruleId: string | null;
  /** Dotted path into the source, e.g. `rules.3.condition`. */
  readonly path: string;
  readonly message: string;
}

export type CompileResult =
  | { readonly ok: true; readonly snapshot: PolicySnapshot }
  | { readonly ok: false; readonly errors: readonly CompileError[] };
