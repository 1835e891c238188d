import { auditVerificationKeys, AuditKeyError } from '@portcullis/audit/chain';
import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

/**
 * The audit worker's public keys from AUDIT_VERIFY_KEYS_FILE, by key id. Throws an error naming the file and what is
 * wrong with it (read at start: a control plane that was told to check anchors does not start without the keys).
 */
export function loadVerifyKeys(file: string): ReadonlyMap<string, KeyObject> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`AUDIT_VERIFY_KEYS_FILE ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`, { cause: error });
  }
  try {
    return auditVerificationKeys(text);
  } catch (error) {
    if (error instanceof AuditKeyError) throw new Error(`AUDIT_VERIFY_KEYS_FILE ${file}: ${error.message}`, { cause: error });
    throw error;
  }
}
