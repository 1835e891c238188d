export {
  memberRole,
  policyEffect,
  policyRuleSource,
  policySource,
  policySubject,
  policyTarget,
  POLICY_LIMITS,
  rateLimitScope,
  rateLimitSpec,
  targetKind,
  tenantDefaultEffect,
  upstreamToolKind,
} from './lib/policy-source';
export type {
  MemberRole,
  ParsedPolicySource,
  PolicyEffect,
  PolicyRuleSource,
  PolicySource,
  PolicySubject,
  PolicyTarget,
  RateLimitScope,
  RateLimitSpec,
  TargetKind,
  TenantDefaultEffect,
} from './lib/policy-source';
export { irMember, irRateLimit, irRegistryEntry, irRule, irSubjects, irTarget, POLICY_IR_VERSION, policySnapshotIr } from './lib/policy-ir';
export type {
  IrMember,
  IrRateLimit,
  IrRegistryEntry,
  IrRule,
  IrSubjects,
  IrTarget,
  PolicyIrVersion,
  PolicySnapshotBody,
  PolicySnapshotIr,
} from './lib/policy-ir';
export { canonicalJson, CHECKSUM_ALGORITHM, checksumPayload, compareCodeUnits } from './lib/canonical-json';
export type { SnapshotChecksumFn } from './lib/canonical-json';
