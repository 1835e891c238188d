export { AUDIT_HASH_VERSION, AUDIT_HASH_VERSIONS, computeAuditHash, verifyChain } from './lib/audit-chain';
export type { AuditHashVersion, ChainedAuditFields, ChainVerdict, StoredChainLink } from './lib/audit-chain';
export {
  anchorSignedText,
  AUDIT_ANCHOR_VERSION,
  auditAnchorSigner,
  auditKeyId,
  AuditKeyError,
  auditVerificationKeys,
  verifyAnchorSignature,
} from './lib/audit-anchor';
export type { AnchorSignatureVerdict, AuditAnchor, AuditAnchorSigner, UnsignedAuditAnchor } from './lib/audit-anchor';
