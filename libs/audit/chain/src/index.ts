export { AUDIT_HASH_VERSION, computeAuditHash, verifyChain } from './lib/audit-chain';
export type { ChainedAuditFields, ChainVerdict, StoredChainLink } from './lib/audit-chain';
