import { z } from 'zod';
import { memberRole, policyEffect, rateLimitScope, targetKind, tenantDefaultEffect } from './policy-source';

/**
 * The compiled snapshot (IR). Version 1.
 *
 * Everything in it is canonical: arrays sorted and de-duplicated wherever order carries no meaning, so the
 * same source always produces the same bytes and checksum. Only enabled rules appear. Globs and CEL are
 * kept as text; a loader rebuilds matchers and programs from them (they are not serialisable).
 *
 * Bump `POLICY_IR_VERSION` on any change a v1 reader would misread. Readers refuse versions they do not know.
 */
export const POLICY_IR_VERSION = 1 as const;
export type PolicyIrVersion = typeof POLICY_IR_VERSION;

export const irSubjects = z.strictObject({
  authenticated: z.boolean(),
  userIds: z.array(z.string()),
  groups: z.array(z.string()),
  roles: z.array(memberRole),
  agentClientIds: z.array(z.string()),
});
export type IrSubjects = z.infer<typeof irSubjects>;

/** One target; for resources `name` is the URI glob. */
export const irTarget = z.strictObject({ kind: targetKind, upstream: z.string(), name: z.string() });
export type IrTarget = z.infer<typeof irTarget>;

export const irRateLimit = z.strictObject({
  scope: z.array(rateLimitScope),
  requests: z.number().int().nullable(),
  windowSeconds: z.number().int().nullable(),
  maxConcurrent: z.number().int().nullable(),
});
export type IrRateLimit = z.infer<typeof irRateLimit>;

export const irRule = z.strictObject({
  id: z.string(),
  effect: policyEffect,
  subjects: irSubjects,
  targets: z.array(irTarget),
  condition: z.string().nullable(),
  rateLimit: irRateLimit.nullable(),
});
export type IrRule = z.infer<typeof irRule>;

export const irMember = z.strictObject({
  userId: z.string(),
  role: memberRole,
  groups: z.array(z.string()),
});
export type IrMember = z.infer<typeof irMember>;

export const irRegistryEntry = z.strictObject({ kind: targetKind, upstream: z.string(), name: z.string() });
export type IrRegistryEntry = z.infer<typeof irRegistryEntry>;

export const policySnapshotIr = z.strictObject({
  irVersion: z.literal(POLICY_IR_VERSION),
  tenantId: z.string(),
  version: z.number().int().min(1),
  defaultEffect: tenantDefaultEffect,
  rules: z.array(irRule),
  directory: z.strictObject({
    members: z.array(irMember),
    groups: z.array(z.string()),
    agentClientIds: z.array(z.string()),
  }),
  registry: z.array(irRegistryEntry),
  /** sha256 hex of `checksumPayload(snapshot)`. */
  checksum: z.string().regex(/^[0-9a-f]{64}$/),
});
export type PolicySnapshotIr = z.infer<typeof policySnapshotIr>;
/** A snapshot before its checksum is computed. */
export type PolicySnapshotBody = Omit<PolicySnapshotIr, 'checksum'>;
