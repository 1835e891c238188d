import type { Account, Profile, User } from 'next-auth';
import { describe, expect, it } from 'vitest';
import { createAuthOptions } from './auth-options';

const options = createAuthOptions({
  issuer: 'http://127.0.0.1:9/',
  clientId: 'portal',
  clientSecret: 'secret',
  scopes: ['openid', 'email'],
  sessionSecret: 'x'.repeat(32),
  sessionMaxAgeSeconds: 3_600,
});

const signIn = (profile: Record<string, unknown> | undefined) =>
  options.callbacks?.signIn?.({ user: { id: 'u' } as User, account: null as Account | null, profile: profile as Profile | undefined });

describe('portal sign-in', () => {
  it('needs an email the provider has not declared unverified', async () => {
    expect(await signIn({ sub: 's', email: 'ada@example.test', email_verified: true })).toBe(true);
    expect(await signIn({ sub: 's', email: 'ada@example.test' })).toBe(true);
    expect(await signIn({ sub: 's', email: 'ada@example.test', email_verified: false })).toBe(false);
    expect(await signIn({ sub: 's', email: 'ada@example.test', email_verified: 'false' })).toBe(false);
    expect(await signIn({ sub: 's' })).toBe(false);
    expect(await signIn(undefined)).toBe(false);
  });
});
