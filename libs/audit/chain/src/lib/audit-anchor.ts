import canonicalize from 'canonicalize';
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

/** The version of the signed representation; bump it (and keep the old one verifiable) if fields change. */
export const AUDIT_ANCHOR_VERSION = 1;

/**
 * A signed statement that a tenant's audit chain had `hash` at `seq`. The hash chains back to every earlier event, so
 * whoever rewrites any event at or before `seq` (and recomputes the hashes after it) no longer matches the anchor, and
 * cannot sign a new one without the worker's private key, which the database never holds.
 */
export interface AuditAnchor {
  readonly tenantId: string;
  /** bigint as decimal text, as in the chain. */
  readonly seq: string;
  readonly hash: string;
  /** ISO 8601, UTC, millisecond precision. */
  readonly signedAt: string;
  /** Names the public key that verifies `signature` (see `auditKeyId`). */
  readonly keyId: string;
  /** Ed25519 over `anchorSignedText` of the other fields, base64url. */
  readonly signature: string;
}

export type UnsignedAuditAnchor = Omit<AuditAnchor, 'signature' | 'keyId'>;

/** The exact bytes signed: RFC 8785 canonical JSON of the anchor's fields and the version. */
export function anchorSignedText(anchor: Omit<AuditAnchor, 'signature'>): string {
  const text = canonicalize({
    v: AUDIT_ANCHOR_VERSION,
    tenantId: anchor.tenantId,
    seq: anchor.seq,
    hash: anchor.hash,
    signedAt: anchor.signedAt,
    keyId: anchor.keyId,
  });
  if (text === undefined) throw new TypeError('audit anchor is not serialisable');
  return text;
}

/** A short, stable name for a public key: the first 16 hex digits of SHA-256 over its SubjectPublicKeyInfo (DER). */
export function auditKeyId(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
}

export class AuditKeyError extends Error {}

function requireEd25519(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new AuditKeyError(`${what} is a ${key.asymmetricKeyType ?? key.type} key; audit anchors are signed with Ed25519`);
  }
  return key;
}

/** Signs anchors with one Ed25519 private key. */
export interface AuditAnchorSigner {
  readonly keyId: string;
  readonly publicKey: KeyObject;
  sign(anchor: UnsignedAuditAnchor): AuditAnchor;
}

/**
 * A signer from a PEM private key (PKCS#8, Ed25519). Throws AuditKeyError naming what is wrong, never the key's text.
 */
export function auditAnchorSigner(privateKeyPem: string): AuditAnchorSigner {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: privateKeyPem, format: 'pem' });
  } catch {
    throw new AuditKeyError('the audit signing key is not a PEM private key');
  }
  requireEd25519(privateKey, 'the audit signing key');
  const publicKey = createPublicKey(privateKey);
  const keyId = auditKeyId(publicKey);
  return {
    keyId,
    publicKey,
    sign(anchor) {
      const unsigned = { ...anchor, keyId };
      const signature = sign(null, Buffer.from(anchorSignedText(unsigned), 'utf8'), privateKey).toString('base64url');
      return { ...unsigned, signature };
    },
  };
}

const PEM_BLOCK = /-----BEGIN ([A-Z ]+)-----[\s\S]*?-----END \1-----/g;

/**
 * The verification keys in a PEM text: every PUBLIC KEY block (Ed25519), by key id. Several keys let anchors signed
 * before a key rotation still verify. Throws AuditKeyError when the text holds none, or a block that is not one.
 */
export function auditVerificationKeys(pemText: string): ReadonlyMap<string, KeyObject> {
  const keys = new Map<string, KeyObject>();
  for (const match of pemText.matchAll(PEM_BLOCK)) {
    if (match[1] !== 'PUBLIC KEY') throw new AuditKeyError(`expected PUBLIC KEY blocks, found ${match[1]}`);
    let key: KeyObject;
    try {
      key = createPublicKey({ key: match[0], format: 'pem' });
    } catch {
      throw new AuditKeyError('a PUBLIC KEY block could not be read');
    }
    requireEd25519(key, 'a verification key');
    keys.set(auditKeyId(key), key);
  }
  if (keys.size === 0) throw new AuditKeyError('no PUBLIC KEY block found');
  return keys;
}

export type AnchorSignatureVerdict = 'valid' | 'unknown_key' | 'invalid_signature';

/** Whether `anchor` is signed by one of `keys` (by its key id). Never throws on malformed input: it is invalid. */
export function verifyAnchorSignature(anchor: AuditAnchor, keys: ReadonlyMap<string, KeyObject>): AnchorSignatureVerdict {
  const key = keys.get(anchor.keyId);
  if (!key) return 'unknown_key';
  try {
    const signature = Buffer.from(anchor.signature, 'base64url');
    const { signature: _signature, ...unsigned } = anchor;
    return verify(null, Buffer.from(anchorSignedText(unsigned), 'utf8'), key, signature) ? 'valid' : 'invalid_signature';
  } catch {
    return 'invalid_signature';
  }
}
