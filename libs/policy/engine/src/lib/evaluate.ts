import type { PolicyEffect, TargetKind } from '@portcullis/contracts/policy-ir';
import { redactSecrets } from '@portcullis/shared/util-redact';
import { workFor, type ConditionContext, type ConditionProgram } from './cel';
import { withConditionBudget } from './condition-budget';
import { canonicalResourceUri } from './resource-uri';
import { runtimeOf, type Runtime, type RuleRuntime, type TargetEntry } from './runtime';
import type { ConditionError, Decision, PolicyInput, PolicyPrincipal, PolicySnapshot, PolicyTargetRef } from './types';

const AGENT_MESSAGES: Readonly<Record<PolicyEffect, string>> = {
  allow: 'Allowed by policy.',
  deny: "This request is not permitted by the tenant's policy.",
  require_approval: 'This request needs approval by a person before it runs.',
};

const PRECEDENCE_NOTES: Readonly<Record<PolicyEffect, string>> = {
  allow: '',
  deny: ' (deny takes precedence over allow and require_approval)',
  require_approval: ' (require_approval takes precedence over allow)',
};

const NO_GROUPS: readonly string[] = Object.freeze([]);
const MAX_REASON_LENGTH = 1_000;

interface PrincipalView {
  readonly userId: string | null;
  readonly agentClientId: string | null;
  readonly role: string | null;
  readonly groups: readonly string[];
}

function viewOf(runtime: Runtime, principal: PolicyPrincipal): PrincipalView {
  const userId = principal.userId || null;
  const member = userId === null ? undefined : runtime.members.get(userId);
  return {
    userId,
    agentClientId: principal.agentClientId || null,
    role: member?.role ?? null,
    groups: member?.groups ?? NO_GROUPS,
  };
}

/**
 * Appends to `out` the rules of `entry` that apply to the principal, in priority order without duplicates.
 * Each subject list is already in priority order, so a single contributing list needs no sorting.
 */
function collect(entry: TargetEntry, who: PrincipalView, out: RuleRuntime[]): void {
  if (entry.empty) return;
  let lists = 0;
  const add = (list: readonly RuleRuntime[] | undefined): void => {
    if (list === undefined || list.length === 0) return;
    lists++;
    for (const rule of list) out.push(rule);
  };
  add(entry.authenticated);
  if (who.userId !== null) add(entry.byUser.get(who.userId));
  if (who.agentClientId !== null) add(entry.byClient.get(who.agentClientId));
  if (who.role !== null) add(entry.byRole.get(who.role));
  for (const group of who.groups) add(entry.byGroup.get(group));
  if (lists > 1) {
    out.sort((a, b) => a.index - b.index);
    let write = 0;
    for (let read = 0; read < out.length; read++) {
      if (write === 0 || out[write - 1] !== out[read]) out[write++] = out[read] as RuleRuntime;
    }
    out.length = write;
  }
}

/**
 * The target as reasons name it. A resource's name is its URI, the agent's to write (`postgres://user:pw@…`,
 * `?token=…`): redacted here, before the reason is cut to MAX_REASON_LENGTH, where a cut between a password and the
 * `@` after it would leave the later redaction of the stored reason nothing to recognise it by.
 */
const describeTarget = (target: PolicyTargetRef): string =>
  `${target.kind} ${JSON.stringify(target.kind === 'resource' ? (redactSecrets(target.name) as string) : target.name)} on upstream ${JSON.stringify(target.upstream)}`;

const describePrincipal = (who: PrincipalView): string =>
  [who.userId === null ? null : `user ${who.userId}`, who.agentClientId === null ? null : `agent client ${who.agentClientId}`]
    .filter((part) => part !== null)
    .join(' via ');

const clip = (text: string): string => (text.length <= MAX_REASON_LENGTH ? text : `${text.slice(0, MAX_REASON_LENGTH - 1)}…`);

function toDate(time: string | Date): Date {
  return time instanceof Date ? time : new Date(time);
}

