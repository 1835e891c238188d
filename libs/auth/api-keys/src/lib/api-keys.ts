import { hash, randomBytes } from 'node:crypto';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
export const API_KEY_PREFIX = 'pcs_';
const SECRET_LENGTH = 40; // 40 base62 characters ≈ 238 bits
const DISPLAY_PREFIX_LENGTH = 10;
const API_KEY_SHAPE = /^pcs_[0-9A-Za-z]{40}$/;

/** A new API key: `pcs_` and 40 base62 characters from the CSPRNG (rejection sampling: no modulo bias). */
export function generateApiKey(): string {
  let out = '';
  while (out.length < SECRET_LENGTH) {
    for (const byte of randomBytes(64)) {
      if (byte < 248 && out.length < SECRET_LENGTH) out += BASE62[byte % 62];
    }
  }
  return `${API_KEY_PREFIX}${out}`;
}

/**
 * How keys are stored and looked up: SHA-256 of the whole key, hex. The keys are long random secrets,
 * so a fast hash is enough (no password stretching) and lets the gateway verify without a database call.
 * One-shot `crypto.hash` (no Hash object): this runs on every gateway request.
 */
export function hashApiKey(key: string): string {
  return hash('sha256', key, 'hex');
}

/** What the portal shows to recognise a key: `pcs_` and the first characters, never enough to use it. */
export function displayPrefix(key: string): string {
  return key.slice(0, DISPLAY_PREFIX_LENGTH);
}

/** Cheap shape check before hashing, so junk in an Authorization header is rejected early. */
export function looksLikeApiKey(value: string): boolean {
  return API_KEY_SHAPE.test(value);
}
