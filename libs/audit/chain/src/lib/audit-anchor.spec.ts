import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  anchorSignedText,
  auditAnchorSigner,
  auditKeyId,
  AuditKeyError,
  auditVerificationKeys,
  verifyAnchorSignature,
  type UnsignedAuditAnchor,
} from './audit-anchor';

function ed25519Pair(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

const unsigned: UnsignedAuditAnchor = {
  tenantId: '019a0000-0000-7000-8000-0000000000aa',
  seq: '1204',
  hash: 'a'.repeat(64),
  signedAt: '2026-12-05T10:00:00.000Z',
};

describe('audit anchors', () => {
  it('signs the canonical text of the anchor with Ed25519, named by the public key', () => {
    const pair = ed25519Pair();
    const signer = auditAnchorSigner(pair.privatePem);
    const anchor = signer.sign(unsigned);
    const publicKey = createPublicKey(pair.publicPem);
    expect(anchor.keyId).toBe(auditKeyId(publicKey));
    expect(anchor.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(anchorSignedText(anchor)).toBe(
      `{"hash":"${unsigned.hash}","keyId":"${anchor.keyId}","seq":"1204","signedAt":"2026-12-05T10:00:00.000Z","tenantId":"${unsigned.tenantId}","v":1}`,
    );
    // Checked with node:crypto directly, not only with the module's own verifier.
    expect(verify(null, Buffer.from(anchorSignedText(anchor)), publicKey, Buffer.from(anchor.signature, 'base64url'))).toBe(true);
    expect(verifyAnchorSignature(anchor, auditVerificationKeys(pair.publicPem))).toBe('valid');
  });

  it('refuses an anchor whose any signed field was changed', () => {
    const pair = ed25519Pair();
    const keys = auditVerificationKeys(pair.publicPem);
    const anchor = auditAnchorSigner(pair.privatePem).sign(unsigned);
    for (const changed of [
      { ...anchor, seq: '1205' },
      { ...anchor, hash: 'b'.repeat(64) },
      { ...anchor, tenantId: '019a0000-0000-7000-8000-0000000000bb' },
      { ...anchor, signedAt: '2026-12-05T10:00:00.001Z' },
      { ...anchor, signature: anchor.signature.slice(0, -4) + 'AAAA' },
      { ...anchor, signature: 'not base64url at all!' },
    ]) {
      expect(verifyAnchorSignature(changed, keys)).toBe('invalid_signature');
    }
  });

  it('tells an unknown key from a bad signature, and verifies anchors of several keys (rotation)', () => {
    const old = ed25519Pair();
    const current = ed25519Pair();
    const byOld = auditAnchorSigner(old.privatePem).sign(unsigned);
    const byCurrent = auditAnchorSigner(current.privatePem).sign(unsigned);
    expect(verifyAnchorSignature(byOld, auditVerificationKeys(current.publicPem))).toBe('unknown_key');
    const both = auditVerificationKeys(`${old.publicPem}\n${current.publicPem}`);
    expect(both.size).toBe(2);
    expect(verifyAnchorSignature(byOld, both)).toBe('valid');
    expect(verifyAnchorSignature(byCurrent, both)).toBe('valid');
    // Another key's signature under this key's id.
    expect(verifyAnchorSignature({ ...byOld, keyId: byCurrent.keyId }, both)).toBe('invalid_signature');
  });

  it('refuses keys that are not Ed25519 or not keys, without echoing them', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rsaPem = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expect(() => auditAnchorSigner(rsaPem)).toThrow(new AuditKeyError('the audit signing key is a rsa key; audit anchors are signed with Ed25519'));
    expect(() => auditAnchorSigner('secret-looking text')).toThrow(new AuditKeyError('the audit signing key is not a PEM private key'));
    expect(() => auditVerificationKeys(rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString())).toThrow(/a verification key is a rsa key/);
    expect(() => auditVerificationKeys('nothing here')).toThrow(new AuditKeyError('no PUBLIC KEY block found'));
    // A private key given where public keys are expected: refused (it would be a leak waiting to happen).
    expect(() => auditVerificationKeys(ed25519Pair().privatePem)).toThrow(new AuditKeyError('expected PUBLIC KEY blocks, found PRIVATE KEY'));
  });
});