/**
 * Decisions that depend only on who asks and for what: those where no rule that applies has a condition (arguments,
 * time and address then cannot change the outcome). Kept per snapshot (gone with it), keyed by target kind, upstream,
 * name, user and agent client (the reason names the target and the principal, so nothing coarser will do); a
 * gateway asks the same question call after call, and building the reason text is most of the work of deciding.
 * Bounded per snapshot: past the bound, decisions are computed each time.
 */
type Nested = Map<string | null, Nested | Decision>;

interface DecisionMemo {
  count: number;
  readonly root: Nested;
}

const memos = new WeakMap<PolicySnapshot, DecisionMemo>();
const MEMO_MAX_DECISIONS = 10_000;
/** A longer target name (an agent can send any resource URI) is decided each time rather than kept. */
const MEMO_MAX_NAME_LENGTH = 512;

/** @internal How many decisions are remembered for a snapshot (specs check the bounds). */
export const rememberedDecisions = (snapshot: PolicySnapshot): number => memos.get(snapshot)?.count ?? 0;

function memoOf(snapshot: PolicySnapshot): DecisionMemo {
  let memo = memos.get(snapshot);
  if (memo === undefined) {
    memo = { count: 0, root: new Map() };
    memos.set(snapshot, memo);
  }
  return memo;
}

function recalled(memo: DecisionMemo, keys: readonly (string | null)[]): Decision | undefined {
  let level: Nested | Decision | undefined = memo.root;
  for (const key of keys) {
    if (!(level instanceof Map)) return undefined;
    level = level.get(key);
  }
  return level instanceof Map ? undefined : level;
}

function remember(memo: DecisionMemo, keys: readonly (string | null)[], decision: Decision): void {
  if (memo.count >= MEMO_MAX_DECISIONS) return;
  memo.count++;
  let level = memo.root;
  for (let index = 0; index < keys.length - 1; index++) {
    const key = keys[index] as string | null;
    let next = level.get(key);
    if (!(next instanceof Map)) level.set(key, (next = new Map()));
    level = next;
  }
  level.set(keys[keys.length - 1] as string | null, decision);
}

/** Shared decisions are frozen through their arrays: no caller can change what another is told. */
function frozen(decision: Decision): Decision {
  Object.freeze(decision.ruleIds);
  for (const limit of decision.rateLimits) Object.freeze(limit);
  Object.freeze(decision.rateLimits);
  for (const error of decision.conditionErrors) Object.freeze(error);
  Object.freeze(decision.conditionErrors);
  return Object.freeze(decision);
}

/**
 * Decides one request. Deny overrides require_approval, which overrides allow; when no rule applies, the
 * tenant default decides. A condition that fails to evaluate (or yields a non-boolean) does not match for
 * allow rules and does match for deny and require_approval rules (fail safe).
 *
 * Rules are visited in priority order; once an effect has matched, rules of lower priority are not evaluated
 * (they cannot change the outcome), so `ruleIds` lists every matching rule of the winning effect.
 *
 * The decision is frozen (its arrays too). When no applicable rule has a condition it is remembered and the same
 * object answers the same principal and target again, until the snapshot is replaced.
 */
export function evaluate(snapshot: PolicySnapshot, input: PolicyInput): Decision {
  const runtime = runtimeOf(snapshot);
  const version = snapshot.version;
  const who = viewOf(runtime, input.principal);
  const target = input.target;
  if (who.userId === null && who.agentClientId === null) {
    return frozen({
      effect: 'deny',
      ruleIds: [],
      reason: `deny: the request has no principal (neither user nor agent client) for ${describeTarget(target)}`,
      agentMessage: AGENT_MESSAGES.deny,
      snapshotVersion: version,
      defaulted: false,
      conditionErrors: [],
      rateLimits: [],
    });
  }

  const entry = runtime.entryFor(target.kind, target.upstream, target.name);
  const candidates: RuleRuntime[] = [];
  collect(entry, who, candidates);
  const limitCandidates: RuleRuntime[] = [];
  if (entry.limitsOnly !== undefined) collect(entry.limitsOnly, who, limitCandidates);
  let unconditional = true;
  for (const rule of candidates) if (rule.condition !== null) unconditional = false;
  for (const rule of limitCandidates) if (rule.condition !== null) unconditional = false;
  // Conditions share one time budget a decision (condition-budget.ts); the rest fail safe once it is spent.
  if (!unconditional) return frozen(withConditionBudget(() => decide(snapshot, input, who, candidates, limitCandidates)));
  if (target.name.length > MEMO_MAX_NAME_LENGTH) return frozen(decide(snapshot, input, who, candidates, limitCandidates));

  const memo = memoOf(snapshot);
  const keys = [target.kind, target.upstream, target.name, who.userId, who.agentClientId];
  const known = recalled(memo, keys);
  if (known !== undefined) return known;
  const decision = frozen(decide(snapshot, input, who, candidates, limitCandidates));
  remember(memo, keys, decision);
  return decision;
}

