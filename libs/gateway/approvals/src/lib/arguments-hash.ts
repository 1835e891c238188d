import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/**
 * The SHA-256 (lowercase hex) of the RFC 8785 canonical JSON of a call's arguments (`{}` when it has none).
 * An approval is bound to this hash: two argument objects that differ in anything but key order differ here.
 */
export function argumentsHash(args: Readonly<Record<string, unknown>> | undefined): string {
  const canonical = canonicalize(args ?? {});
  if (canonical === undefined) throw new TypeError('the arguments are not serialisable as JSON');
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}
