export { SnapshotCache } from './lib/snapshot-cache';
export type { ActiveSnapshotRef, HeldSnapshot, SnapshotCacheOptions, SnapshotSource, StoredSnapshot } from './lib/snapshot-cache';
export { policyHooks, principalOf } from './lib/policy-hooks';
export type { SnapshotLookup } from './lib/policy-hooks';