/** Most values (array elements and object entries, at any depth) the arguments may hold for conditions to run. */
export const MAX_CONDITION_VALUES = 2_000;

/**
 * Most values × characters (of every string and key, at any depth) the arguments may hold for conditions to run. A
 * condition may take each value to every string (`args.words.exists(w, args.text.contains(w))`): 2,000 words against
 * 1 MB of text blocked the event loop, every tenant's calls on the replica with it, for 10 s. At this bound such a
 * condition runs in well under 100 ms, while one large argument with few others (a file's 2 MB of content beside its
 * path) still runs its conditions.
 */
export const MAX_CONDITION_WORK = 20_000_000;

/** The arguments' size as conditions' work is bounded by: values and characters, or too many values to count on. */
type ArgumentsSize = { readonly values: number; readonly characters: number } | { readonly tooMany: true };

/** The arguments' values and characters (of every string and key, at any depth); walks no further than the bound. */
function argumentsSize(value: unknown): ArgumentsSize {
  // The arguments' own entries and elements count, not the object that holds them.
  let values = 0;
  let characters = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const next = stack.pop();
    if (typeof next === 'string') characters += next.length;
    if (typeof next !== 'object' || next === null) continue;
    if (Array.isArray(next)) {
      values += next.length;
      for (const child of next) stack.push(child);
    } else {
      const entries = Object.entries(next);
      values += entries.length;
      for (const [key, child] of entries) {
        characters += key.length;
        stack.push(child);
      }
    }
    if (values > MAX_CONDITION_VALUES) return { tooMany: true };
  }
  return { values, characters };
}

/**
 * Most a condition's work may come to (`workFor`: steps × operations × largest value, bounds that over-count the
 * common case many times over) before it fails safe.
 */
export const MAX_CONDITION_STEPS_WORK = 200_000_000;

/**
 * Why the arguments are too large for `condition` to run on, or null: more values × characters than MAX_CONDITION_WORK
 * (a condition may take each value to every string), or more work than MAX_CONDITION_STEPS_WORK as its syntax tree
 * bounds it for a request this size (`workFor`; the target's name counts as characters, as conditions see it).
 */
function tooLargeForConditions(size: ArgumentsSize, condition: ConditionProgram, text: number): string | null {
  if ('tooMany' in size) return `arguments too large for conditions (more than ${MAX_CONDITION_VALUES} values)`;
  if (Math.max(1, size.values) * size.characters > MAX_CONDITION_WORK) {
    return `arguments too large for conditions (${size.values} values with ${size.characters} characters of text)`;
  }
  if (workFor(condition.growth, size.values, size.characters + text) > MAX_CONDITION_STEPS_WORK) {
    return `arguments too large for conditions (${size.values} values with ${size.characters + text} characters of text, for what this condition does with them)`;
  }
  return null;
}

/**
 * The target as conditions see it: a resource's URI in the one spelling rules match (resource-uri.ts), so that a
 * condition such as `target.name.contains("/secret/")` cannot be stepped around by a `%73ecret`-style spelling either.
 */
const conditionTarget = (target: PolicyTargetRef): ConditionContext['target'] => ({
  kind: target.kind,
  upstream: target.upstream,
  name: target.kind === 'resource' ? canonicalResourceUri(target.name) : target.name,
});

