import {
  compareCodeUnits,
  POLICY_IR_VERSION,
  policySource,
  type IrMember,
  type IrRateLimit,
  type IrRegistryEntry,
  type IrRule,
  type IrTarget,
  type ParsedPolicySource,
  type PolicySnapshotBody,
  type RateLimitScope,
} from '@portcullis/contracts/policy-ir';
import { compileCondition } from './cel';
import { compileGlob, GlobSyntaxError, MAX_GLOB_LENGTH, MAX_POLICY_AUTOMATON_POSITIONS } from './glob';
import { foldCase, newCaches, upstreamPattern, type CompileCaches } from './runtime';
import { finishSnapshot, snapshotChecksum } from './snapshot';
import type { CompileError, CompileResult } from './types';

const SCOPE_ORDER: readonly RateLimitScope[] = ['tenant', 'user', 'agent_client', 'tool'];
const ROLE_ORDER = ['owner', 'admin', 'auditor', 'member'] as const;

const sortedUnique = (values: Iterable<string>): string[] => [...new Set(values)].sort(compareCodeUnits);

const targetKey = (t: IrTarget): string => `${t.kind}\u0000${t.upstream}\u0000${t.name}`;

export interface CompileOptions {
  /**
   * Refuse a policy whose patterns (other than the common shapes) pass MAX_POLICY_AUTOMATON_POSITIONS in all. On for
   * rules being written (default); off where a stored policy is compiled again for another change (a member added, an
   * upstream renamed): rules saved before the bound must not block those, nor a rollback to them.
   */
  readonly complexityBudget?: boolean;
}

/**
 * Validates a policy source and compiles it into a deep-frozen, checksummed snapshot, or returns every error
 * found, each tied to its rule. Deterministic: the output depends only on the source's content, not on key
 * order or the order of rules, subjects, targets, members, groups, agent clients or tools.
 */
export function compile(source: unknown, options: CompileOptions = {}): CompileResult {
  const parsed = policySource.safeParse(source);
  if (!parsed.success) {
    return { ok: false, errors: parsed.error.issues.map((issue) => schemaError(source, issue)) };
  }
  const caches = newCaches();
  const built = buildIr(parsed.data, caches, options.complexityBudget ?? true);
  if (!built.ok) return built;
  const snapshot = finishSnapshot({ ...built.body, checksum: snapshotChecksum(built.body) }, caches);
  return { ok: true, snapshot };
}

function schemaError(source: unknown, issue: { path: readonly PropertyKey[]; message: string }): CompileError {
  const path = issue.path.map(String).join('.');
  let ruleId: string | null = null;
  if (issue.path[0] === 'rules' && typeof issue.path[1] === 'number') {
    const rules = (source as { rules?: unknown }).rules;
    const rule = Array.isArray(rules) ? (rules[issue.path[1]] as { id?: unknown } | undefined) : undefined;
    ruleId = typeof rule?.id === 'string' ? rule.id : null;
  }
  return { ruleId, path: path || '(root)', message: issue.message };
}

type BuildResult = { ok: true; body: PolicySnapshotBody } | { ok: false; errors: CompileError[] };

