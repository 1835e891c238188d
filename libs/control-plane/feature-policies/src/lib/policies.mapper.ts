import type { PolicyResponse, SnapshotResponse } from '@portcullis/contracts/api';
import { policyRuleSource, type PolicyRuleSource, type PolicySource } from '@portcullis/contracts/policy-ir';
import type { Prisma } from '@portcullis/data/db';

/** The tenant's one editable policy (the schema allows several per tenant; the API edits this one). */
export const DEFAULT_POLICY_NAME = 'default';

export const policySelect = {
  id: true,
  defaultEffect: true,
  description: true,
  version: true,
  updatedAt: true,
} satisfies Prisma.PolicySelect;
export type PolicyRow = Prisma.PolicyGetPayload<{ select: typeof policySelect }>;

export const ruleSelect = {
  name: true,
  description: true,
  enabled: true,
  subjects: true,
  targets: true,
  effect: true,
  condition: true,
  rateLimit: true,
} satisfies Prisma.PolicyRuleSelect;
export type RuleRow = Prisma.PolicyRuleGetPayload<{ select: typeof ruleSelect }>;

export const snapshotSelect = {
  id: true,
  version: true,
  irVersion: true,
  checksum: true,
  active: true,
  comment: true,
  createdById: true,
  createdAt: true,
} satisfies Prisma.PolicySnapshotSelect;
export type SnapshotRow = Prisma.PolicySnapshotGetPayload<{ select: typeof snapshotSelect }>;

/**
 * A stored rule back in source form. The rule's `id` in the source is the row's `name` (a stable, human-chosen
 * id such as `r-eng-tickets`); the row's UUID is an internal key. Rows are validated on save, so a row that no
 * longer parses means the source format changed: it is passed through and `compile` reports it.
 */
export function toRuleSource(row: RuleRow, position: number): PolicyRuleSource {
  const candidate = {
    id: row.name ?? `rule-${position + 1}`,
    ...(row.description === null ? {} : { description: row.description }),
    enabled: row.enabled,
    subjects: row.subjects,
    targets: row.targets,
    effect: row.effect,
    ...(row.condition === null ? {} : { condition: row.condition }),
    ...(row.rateLimit === null ? {} : { rateLimit: row.rateLimit }),
  };
  const parsed = policyRuleSource.safeParse(candidate);
  return parsed.success ? parsed.data : (candidate as unknown as PolicyRuleSource);
}

/** A rule as a row to insert (`tenantId` and `policyId` added by the repository). */
export function toRuleRow(rule: PolicyRuleSource, position: number) {
  return {
    position,
    name: rule.id,
    description: rule.description ?? null,
    enabled: rule.enabled ?? true,
    subjects: rule.subjects as Prisma.InputJsonValue,
    targets: rule.targets as Prisma.InputJsonValue,
    effect: rule.effect,
    condition: rule.condition ?? null,
    ...(rule.rateLimit === undefined ? {} : { rateLimit: rule.rateLimit as Prisma.InputJsonValue }),
  };
}

export function toPolicyResponse(policy: PolicyRow | null, rules: readonly RuleRow[], activeSnapshotVersion: number | null): PolicyResponse {
  return {
    defaultEffect: policy?.defaultEffect ?? 'deny',
    description: policy?.description ?? null,
    rules: rules.map((rule, index) => toRuleSource(rule, index) as PolicyResponse['rules'][number]),
    version: policy?.version ?? 0,
    activeSnapshotVersion,
    updatedAt: policy?.updatedAt.toISOString() ?? null,
  };
}

export function toSnapshotResponse(row: SnapshotRow): SnapshotResponse {
  return {
    version: row.version,
    irVersion: row.irVersion,
    checksum: row.checksum,
    active: row.active,
    comment: row.comment,
    createdById: row.createdById,
    createdAt: row.createdAt.toISOString(),
  };
}

/** ETags are strong and quoted: `"<policy version>"`. */
export const policyEtag = (version: number): string => `"${version}"`;

/** Everything `compile` needs besides the rules: what the database knows about the tenant. */
export interface TenantDirectory {
  readonly members: readonly { readonly userId: string; readonly role: 'owner' | 'admin' | 'auditor' | 'member' }[];
  readonly groups: readonly { readonly name: string; readonly members: readonly string[] }[];
  readonly agentClients: readonly { readonly id: string }[];
  readonly upstreams: readonly {
    readonly name: string;
    readonly tools: readonly { readonly kind: 'tool' | 'prompt' | 'resource' | 'resource_template'; readonly name: string }[];
  }[];
}

/** The full policy source for `compile`: the policy's rules plus the tenant's directory and registry. */
export function assemblePolicySource(input: {
  readonly tenantId: string;
  readonly version: number;
  readonly defaultEffect: 'allow' | 'deny';
  readonly rules: readonly PolicyRuleSource[];
  readonly directory: TenantDirectory;
}): PolicySource {
  const { directory } = input;
  return {
    tenantId: input.tenantId,
    version: input.version,
    defaultEffect: input.defaultEffect,
    rules: [...input.rules],
    directory: {
      members: directory.members.map((member) => ({ userId: member.userId, role: member.role })),
      groups: directory.groups.map((group) => ({ name: group.name, members: [...group.members] })),
      agentClients: directory.agentClients.map((client) => ({ id: client.id })),
    },
    upstreams: directory.upstreams.map((upstream) => ({
      name: upstream.name,
      tools: upstream.tools.map((tool) => ({ kind: tool.kind, name: tool.name })),
    })),
  };
}
