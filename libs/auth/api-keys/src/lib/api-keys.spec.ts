import { describe, expect, it } from 'vitest';
import { displayPrefix, generateApiKey, hashApiKey, looksLikeApiKey } from './api-keys';

describe('api keys', () => {
  it('generates distinct well-formed keys', () => {
    const keys = Array.from({ length: 500 }, generateApiKey);
    expect(new Set(keys).size).toBe(500);
    expect(keys.every(looksLikeApiKey)).toBe(true);
  });

  it('uses every base62 character over many keys (no skewed alphabet)', () => {
    const seen = new Set(Array.from({ length: 200 }, generateApiKey).join('').slice(0));
    expect(seen.size).toBeGreaterThanOrEqual(62);
  });

  it('hashes deterministically and shows only a short prefix', () => {
    const key = generateApiKey();
    expect(hashApiKey(key)).toBe(hashApiKey(key));
    expect(hashApiKey(key)).toMatch(/^[0-9a-f]{64}$/);
    expect(displayPrefix(key)).toHaveLength(10);
    expect(key.startsWith(displayPrefix(key))).toBe(true);
  });

  it('rejects values that are not keys', () => {
    for (const value of ['', 'pcs_', 'Bearer x', `pcs_${'a'.repeat(39)}`, `pcs_${'a'.repeat(39)}!`, `sk_${'a'.repeat(40)}`]) {
      expect(looksLikeApiKey(value)).toBe(false);
    }
  });
});
