import { policyEffect, policyRuleSource, POLICY_LIMITS, targetKind, tenantDefaultEffect } from '@portcullis/contracts/policy-ir';
import { z } from 'zod';

/**
 * A tenant's policy as the API edits it: the default effect and the rules, in the source format of
 * `@portcullis/contracts/policy-ir` (docs/policy.md). The directory (members, groups, agent clients) and the
 * upstream registry are not edited here: the control plane reads them from the database when it compiles.
 */
export const putPolicyRequest = z.strictObject({
  defaultEffect: tenantDefaultEffect,
  description: z.string().trim().max(2_000).nullable().optional(),
  rules: z.array(policyRuleSource).max(POLICY_LIMITS.rules),
});
export type PutPolicyRequest = z.input<typeof putPolicyRequest>;
export type ParsedPutPolicyRequest = z.output<typeof putPolicyRequest>;

export const policyResponse = z.object({
  defaultEffect: tenantDefaultEffect,
  description: z.string().nullable(),
  rules: z.array(policyRuleSource),
  /** Optimistic-concurrency version; the ETag is `"<version>"` (0: no policy saved yet). */
  version: z.number().int().min(0),
  /** The tenant's active snapshot, or null before the first one. */
  activeSnapshotVersion: z.number().int().nullable(),
  updatedAt: z.iso.datetime({ offset: true }).nullable(),
});
export type PolicyResponse = z.infer<typeof policyResponse>;

/** The answer to a successful save: the policy and the snapshot the save produced. */
export const savedPolicyResponse = policyResponse.extend({
  snapshot: z.object({ version: z.number().int(), checksum: z.string() }),
});
export type SavedPolicyResponse = z.infer<typeof savedPolicyResponse>;

export const snapshotResponse = z.object({
  version: z.number().int().min(1),
  irVersion: z.number().int(),
  checksum: z.string(),
  active: z.boolean(),
  /** What produced it: `policy.update`, `member.add`, `upstream.delete`... */
  comment: z.string().nullable(),
  createdById: z.uuid().nullable(),
  createdAt: z.iso.datetime({ offset: true }),
});
export type SnapshotResponse = z.infer<typeof snapshotResponse>;

/** A principal to simulate: a user, an agent client, or an agent client acting for a user. */
export const simulateSubject = z
  .strictObject({
    userId: z.string().min(1).max(200).optional(),
    agentClientId: z.string().min(1).max(200).optional(),
  })
  .refine((subject) => subject.userId !== undefined || subject.agentClientId !== undefined, 'name a userId, an agentClientId, or both');

/**
 * `{ subject, tool, arguments?, context? }` asks "may this subject call this tool with these arguments?";
 * `{ subject }` alone asks "what can this subject see?" (over the tenant's known tools, prompts and resources).
 * `tool.name` is the upstream's own name (without the gateway prefix); for resources it is the URI.
 */
export const simulatePolicyRequest = z.strictObject({
  subject: simulateSubject,
  tool: z
    .strictObject({
      kind: targetKind.default('tool'),
      upstream: z.string().min(1).max(200),
      name: z.string().min(1).max(2_048),
    })
    .optional(),
  arguments: z.record(z.string(), z.unknown()).optional(),
  context: z
    .strictObject({
      time: z.iso.datetime({ offset: true }).optional(),
      ip: z.string().max(64).optional(),
    })
    .optional(),
});
export type SimulatePolicyRequest = z.input<typeof simulatePolicyRequest>;
export type ParsedSimulatePolicyRequest = z.output<typeof simulatePolicyRequest>;

export const simulatedDecision = z.object({
  effect: policyEffect,
  ruleIds: z.array(z.string()),
  reason: z.string(),
  agentMessage: z.string(),
  defaulted: z.boolean(),
  /** Null when the tenant has no active snapshot (the gateway then denies everything). */
  snapshotVersion: z.number().int().nullable(),
  conditionErrors: z.array(z.object({ ruleId: z.string(), effect: policyEffect, countedAsMatched: z.boolean(), message: z.string() })),
  rateLimits: z.array(z.object({ ruleId: z.string(), rateLimit: z.unknown() })),
});

export const visibleTarget = z.object({ kind: targetKind, upstream: z.string(), name: z.string() });

export const simulatePolicyResponse = z.union([
  z.object({ kind: z.literal('decision'), decision: simulatedDecision }),
  z.object({
    kind: z.literal('visibility'),
    snapshotVersion: z.number().int().nullable(),
    /** How many known tools/prompts/resources were considered. */
    considered: z.number().int(),
    visible: z.array(visibleTarget),
  }),
]);
export type SimulatePolicyResponse = z.infer<typeof simulatePolicyResponse>;
