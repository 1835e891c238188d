import { generateApiKey, hashApiKey } from '@portcullis/auth/api-keys';
import { describe, expect, it } from 'vitest';
import { ApiKeyIndex } from './api-key-index';
import { ApiKeyAuthenticator } from './authenticator';
import { TenantIndex } from './tenant-index';

const key = generateApiKey();
const userKey = generateApiKey();
const revokedKey = generateApiKey();
const expiredKey = generateApiKey();
const now = 1_000_000;

function setup(clock: () => number = () => now, current: () => boolean = () => true) {
  const keys = new ApiKeyIndex();
  const entry = { apiKeyId: 'k1', tenantId: 't1', agentClientId: 'a1', userId: null, expiresAt: null, revoked: false };
  keys.replace([
    [hashApiKey(key), entry],
    [hashApiKey(userKey), { ...entry, apiKeyId: 'k2', agentClientId: null, userId: 'u1' }],
    [hashApiKey(revokedKey), { ...entry, apiKeyId: 'k3', revoked: true }],
    [hashApiKey(expiredKey), { ...entry, apiKeyId: 'k4', expiresAt: now }],
  ]);
  const tenants = new TenantIndex();
  tenants.replace([
    { id: 't1', slug: 'acme', active: true },
    { id: 't2', slug: 'other', active: true },
    { id: 't3', slug: 'frozen', active: false },
  ]);
  return { auth: new ApiKeyAuthenticator(keys, tenants, clock, current), keys, tenants, entry };
}

describe('ApiKeyAuthenticator (in-memory index)', () => {
  const { auth } = setup();

  it('resolves the principal of a valid key for its own tenant', () => {
    expect(auth.authenticate(`Bearer ${key}`, 'acme')).toEqual({
      ok: true,
      principal: { tenantId: 't1', kind: 'agent_client', id: 'a1', credentialId: 'k1' },
      credentialId: 'k1',
    });
    expect(auth.authenticate(`Bearer ${userKey}`, 'acme')).toMatchObject({ ok: true, principal: { kind: 'user', id: 'u1' } });
  });

  it('answers unauthenticated for missing, malformed, unknown, revoked and expired keys', () => {
    for (const header of [undefined, 'Bearer nope', `Basic ${key}`, `Bearer ${generateApiKey()}`, `Bearer ${revokedKey}`, `Bearer ${expiredKey}`]) {
      expect(auth.authenticate(header, 'acme')).toEqual({ ok: false, reason: 'unauthenticated' });
    }
  });

  it('answers another tenant, a suspended tenant and an unknown tenant alike', () => {
    for (const slug of ['other', 'frozen', 'missing']) {
      expect(auth.authenticate(`Bearer ${key}`, slug)).toEqual({ ok: false, reason: 'unknown_tenant' });
    }
  });
});

describe('ApiKeyAuthenticator with indexes too old to trust (no reload for too long)', () => {
  it('answers unavailable for well-formed keys, valid or not, and unauthenticated for malformed ones; back once current', () => {
    let current = false;
    const { auth } = setup(() => now, () => current);
    // Whether the key is good cannot be told: not 401 (it may be fine) and not served (it may have been revoked).
    for (const header of [`Bearer ${key}`, `Bearer ${revokedKey}`, `Bearer ${generateApiKey()}`]) {
      expect(auth.authenticate(header, 'acme')).toEqual({ ok: false, reason: 'unavailable' });
    }
    for (const header of [undefined, 'Bearer nope', `Basic ${key}`]) {
      expect(auth.authenticate(header, 'acme')).toEqual({ ok: false, reason: 'unauthenticated' });
    }
    // Neither valid nor revoked: a held call is not run, an open stream is not closed.
    expect(auth.stillValid('k1', { tenantId: 't1', kind: 'agent_client', id: 'a1' })).toBe('unknown');
    current = true;
    expect(auth.authenticate(`Bearer ${key}`, 'acme')).toMatchObject({ ok: true });
    expect(auth.stillValid('k1', { tenantId: 't1', kind: 'agent_client', id: 'a1' })).toBe(true);
  });

  it('still refuses, in stillValid, a key the copy marks revoked, has left out, or whose expiry has passed', () => {
    let clock = now;
    const { auth, keys, entry } = setup(() => clock, () => false);
    const agent = { tenantId: 't1', kind: 'agent_client', id: 'a1' } as const;
    // An expiry needs no reload to be known: streams and held calls of such keys end even with the database away.
    expect(auth.stillValid('k3', agent)).toBe(false);
    expect(auth.stillValid('k4', agent)).toBe(false);
    expect(auth.stillValid('gone', agent)).toBe(false);
    keys.replace([[hashApiKey(key), { ...entry, expiresAt: now + 10 }]]);
    expect(auth.stillValid('k1', agent)).toBe('unknown');
    clock = now + 10;
    expect(auth.stillValid('k1', agent)).toBe(false);
  });
});

describe('ApiKeyAuthenticator.expiresAt', () => {
  it('tells when a key in the index expires, and null for one without expiry or not in the index', () => {
    const { auth } = setup();
    expect(auth.expiresAt('k4')).toBe(now);
    expect(auth.expiresAt('k1')).toBeNull();
    expect(auth.expiresAt('gone')).toBeNull();
  });
});

describe('ApiKeyAuthenticator.stillValid (a credential checked again after a wait)', () => {
  const agent = { tenantId: 't1', kind: 'agent_client', id: 'a1' } as const;

  it('holds for a key still in the index, unexpired, of the same principal and an active tenant', () => {
    const { auth } = setup();
    expect(auth.stillValid('k1', agent)).toBe(true);
    expect(auth.stillValid('k2', { tenantId: 't1', kind: 'user', id: 'u1' })).toBe(true);
    expect(auth.stillValid('k3', agent)).toBe(false); // revoked (or its agent client disabled)
    expect(auth.stillValid('k4', agent)).toBe(false); // expired
    expect(auth.stillValid('k1', { ...agent, id: 'a2' })).toBe(false);
    expect(auth.stillValid('k1', { ...agent, tenantId: 't2' })).toBe(false);
    expect(auth.stillValid('gone', agent)).toBe(false);
  });

  it('fails once the key is revoked or deleted, expires, or its tenant is suspended', () => {
    let clock = now;
    const { auth, keys, tenants, entry } = setup(() => clock);
    keys.replace([[hashApiKey(key), { ...entry, revoked: true }]]);
    expect(auth.stillValid('k1', agent)).toBe(false);
    keys.replace([]);
    expect(auth.stillValid('k1', agent)).toBe(false);
    keys.replace([[hashApiKey(key), { ...entry, expiresAt: now + 10 }]]);
    expect(auth.stillValid('k1', agent)).toBe(true);
    clock = now + 10;
    expect(auth.stillValid('k1', agent)).toBe(false);
    clock = now;
    tenants.replace([{ id: 't1', slug: 'acme', active: false }]);
    expect(auth.stillValid('k1', agent)).toBe(false);
  });
});
