export { AUDIT_HASH_VERSION, computeAuditHash, verifyChain } from './lib/audit-chain';
export type { ChainedAuditFields, ChainVerdict, StoredChainLink } from './lib/audit-chain';
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
