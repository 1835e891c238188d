import { z } from 'zod';

/**
 * The policy SOURCE: what the control plane stores and edits, and what `compile` turns into a snapshot.
 * It carries the tenant's rules plus the directory facts needed to resolve subjects (members and their
 * roles, groups, agent clients) and the upstream registry (which tools, prompts and resources exist).
 *
 * Objects are strict: an unknown key (a typo such as `efect`) is a validation error, not silently ignored.
 */

export const POLICY_LIMITS = {
  rules: 10_000,
  subjectsPerRule: 200,
  targetsPerRule: 200,
  conditionLength: 4_096,
  globLength: 512,
  idLength: 200,
  members: 100_000,
  groups: 10_000,
  agentClients: 10_000,
  upstreams: 1_000,
  toolsPerUpstream: 20_000,
} as const;

export const memberRole = z.enum(['owner', 'admin', 'auditor', 'member']);
export type MemberRole = z.infer<typeof memberRole>;

export const tenantDefaultEffect = z.enum(['allow', 'deny']);
export type TenantDefaultEffect = z.infer<typeof tenantDefaultEffect>;

export const policyEffect = z.enum(['allow', 'deny', 'require_approval']);
export type PolicyEffect = z.infer<typeof policyEffect>;

export const targetKind = z.enum(['tool', 'prompt', 'resource']);
export type TargetKind = z.infer<typeof targetKind>;

const identifier = z.string().min(1).max(POLICY_LIMITS.idLength);
const glob = z.string().min(1).max(POLICY_LIMITS.globLength);

/** Who a rule applies to. A rule applies when ANY of its subjects matches the principal. */
export const policySubject = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('user'), userId: identifier }),
  z.strictObject({ type: z.literal('group'), group: identifier }),
  z.strictObject({ type: z.literal('role'), role: memberRole }),
  z.strictObject({ type: z.literal('agent_client'), agentClientId: identifier }),
  /** Any authenticated principal: a user, an agent client, or an agent client acting for a user. */
  z.strictObject({ type: z.literal('authenticated') }),
]);
export type PolicySubject = z.infer<typeof policySubject>;

/**
 * What a rule applies to: an upstream (by name) and a tool/prompt name or resource URI, both globs.
 * Glob syntax: `*` any run of characters except `/`, `**` any run including `/`, `?` one character except
 * `/`, `\` escapes the next character; everything else is literal. Patterns are anchored (whole string).
 */
export const policyTarget = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('tool'), upstream: glob, name: glob }),
  z.strictObject({ kind: z.literal('prompt'), upstream: glob, name: glob }),
  z.strictObject({ kind: z.literal('resource'), upstream: glob, uri: glob }),
]);
export type PolicyTarget = z.infer<typeof policyTarget>;

export const rateLimitScope = z.enum(['tenant', 'user', 'agent_client', 'tool']);
export type RateLimitScope = z.infer<typeof rateLimitScope>;

/**
 * A rate limit attached to a rule (stored and compiled now, enforced by the gateway later). The counter
 * key is the combination of `scope` parts, e.g. `["user", "tool"]` = one bucket per user per tool.
 */
export const rateLimitSpec = z
  .strictObject({
    scope: z.array(rateLimitScope).min(1).max(4),
    requests: z.number().int().min(1).max(1_000_000).optional(),
    windowSeconds: z.number().int().min(1).max(86_400).optional(),
    maxConcurrent: z.number().int().min(1).max(10_000).optional(),
  })
  .superRefine((spec, ctx) => {
    if ((spec.requests === undefined) !== (spec.windowSeconds === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'requests and windowSeconds go together', path: ['requests'] });
    }
    if (spec.requests === undefined && spec.maxConcurrent === undefined) {
      ctx.addIssue({ code: 'custom', message: 'set requests/windowSeconds, maxConcurrent, or both', path: [] });
    }
    if (new Set(spec.scope).size !== spec.scope.length) {
      ctx.addIssue({ code: 'custom', message: 'scope parts must be unique', path: ['scope'] });
    }
  });
export type RateLimitSpec = z.infer<typeof rateLimitSpec>;

export const policyRuleSource = z.strictObject({
  id: identifier,
  description: z.string().max(2_000).optional(),
  enabled: z.boolean().default(true),
  subjects: z.array(policySubject).min(1).max(POLICY_LIMITS.subjectsPerRule),
  targets: z.array(policyTarget).min(1).max(POLICY_LIMITS.targetsPerRule),
  effect: policyEffect,
  /** A CEL expression that must evaluate to `true` for the rule to apply (see docs/policy.md). */
  condition: z.string().max(POLICY_LIMITS.conditionLength).optional(),
  rateLimit: rateLimitSpec.optional(),
});
export type PolicyRuleSource = z.input<typeof policyRuleSource>;

export const policyDirectorySource = z.strictObject({
  members: z
    .array(z.strictObject({ userId: identifier, role: memberRole }))
    .max(POLICY_LIMITS.members)
    .default([]),
  groups: z
    .array(z.strictObject({ name: identifier, members: z.array(identifier).max(POLICY_LIMITS.members) }))
    .max(POLICY_LIMITS.groups)
    .default([]),
  agentClients: z
    .array(z.strictObject({ id: identifier }))
    .max(POLICY_LIMITS.agentClients)
    .default([]),
});

export const upstreamToolKind = z.enum(['tool', 'prompt', 'resource', 'resource_template']);

export const policyUpstreamSource = z.strictObject({
  name: identifier,
  /** What the upstream advertises. For resources `name` is the URI; resource templates are not targets. */
  tools: z
    .array(z.strictObject({ kind: upstreamToolKind, name: z.string().min(1).max(2_048) }))
    .max(POLICY_LIMITS.toolsPerUpstream)
    .default([]),
});

export const policySource = z.strictObject({
  tenantId: identifier,
  /** The snapshot version this compilation will become (per tenant, monotonically increasing). */
  version: z.number().int().min(1),
  defaultEffect: tenantDefaultEffect,
  rules: z.array(policyRuleSource).max(POLICY_LIMITS.rules),
  directory: policyDirectorySource.default({ members: [], groups: [], agentClients: [] }),
  upstreams: z.array(policyUpstreamSource).max(POLICY_LIMITS.upstreams).default([]),
});
/** The source as authored (defaults not yet applied). */
export type PolicySource = z.input<typeof policySource>;
/** The source after validation (defaults applied). */
export type ParsedPolicySource = z.output<typeof policySource>;
