export { PoliciesModule } from './lib/policies.module';
export { PolicySnapshotWriter } from './lib/policy-snapshot.writer';
export type { RebuildResult, WrittenSnapshot } from './lib/policy-snapshot.writer';
export { assemblePolicySource } from './lib/policies.mapper';
export type { TenantDirectory } from './lib/policies.mapper';
