import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * Envelope encryption for secrets at rest (upstream headers, env, OAuth client secrets).
 *
 * Each value gets a fresh 256-bit data key; the value is sealed with AES-256-GCM under the data key,
 * and the data key is sealed with AES-256-GCM under a key-encryption key (KEK) from configuration. The
 * KEK's id is stored beside the ciphertext, so KEKs can rotate: new values use the active KEK, old
 * values open with the KEK they name. `context` (e.g. `upstream:<tenantId>:<upstreamId>:headers`) is
 * authenticated data on both layers: a ciphertext copied into another row or field does not open.
 *
 * Layout (version 1): [0x01][wrap iv 12][wrapped key 32][wrap tag 16][iv 12][tag 16][ciphertext...]
 */

const VERSION = 0x01;
const IV = 12;
const TAG = 16;
const KEY = 32;
const HEADER = 1 + IV + KEY + TAG + IV + TAG;

export interface Keyring {
  readonly activeKeyId: string;
  readonly keys: ReadonlyMap<string, Buffer>;
}

export class SecretBoxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretBoxError';
  }
}

/**
 * Parses `kid1:base64key1,kid2:base64key2` (each key 32 bytes); the first is active unless
 * `activeKeyId` names another. Errors name the key id, never the key.
 */
export function parseKeyring(spec: string, activeKeyId?: string): Keyring {
  const keys = new Map<string, Buffer>();
  spec
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
    .forEach((entry, index) => {
      const separator = entry.indexOf(':');
      const id = separator > 0 ? entry.slice(0, separator) : '';
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw new SecretBoxError('each key must look like <key-id>:<base64 32 bytes>');
      // A keyring written the wrong way round (`<key>:<id>`, an unpadded base64url key passes as an id) would put the key
      // itself in the message: an id as long as a key is named by its position (found by review).
      const named = id.length < 24 ? `key ${id}` : `key number ${index + 1} of the keyring`;
      const key = Buffer.from(entry.slice(separator + 1), 'base64');
      if (key.length !== KEY) throw new SecretBoxError(`${named} must be 32 bytes (base64)`);
      if (keys.has(id)) throw new SecretBoxError(`${named} appears twice`);
      keys.set(id, key);
    });
  const first = keys.keys().next();
  if (first.done) throw new SecretBoxError('the keyring is empty');
  const active = activeKeyId ?? first.value;
  if (!keys.has(active)) throw new SecretBoxError(`active key ${active} is not in the keyring`);
  return { activeKeyId: active, keys };
}

export interface SealedSecret {
  readonly keyId: string;
  readonly ciphertext: Buffer;
}

export function seal(keyring: Keyring, plaintext: string | Uint8Array, context: string): SealedSecret {
  const kek = keyring.keys.get(keyring.activeKeyId);
  if (!kek) throw new SecretBoxError(`active key ${keyring.activeKeyId} is not in the keyring`);
  const aad = Buffer.from(context, 'utf8');
  const dataKey = randomBytes(KEY);

  const wrapIv = randomBytes(IV);
  const wrap = createCipheriv('aes-256-gcm', kek, wrapIv).setAAD(aad);
  const wrappedKey = Buffer.concat([wrap.update(dataKey), wrap.final()]);
  const wrapTag = wrap.getAuthTag();

  const iv = randomBytes(IV);
  const cipher = createCipheriv('aes-256-gcm', dataKey, iv).setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const tag = cipher.getAuthTag();
  dataKey.fill(0);

  return {
    keyId: keyring.activeKeyId,
    ciphertext: Buffer.concat([Buffer.of(VERSION), wrapIv, wrappedKey, wrapTag, iv, tag, body]),
  };
}

export function open(keyring: Keyring, sealed: SealedSecret, context: string): Buffer {
  const kek = keyring.keys.get(sealed.keyId);
  if (!kek) throw new SecretBoxError(`no key ${sealed.keyId} in the keyring (was it rotated out?)`);
  const data = sealed.ciphertext;
  if (data.length < HEADER || data[0] !== VERSION) throw new SecretBoxError('not a sealed secret of a known version');
  const aad = Buffer.from(context, 'utf8');
  let offset = 1;
  const take = (length: number) => data.subarray(offset, (offset += length));
  const wrapIv = take(IV);
  const wrappedKey = take(KEY);
  const wrapTag = take(TAG);
  const iv = take(IV);
  const tag = take(TAG);
  const body = data.subarray(offset);
  try {
    const unwrap = createDecipheriv('aes-256-gcm', kek, wrapIv).setAAD(aad).setAuthTag(wrapTag);
    const dataKey = Buffer.concat([unwrap.update(wrappedKey), unwrap.final()]);
    const decipher = createDecipheriv('aes-256-gcm', dataKey, iv).setAAD(aad).setAuthTag(tag);
    const plaintext = Buffer.concat([decipher.update(body), decipher.final()]);
    dataKey.fill(0);
    return plaintext;
  } catch {
    throw new SecretBoxError('the secret does not open with its key and context (tampered, or moved from another record)');
  }
}

/** JSON documents (header maps, env maps) sealed as UTF-8. */
export const sealJson = (keyring: Keyring, value: unknown, context: string): SealedSecret =>
  seal(keyring, JSON.stringify(value), context);

export const openJson = <T>(keyring: Keyring, sealed: SealedSecret, context: string): T =>
  JSON.parse(open(keyring, sealed, context).toString('utf8')) as T;

/** The authenticated context of an upstream's sealed field. */
export const upstreamSecretContext = (tenantId: string, upstreamId: string, field: 'headers' | 'env' | 'credentials') =>
  `upstream:${tenantId}:${upstreamId}:${field}`;