function buildIr(source: ParsedPolicySource, caches: CompileCaches, complexityBudget: boolean): BuildResult {
  const errors: CompileError[] = [];

  // Directory: members, groups (resolved into each member), agent clients.
  const roles = new Map<string, IrMember['role']>();
  source.directory.members.forEach((member, i) => {
    if (roles.has(member.userId)) {
      errors.push({ ruleId: null, path: `directory.members.${i}.userId`, message: `duplicate member ${member.userId}` });
    }
    roles.set(member.userId, member.role);
  });
  const groupsOf = new Map<string, Set<string>>();
  const groupNames = new Set<string>();
  source.directory.groups.forEach((group, i) => {
    if (groupNames.has(group.name)) {
      errors.push({ ruleId: null, path: `directory.groups.${i}.name`, message: `duplicate group name ${group.name}` });
    }
    groupNames.add(group.name);
    group.members.forEach((userId, j) => {
      if (!roles.has(userId)) {
        errors.push({
          ruleId: null,
          path: `directory.groups.${i}.members.${j}`,
          message: `group ${group.name} lists ${userId}, who is not a member of the tenant`,
        });
        return;
      }
      let set = groupsOf.get(userId);
      if (set === undefined) groupsOf.set(userId, (set = new Set()));
      set.add(group.name);
    });
  });
  const agentClientIds = new Set(source.directory.agentClients.map((client) => client.id));

  // Rules.
  const ruleIds = new Set<string>();
  /**
   * What each target's patterns cost a gateway per character of a name or URI, as it runs them: every (rule, target)
   * is a matcher of its own, restrictions run the case-folded form and upstream, tool and prompt name patterns their `**` form.
   */
  const costs: { readonly ruleId: string; readonly path: string; readonly positions: number }[] = [];
  const costOf = (pattern: string): number => {
    try {
      return compileGlob(pattern, 4 * MAX_GLOB_LENGTH).automaton;
    } catch {
      return 0; // a derived form that does not compile is reported by the snapshot's load, not counted here
    }
  };
  const rules: IrRule[] = [];
  source.rules.forEach((rule, i) => {
    const at = (suffix: string): string => `rules.${i}.${suffix}`;
    const fail = (path: string, message: string): void => {
      errors.push({ ruleId: rule.id, path, message });
    };
    if (ruleIds.has(rule.id)) fail(at('id'), `duplicate rule id ${rule.id}`);
    ruleIds.add(rule.id);
    // Disabled rules are validated by the schema only and left out of the snapshot: disabling a rule that
    // references a deleted group must stay possible.
    if (!rule.enabled) return;

    const userIds: string[] = [];
    const groups: string[] = [];
    const ruleRoles: IrMember['role'][] = [];
    const clients: string[] = [];
    let authenticated = false;
    rule.subjects.forEach((subject, j) => {
      switch (subject.type) {
        case 'user':
          if (!roles.has(subject.userId)) fail(at(`subjects.${j}.userId`), `unknown user ${subject.userId}`);
          userIds.push(subject.userId);
          break;
        case 'group':
          if (!groupNames.has(subject.group)) fail(at(`subjects.${j}.group`), `unknown group ${subject.group}`);
          groups.push(subject.group);
          break;
        case 'role':
          ruleRoles.push(subject.role);
          break;
        case 'agent_client':
          if (!agentClientIds.has(subject.agentClientId)) {
            fail(at(`subjects.${j}.agentClientId`), `unknown agent client ${subject.agentClientId}`);
          }
          clients.push(subject.agentClientId);
          break;
        case 'authenticated':
          authenticated = true;
          break;
      }
    });

    const targets = new Map<string, IrTarget>();
    rule.targets.forEach((target, j) => {
      const name = target.kind === 'resource' ? target.uri : target.name;
      const nameField = target.kind === 'resource' ? 'uri' : 'name';
      let valid = true;
      for (const [field, pattern] of [
        ['upstream', target.upstream],
        [nameField, name],
      ] as const) {
        try {
          caches.globs.set(pattern, caches.globs.get(pattern) ?? compileGlob(pattern));
          const spelled = field === 'upstream' || rule.effect === 'allow' ? pattern : foldCase(pattern);
          const matched = field === 'uri' ? spelled : upstreamPattern(spelled);
          costs.push({ ruleId: rule.id, path: at(`targets.${j}.${field}`), positions: costOf(matched) });
        } catch (error) {
          valid = false;
          fail(at(`targets.${j}.${field}`), error instanceof GlobSyntaxError ? error.message : String(error));
        }
      }
      if (valid) {
        const ir: IrTarget = { kind: target.kind, upstream: target.upstream, name };
        targets.set(targetKey(ir), ir);
      }
    });

    let condition: string | null = null;
    if (rule.condition !== undefined) {
      condition = rule.condition;
      if (!caches.conditions.has(condition)) {
        const compiled = compileCondition(condition);
        if (compiled.ok) caches.conditions.set(condition, compiled.program);
        else fail(at('condition'), `invalid condition: ${compiled.message}`);
      }
    }

    let rateLimit: IrRateLimit | null = null;
    if (rule.rateLimit !== undefined) {
      const scope = new Set(rule.rateLimit.scope);
      rateLimit = {
        scope: SCOPE_ORDER.filter((part) => scope.has(part)),
        requests: rule.rateLimit.requests ?? null,
        windowSeconds: rule.rateLimit.windowSeconds ?? null,
        maxConcurrent: rule.rateLimit.maxConcurrent ?? null,
      };
    }

    rules.push({
      id: rule.id,
      effect: rule.effect,
      subjects: {
        authenticated,
        // "Any authenticated principal" subsumes the others; keep the IR minimal and canonical.
        userIds: authenticated ? [] : sortedUnique(userIds),
        groups: authenticated ? [] : sortedUnique(groups),
        roles: authenticated ? [] : ROLE_ORDER.filter((role) => ruleRoles.includes(role)),
        agentClientIds: authenticated ? [] : sortedUnique(clients),
      },
      targets: [...targets.entries()].sort(([a], [b]) => compareCodeUnits(a, b)).map(([, target]) => target),
      condition,
      rateLimit,
    });
  });

  // Patterns beyond the common shapes run an automaton on every name or URI they are tested against: bounded in all, so
  // that no policy can make a gateway spend more than a few milliseconds on one (long, hostile) resource URI.
  let positions = 0;
  for (const where of complexityBudget ? costs : []) {
    positions += where.positions;
    if (positions > MAX_POLICY_AUTOMATON_POSITIONS) {
      errors.push({
        ruleId: where.ruleId,
        path: where.path,
        message: `the policy's wildcard patterns are too complex in all (at most ${MAX_POLICY_AUTOMATON_POSITIONS} characters in patterns other than name, prefix*, *suffix and prefix*suffix); simplify or merge them`,
      });
      break;
    }
  }

  // Registry: concrete tools, prompts and resources (templates are not call targets).
  const upstreamNames = new Set<string>();
  const registry = new Map<string, IrRegistryEntry>();
  source.upstreams.forEach((upstream, i) => {
    if (upstreamNames.has(upstream.name)) {
      errors.push({ ruleId: null, path: `upstreams.${i}.name`, message: `duplicate upstream ${upstream.name}` });
    }
    upstreamNames.add(upstream.name);
    for (const tool of upstream.tools) {
      if (tool.kind === 'resource_template') continue;
      const entry: IrRegistryEntry = { kind: tool.kind, upstream: upstream.name, name: tool.name };
      registry.set(targetKey(entry), entry);
    }
  });

  if (errors.length > 0) return { ok: false, errors };

  const members: IrMember[] = [...roles.entries()]
    .sort(([a], [b]) => compareCodeUnits(a, b))
    .map(([userId, role]) => ({ userId, role, groups: sortedUnique(groupsOf.get(userId) ?? []) }));

  return {
    ok: true,
    body: {
      irVersion: POLICY_IR_VERSION,
      tenantId: source.tenantId,
      version: source.version,
      defaultEffect: source.defaultEffect,
      rules: rules.sort((a, b) => compareCodeUnits(a.id, b.id)),
      directory: { members, groups: sortedUnique(groupNames), agentClientIds: sortedUnique(agentClientIds) },
      registry: [...registry.entries()].sort(([a], [b]) => compareCodeUnits(a, b)).map(([, entry]) => entry),
    },
  };
}