/** The decision among `candidates` (the rules that apply to the principal and target, in priority order). */
function decide(
  snapshot: PolicySnapshot,
  input: PolicyInput,
  who: PrincipalView,
  candidates: readonly RuleRuntime[],
  limitCandidates: readonly RuleRuntime[],
): Decision {
  const version = snapshot.version;
  const target = input.target;

  let context: ConditionContext | null = null;
  const contextFor = (): ConditionContext =>
    (context ??= {
      args: input.arguments ?? {},
      principal: {
        userId: who.userId ?? '',
        agentClientId: who.agentClientId ?? '',
        role: who.role ?? '',
        groups: who.groups,
      },
      target: conditionTarget(target),
      request: { time: toDate(input.context.time), ip: input.context.ip ?? '' },
    });

  // The arguments' size, measured once a condition asks.
  let size: ArgumentsSize | undefined;
  let winningRank = -1;
  const matched: RuleRuntime[] = [];
  let conditionErrors: ConditionError[] | null = null;
  /** What a rule's condition says: whether it holds, or why it could not be evaluated. */
  const conditionOf = (condition: NonNullable<RuleRuntime['condition']>): { holds: boolean; failure: string | null } => {
    // A condition may compare every value of the arguments with every other (`args.a.exists(x, x in args.b)`):
    // with the agent choosing their size that is seconds of a blocked event loop, so conditions see at most
    // MAX_CONDITION_VALUES values and are unevaluable (fail safe) beyond.
    // The name as conditions see it (`contextFor`): a resource's canonical URI, up to three times the name's length.
    const overBudget = tooLargeForConditions((size ??= argumentsSize(input.arguments)), condition, contextFor().target.name.length);
    if (overBudget !== null) return { holds: false, failure: overBudget };
    try {
      const result = condition(contextFor());
      if (typeof result === 'boolean') return { holds: result, failure: null };
      return { holds: false, failure: `condition returned ${typeof result}, not a bool` };
    } catch (error) {
      return { holds: false, failure: (error instanceof Error ? error.message : String(error)).split('\n', 1)[0] ?? 'error' };
    }
  };
  for (const rule of candidates) {
    if (winningRank !== -1 && rule.rank > winningRank) break;
    let applies = true;
    if (rule.condition !== null) {
      const { holds, failure } = conditionOf(rule.condition);
      applies = holds;
      if (failure !== null) {
        // Fail safe: an unevaluable condition cannot grant access, but it still restricts.
        applies = rule.rule.effect !== 'allow';
        (conditionErrors ??= []).push({
          ruleId: rule.rule.id,
          effect: rule.rule.effect,
          countedAsMatched: applies,
          message: failure,
        });
      }
    }
    if (applies) {
      winningRank = rule.rank;
      matched.push(rule);
    }
  }

  const errors = conditionErrors ?? [];
  const errorNote =
    errors.length === 0
      ? ''
      : `; condition errors: ${errors
          .map((e) => `${e.ruleId} (${e.countedAsMatched ? 'counted as matched' : 'not matched'}: ${e.message})`)
          .join(', ')}`;
  const principalText = describePrincipal(who);

  // The limits of allow rules that name the target only in another case (`TargetEntry.limitsOnly`) count a call an
  // allow admits, as a restriction does: whichever allow rule or default admits it. Their conditions decide as for a
  // deny (one that cannot be evaluated applies).
  const foldedLimits = (): Decision['rateLimits'] => {
    const limits: Decision['rateLimits'][number][] = [];
    for (const rule of limitCandidates) {
      if (rule.rule.rateLimit === null) continue;
      if (rule.condition !== null) {
        const { holds, failure } = conditionOf(rule.condition);
        if (!holds && failure === null) continue;
      }
      limits.push({ ruleId: rule.rule.id, rateLimit: rule.rule.rateLimit });
    }
    return limits;
  };

  if (matched.length === 0) {
    const effect = snapshot.defaultEffect;
    return {
      effect,
      ruleIds: [],
      reason: clip(
        `${effect}: no rule matched ${describeTarget(target)} for ${principalText}; tenant default is ${effect}${errorNote}`,
      ),
      agentMessage: AGENT_MESSAGES[effect],
      snapshotVersion: version,
      defaulted: true,
      conditionErrors: errors,
      rateLimits: effect !== 'allow' || limitCandidates.length === 0 ? [] : foldedLimits(),
    };
  }

  const effect = (matched[0] as RuleRuntime).rule.effect;
  const ruleIds = matched.map((rule) => rule.rule.id).sort();
  const rateLimits =
    effect === 'deny'
      ? []
      : [
          ...matched.flatMap((rule) => (rule.rule.rateLimit === null ? [] : [{ ruleId: rule.rule.id, rateLimit: rule.rule.rateLimit }])),
          // Only where an allow decides: a call held for approval gets the deciding require_approval rules' limits, and
          // an allow's limit reaches it in no spelling (before, only in another case than the allow's).
          ...(effect !== 'allow' || limitCandidates.length === 0 ? [] : foldedLimits()),
        ];
  return {
    effect,
    ruleIds,
    reason: clip(
      `${effect}: ${ruleIds.length === 1 ? 'rule' : 'rules'} ${ruleIds.join(', ')} matched ${describeTarget(target)} ` +
        `for ${principalText}${PRECEDENCE_NOTES[effect]}${errorNote}`,
    ),
    agentMessage: AGENT_MESSAGES[effect],
    snapshotVersion: version,
    defaulted: false,
    conditionErrors: errors,
    rateLimits,
  };
}

