import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { open, openJson, parseKeyring, seal, sealJson, SecretBoxError, upstreamSecretContext } from './secret-box';

const k1 = randomBytes(32).toString('base64');
const k2 = randomBytes(32).toString('base64');

describe('secret box', () => {
  it('round-trips JSON under the active key and binds the context', () => {
    const ring = parseKeyring(`k1:${k1}`);
    const ctx = upstreamSecretContext('t1', 'u1', 'headers');
    const sealed = sealJson(ring, { authorization: 'Bearer upstream-token' }, ctx);
    expect(sealed.keyId).toBe('k1');
    expect(sealed.ciphertext.toString('utf8')).not.toContain('upstream-token');
    expect(openJson(ring, sealed, ctx)).toEqual({ authorization: 'Bearer upstream-token' });
    expect(() => open(ring, sealed, upstreamSecretContext('t2', 'u1', 'headers'))).toThrow(SecretBoxError);
  });

  it('never produces the same ciphertext twice', () => {
    const ring = parseKeyring(`k1:${k1}`);
    expect(seal(ring, 'x', 'c').ciphertext.equals(seal(ring, 'x', 'c').ciphertext)).toBe(false);
  });

  it('rotates: new values use the new active key, old values still open', () => {
    const old = parseKeyring(`k1:${k1}`);
    const sealedOld = seal(old, 'old secret', 'c');
    const rotated = parseKeyring(`k2:${k2},k1:${k1}`);
    expect(seal(rotated, 'new', 'c').keyId).toBe('k2');
    expect(open(rotated, sealedOld, 'c').toString()).toBe('old secret');
    const retired = parseKeyring(`k2:${k2}`);
    expect(() => open(retired, sealedOld, 'c')).toThrow('no key k1');
  });

  it('detects tampering anywhere in the ciphertext', () => {
    const ring = parseKeyring(`k1:${k1}`);
    const sealed = seal(ring, 'secret value', 'c');
    for (const index of [0, 5, 30, 70, 100, sealed.ciphertext.length - 1]) {
      const copy = Buffer.from(sealed.ciphertext);
      copy[index] = (copy[index] ?? 0) ^ 0xff;
      expect(() => open(ring, { keyId: 'k1', ciphertext: copy }, 'c')).toThrow(SecretBoxError);
    }
  });

  it('refuses malformed keyrings without echoing key material', () => {
    expect(() => parseKeyring('')).toThrow('empty');
    expect(() => parseKeyring('k1:c2hvcnQ=')).toThrow('k1 must be 32 bytes');
    expect(() => parseKeyring(`k1:${k1},k1:${k2}`)).toThrow('appears twice');
    expect(() => parseKeyring(`k1:${k1}`, 'k9')).toThrow('active key k9');
    let message = '';
    try {
      parseKeyring(`bad id:${k1}`);
    } catch (error) {
      message = String(error);
    }
    expect(message).toContain('<key-id>:<base64 32 bytes>');
    // Written the wrong way round, an unpadded base64url key stands where the id goes: named by position, not quoted
    // (found by review).
    const key = Buffer.from(k1, 'base64').toString('base64url');
    expect(() => parseKeyring(`${key}:k1`)).toThrow(/^key number 1 of the keyring must be 32 bytes/);
    let reversed = '';
    try {
      parseKeyring(`k2:${k2},${key}:k1`);
    } catch (error) {
      reversed = String(error);
    }
    expect(reversed).toContain('key number 2 of the keyring');
    expect(reversed).not.toContain(key);
    expect(message).not.toContain(k1);
  });
});
