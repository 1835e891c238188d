import { auditAnchorSigner, AuditKeyError, type AuditAnchorSigner } from '@portcullis/audit/chain';
import type { Logger } from '@portcullis/shared/util-logger';
import { readFileSync, statSync } from 'node:fs';

/**
 * The signer for AUDIT_SIGNING_KEY_FILE. Throws an error naming the file and what is wrong with it, never its content.
 * A key file others may read is used, with a warning: the key is what makes a rewritten trail detectable.
 */
export function loadAuditSigner(file: string, logger: Logger): AuditAnchorSigner {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`AUDIT_SIGNING_KEY_FILE ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`, { cause: error });
  }
  let signer: AuditAnchorSigner;
  try {
    signer = auditAnchorSigner(pem);
  } catch (error) {
    if (error instanceof AuditKeyError) throw new Error(`AUDIT_SIGNING_KEY_FILE ${file}: ${error.message}`, { cause: error });
    throw error;
  }
  if ((statSync(file).mode & 0o077) !== 0) {
    logger.warn({ file }, 'the audit signing key file can be read by other users than its owner; chmod 600 it');
  }
  return signer;
}