/** Where a request is made from, and when: what `usableTarget` decides conditions with. */
export interface UsageContext {
  readonly time: string | Date;
  /** Null when not known: a condition that reads the address is then taken as able to go either way. */
  readonly ip: string | null;
}

/**
 * Whether the principal may use the target under SOME arguments, at this time and from this address: what deciding
 * on a request about an earlier call (reading the task it started) needs, where that call's arguments are not known.
 * Sharper than `visibleTools`: a rule whose condition reads neither the arguments nor an unknown address is decided
 * (a deny by time or address alone applies; an allow by them may not), one that reads them could go either way.
 * Not usable when a deny rule certainly applies; usable when an allow or require_approval rule may apply; otherwise
 * the tenant default decides. Conditions that fail count as in `evaluate` (a deny applies, an allow does not).
 */
export function usableTarget(snapshot: PolicySnapshot, principal: PolicyPrincipal, target: PolicyTargetRef, context: UsageContext): boolean {
  const runtime = runtimeOf(snapshot);
  const who = viewOf(runtime, principal);
  if (who.userId === null && who.agentClientId === null) return false;
  const candidates: RuleRuntime[] = [];
  collect(runtime.entryFor(target.kind, target.upstream, target.name), who, candidates);
  if (candidates.every((rule) => rule.condition === null)) return usableAmong(snapshot, candidates, who, target, context);
  // The conditions of one question share a time budget, as a decision's do.
  return withConditionBudget(() => usableAmong(snapshot, candidates, who, target, context));
}

function usableAmong(
  snapshot: PolicySnapshot,
  candidates: readonly RuleRuntime[],
  who: PrincipalView,
  target: PolicyTargetRef,
  context: UsageContext,
): boolean {
  let conditionContext: ConditionContext | null = null;
  const contextFor = (): ConditionContext =>
    (conditionContext ??= {
      args: {},
      principal: { userId: who.userId ?? '', agentClientId: who.agentClientId ?? '', role: who.role ?? '', groups: who.groups },
      target: conditionTarget(target),
      request: { time: toDate(context.time), ip: context.ip ?? '' },
    });
  for (const rule of candidates) {
    const deny = rule.rule.effect === 'deny';
    let applies: boolean | 'maybe' = true;
    const condition = rule.condition;
    if (condition !== null) {
      if (condition.readsArguments || (condition.readsAddress && context.ip === null)) applies = 'maybe';
      else {
        // A condition that fails restricts and never grants, as in `evaluate`: a deny or require_approval applies.
        const onFailure = rule.rule.effect !== 'allow';
        // Bounded as in `evaluate`, the target's name being all of the request it reads (a URI of up to 8 KiB split and
        // searched per character would otherwise run here unbounded).
        if (workFor(condition.growth, 0, contextFor().target.name.length) > MAX_CONDITION_STEPS_WORK) applies = onFailure;
        else {
          try {
            const result = condition(contextFor());
            applies = typeof result === 'boolean' ? result : onFailure;
          } catch {
            applies = onFailure;
          }
        }
      }
    }
    if (deny) {
      if (applies === true) return false;
    } else if (applies !== false) {
      return true;
    }
  }
  return snapshot.defaultEffect === 'allow';
}

