import { describe, expect, it } from 'vitest';
import { sealedDigestOf } from './snapshot-loaders';

describe('sealedDigestOf', () => {
  const bytes = (...values: number[]) => Uint8Array.from(values);

  it('names no digest for an upstream without sealed credentials', () => {
    expect(sealedDigestOf(null, null)).toEqual({});
  });

  it('changes with the ciphertext, and tells headers from environment', () => {
    const first = sealedDigestOf(bytes(1, 2, 3), null).sealedDigest;
    expect(first).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(sealedDigestOf(bytes(1, 2, 3), null).sealedDigest).toBe(first);
    expect(sealedDigestOf(bytes(1, 2, 4), null).sealedDigest).not.toBe(first);
    expect(sealedDigestOf(null, bytes(1, 2, 3)).sealedDigest).not.toBe(first);
    // Where one part ends and the next begins is part of what is hashed.
    expect(sealedDigestOf(bytes(1, 2), bytes(3)).sealedDigest).not.toBe(sealedDigestOf(bytes(1), bytes(2, 3)).sealedDigest);
  });
});