/** Rule names that cover every tool or prompt name (`*` crosses `/` there), and every resource URI. */
const WHOLE_NAMES: Readonly<Record<TargetKind, ReadonlySet<string>>> = {
  tool: new Set(['*', '**']),
  prompt: new Set(['*', '**']),
  resource: new Set(['**']),
};
const KINDS: readonly TargetKind[] = ['tool', 'prompt', 'resource'];

const appliesTo = (subjects: RuleRuntime['rule']['subjects'], who: PrincipalView): boolean =>
  subjects.authenticated ||
  (who.userId !== null && subjects.userIds.includes(who.userId)) ||
  (who.agentClientId !== null && subjects.agentClientIds.includes(who.agentClientId)) ||
  (who.role !== null && (subjects.roles as readonly string[]).includes(who.role)) ||
  who.groups.some((group) => subjects.groups.includes(group));

/**
 * Whether the principal may use anything at all on the upstream named `upstream`, by the rules alone (no names, no
 * arguments, no time or address): for some kind, no unconditional deny covers every name on it, and either an allow or
 * require_approval rule names something on it (conditions or not) or the tenant default allows. What the upstream says
 * about itself as a whole (its initialize `instructions`) is for those who may use it; a deny by name leaves the rest
 * of the upstream in use, so this errs towards true. `kinds` narrows the question (resource templates are of use only
 * to a principal who may read some resource there).
 */
export function upstreamInUse(snapshot: PolicySnapshot, principal: PolicyPrincipal, upstream: string, kinds: readonly TargetKind[] = KINDS): boolean {
  const runtime = runtimeOf(snapshot);
  const who = viewOf(runtime, principal);
  if (who.userId === null && who.agentClientId === null) return false;
  const closed = new Set<TargetKind>();
  const granted = new Set<TargetKind>();
  for (const { rule, rank, condition } of runtime.rules) {
    if (!appliesTo(rule.subjects, who)) continue;
    for (const target of rule.targets) {
      if (!runtime.upstreamMatches(target.upstream, upstream)) continue;
      if (rank > 0) granted.add(target.kind);
      else if (condition === null && WHOLE_NAMES[target.kind].has(target.name)) closed.add(target.kind);
    }
  }
  const open = snapshot.defaultEffect === 'allow';
  return kinds.some((kind) => !closed.has(kind) && (open || granted.has(kind)));
}

/** A list item `visibleTools` can filter: anything with an upstream and a name (kind defaults to `tool`). */
export interface ListedTarget {
  readonly kind?: TargetKind;
  readonly upstream: string;
  readonly name: string;
}

/**
 * Filters a tools/prompts/resources list down to what the principal could call under SOME arguments and
 * context: hidden when an unconditional deny rule applies, shown when any allow or require_approval rule
 * applies (even with a condition), otherwise the tenant default decides. Conditional deny rules do not hide
 * (other arguments may pass). Order of the input is kept.
 */
export function visibleTools<T extends ListedTarget>(
  snapshot: PolicySnapshot,
  principal: PolicyPrincipal,
  tools: readonly T[],
): T[] {
  const runtime = runtimeOf(snapshot);
  const who = viewOf(runtime, principal);
  if (who.userId === null && who.agentClientId === null) return [];
  const defaultVisible = snapshot.defaultEffect === 'allow';
  const scratch: RuleRuntime[] = [];
  const visible: T[] = [];
  for (const tool of tools) {
    const entry = runtime.entryFor(tool.kind ?? 'tool', tool.upstream, tool.name);
    if (entry.empty) {
      if (defaultVisible) visible.push(tool);
      continue;
    }
    scratch.length = 0;
    collect(entry, who, scratch);
    let show = defaultVisible;
    for (const rule of scratch) {
      if (rule.rank === 0) {
        if (rule.condition === null) {
          show = false;
          break;
        }
      } else {
        show = true;
        break;
      }
    }
    if (show) visible.push(tool);
  }
  return visible;
}
