import type { Account, Profile, User } from 'next-auth';
import { describe, expect, it } from 'vitest';
import { createLogger } from '@portcullis/shared/util-logger';
import { createAuthOptions } from './auth-options';
import { SessionCheckUnavailableError, type SessionRevocations } from './session-revocation';

let now = 1_800_000_000;
/** What the portal logged, one JSON object per line. */
const logLines: string[] = [];
const logged = () => logLines.map((line) => JSON.parse(line) as Record<string, unknown>);
const logger = createLogger({ service: 'portal-test', level: 'info', destination: { write: (line: string) => logLines.push(line) } });
/** Revoked session ids with their TTL, in memory; `down` makes every call fail as an unreachable Redis does. */
const revoked = new Map<string, number>();
let storeDown = false;
const revocations: SessionRevocations = {
  revoke: async (sessionId, ttlSeconds) => {
    if (storeDown) throw new Error('connect ECONNREFUSED 127.0.0.1:6379');
    revoked.set(sessionId, ttlSeconds);
  },
  isRevoked: async (sessionId) => {
    if (storeDown) throw new Error('connect ECONNREFUSED 127.0.0.1:6379');
    return revoked.has(sessionId);
  },
};
const options = createAuthOptions({
  issuer: 'http://127.0.0.1:9/',
  clientId: 'portal',
  clientSecret: 'secret',
  scopes: ['openid', 'email'],
  sessionSecret: 'x'.repeat(32),
  sessionMaxAgeSeconds: 3_600,
  nowSeconds: () => now,
}, logger, revocations);
const ISS = 'http://127.0.0.1:9';

const signIn = (profile: Record<string, unknown> | undefined) =>
  options.callbacks?.signIn?.({ user: { id: 'u' } as User, account: null as Account | null, profile: profile as Profile | undefined });

describe('portal sign-in', () => {
  it('needs an email the provider has not declared unverified', async () => {
    expect(await signIn({ iss: ISS, sub: 's', email: 'ada@example.test', email_verified: true })).toBe(true);
    expect(await signIn({ iss: ISS, sub: 's', email: 'ada@example.test' })).toBe(true);
    expect(await signIn({ iss: ISS, sub: 's', email: 'ada@example.test', email_verified: false })).toBe(false);
    expect(await signIn({ iss: ISS, sub: 's', email: 'ada@example.test', email_verified: 'false' })).toBe(false);
    expect(await signIn({ iss: ISS, sub: 's' })).toBe(false);
    expect(await signIn(undefined)).toBe(false);
  });

  it('refuses a sub or email longer than OIDC and SMTP allow, or a missing sub (both go into the cookie whole)', async () => {
    const local = 'a'.repeat(64);
    const longest = `${local}@${'d'.repeat(180)}.example.test`.slice(0, 254);
    expect(await signIn({ iss: ISS, sub: 's'.repeat(255), email: longest })).toBe(true);
    expect(await signIn({ iss: ISS, sub: 's', email: `${longest}x` })).toBe(false);
    expect(await signIn({ iss: ISS, sub: 's'.repeat(256), email: 'ada@example.test' })).toBe(false);
    expect(await signIn({ iss: ISS, email: 'ada@example.test' })).toBe(false);
    expect(await signIn({ iss: ISS, sub: '', email: 'ada@example.test' })).toBe(false);
    expect(await signIn({ iss: ISS, sub: 42, email: 'ada@example.test' })).toBe(false);
  });

  it('needs an ID token of the configured issuer (a multi-tenant provider signs tokens for other tenants too)', async () => {
    expect(await signIn({ iss: `${ISS}/`, sub: 's', email: 'ada@example.test' })).toBe(true);
    expect(await signIn({ iss: 'https://login.example.test/other-tenant/v2.0', sub: 's', email: 'ada@example.test' })).toBe(false);
    expect(await signIn({ sub: 's', email: 'ada@example.test' })).toBe(false);
  });

  it('logs why it refused, at warn, without the person\'s claims (the person only sees "Access was denied.")', async () => {
    logLines.length = 0;
    // The provider's discovery names another issuer than PORTAL_OIDC_ISSUER: it signs every token with that one.
    expect(await signIn({ iss: 'http://idp.elsewhere.example', sub: 'u-ada', email: 'ada@example.test', name: 'Ada' })).toBe(false);
    expect(await signIn({ iss: ISS, sub: 'u-ada', email: 'ada@example.test', email_verified: false })).toBe(false);
    expect(logged()).toMatchObject([
      { level: 'warn', event: 'sign-in.refused', reason: 'issuer_mismatch', configuredIssuer: ISS, tokenIssuer: 'http://idp.elsewhere.example', msg: expect.stringMatching(/another issuer than PORTAL_OIDC_ISSUER/) },
      { level: 'warn', event: 'sign-in.refused', reason: 'no_verified_email' },
    ]);
    for (const line of logLines) expect(line).not.toMatch(/u-ada|ada@example|Ada/);
    logLines.length = 0;
    expect(await signIn({ iss: ISS, sub: 'u-ada', email: 'ada@example.test' })).toBe(true);
    expect(logLines).toEqual([]);
  });
});

describe('portal redirect after sign-in and sign-out', () => {
  const redirect = (url: string) => options.callbacks?.redirect?.({ url, baseUrl: 'http://localhost:3000' });

  it('keeps the portal\'s own paths and URLs, and sends anything else to the portal, never throwing', async () => {
    expect(await redirect('/tenants')).toBe('http://localhost:3000/tenants');
    expect(await redirect('http://localhost:3000/audit?page=2')).toBe('http://localhost:3000/audit?page=2');
    // next-auth's default callback throws on these (`new URL("foo")`): every /api/auth route answered 500.
    for (const value of ['foo', ':', 'javascript:alert(1)', '//evil.example', 'https://evil.example/']) {
      expect(await redirect(value)).toBe('http://localhost:3000/');
    }
  });

  // next-auth hands the redirect callback `req.body.callbackUrl ?? req.query.callbackUrl`. The App Router handler parses
  // a JSON body (`content-type: application/json`) with `req.json()`, so a visitor chooses the value's type: a number, an
  // object or an array reached the callback, and `url.startsWith` threw — a 500 on every POST /api/auth route.
  for (const value of [1, { a: 1 }, ['/tenants'], true]) {
    it(`sends a callbackUrl of ${JSON.stringify(value)} from a JSON body to the portal instead of throwing`, async () => {
      await expect(Promise.resolve().then(() => options.callbacks?.redirect?.({ url: value as never, baseUrl: 'http://localhost:3000' }))).resolves.toBe(
        'http://localhost:3000/',
      );
    });
  }
});

describe('portal session lifetime', () => {
  // Async, so that a refusal (thrown) is a rejection, as next-auth sees it when it awaits the callback.
  const jwt = async (token: Record<string, unknown>, profile?: Record<string, unknown>, account: Partial<Account> | null = null) =>
    options.callbacks?.jwt?.({ token, profile: profile as Profile | undefined, user: undefined as never, account, trigger: undefined } as never);

  it('is counted from sign-in: renewing the cookie does not extend it', async () => {
    const signedIn = (await jwt({}, { iss: ISS, sub: 'ada', email: 'ada@example.test', groups: ['eng', 7] })) as Record<string, unknown>;
    expect(signedIn).toMatchObject({ sub: 'ada', groups: ['eng'], authTime: now });
    const start = now;
    try {
      now = start + 3_600;
      expect(await jwt(signedIn)).toMatchObject({ sub: 'ada', authTime: start });
      now = start + 3_601;
      await expect(jwt(signedIn)).rejects.toThrow(/sign in again/);
    } finally {
      now = start;
    }
  });

  it('keeps the ID token from sign-in (the provider\'s sign-out hint) in the token, not in the session pages see', async () => {
    const signedIn = (await jwt({}, { iss: ISS, sub: 'ada', email: 'ada@example.test' }, { id_token: 'h.p.s', provider: 'oidc' })) as Record<string, unknown>;
    expect(signedIn['idToken']).toBe('h.p.s');
    expect(await jwt(signedIn)).toMatchObject({ idToken: 'h.p.s' });
    const session = await options.callbacks?.session?.({ session: { expires: 'later' }, token: signedIn } as never);
    expect(JSON.stringify(session)).not.toContain('h.p.s');
  });

  it('keeps a bounded session for a person in hundreds of groups: at most 50 names, no ID token too large to keep', async () => {
    const groups = Array.from({ length: 200 }, (_, index) => `sg-${index}-${'engineering-platform-readers'.padEnd(150, 'x')}`);
    const largeToken = `h.${'p'.repeat(12_000)}.s`;
    const signedIn = (await jwt({}, { iss: ISS, sub: 'ada', email: 'ada@example.test', groups }, { id_token: largeToken, provider: 'oidc' })) as Record<string, unknown>;
    const kept = signedIn['groups'] as string[];
    expect(kept).toHaveLength(50);
    expect(kept[0]).toMatch(/^sg-0-engineering/);
    for (const name of kept) expect(name.length).toBeLessThanOrEqual(80);
    expect(signedIn['idToken']).toBeUndefined();
    // An ordinary token (a few dozen groups) is kept: providers such as Okta need it to sign out.
    const ordinary = `h.${'p'.repeat(3_500)}.s`;
    const withToken = (await jwt({}, { iss: ISS, sub: 'ada', email: 'ada@example.test', groups }, { id_token: ordinary, provider: 'oidc' })) as Record<string, unknown>;
    expect(withToken['idToken']).toBe(ordinary);
    expect(JSON.stringify(withToken).length).toBeLessThan(9_000);
    // What goes into the cookie stays far below Node's 16 KiB of headers (encryption adds about a third).
    expect(JSON.stringify(signedIn).length).toBeLessThan(8_000);
  });

  it('cuts a long display name short and falls back to the email for a name that is not a non-blank string', async () => {
    const long = (await jwt({}, { iss: ISS, sub: 'ada', email: 'ada@example.test', name: 'N'.repeat(100_000) })) as Record<string, unknown>;
    expect(long['name']).toBe(`${'N'.repeat(199)}…`);
    expect(JSON.stringify(long).length).toBeLessThan(1_000);
    for (const name of [{ first: 'Ada' }, 42, '   ', '']) {
      expect(await jwt({}, { iss: ISS, sub: 'ada', email: 'ada@example.test', name })).toMatchObject({ name: 'ada@example.test' });
    }
  });

  it('ends a session from before the sign-in time was recorded', async () => {
    await expect(jwt({ sub: 'ada', email: 'ada@example.test' })).rejects.toThrow(/sign in again/);
  });
});

describe('portal sign-out ends every copy of the session', () => {
  const jwt = async (token: Record<string, unknown>, profile?: Record<string, unknown>) =>
    options.callbacks?.jwt?.({ token, profile: profile as Profile | undefined, user: undefined as never, account: null, trigger: undefined } as never) as Promise<Record<string, unknown>>;
  const signOut = (token: Record<string, unknown> | null) => options.events?.signOut?.({ token } as never);
  const signInAda = () => jwt({}, { iss: ISS, sub: 'ada', email: 'ada@example.test' });

  it('gives every sign-in its own session id', async () => {
    const [first, second] = [await signInAda(), await signInAda()];
    expect(first['sid']).toMatch(/^[0-9a-f-]{36}$/);
    expect(second['sid']).not.toBe(first['sid']);
  });

  it('refuses the token of a signed-out session (a copy of the cookie), for the session lifetime, and only that one', async () => {
    const [session, other] = [await signInAda(), await signInAda()];
    expect(await jwt({ ...session })).toMatchObject({ sid: session['sid'] });
    await signOut({ ...session });
    expect(revoked.get(String(session['sid']))).toBe(3_600);
    await expect(jwt({ ...session })).rejects.toThrow(/signed out/);
    expect(await jwt({ ...other })).toMatchObject({ sid: other['sid'] });
  });

  it('ends a session from before sessions had ids (it could not be revoked)', async () => {
    await expect(jwt({ sub: 'ada', email: 'ada@example.test', authTime: now })).rejects.toThrow(/sign in again/);
  });

  it('refuses every session while the revocation store does not answer (fail closed), logging why without the token', async () => {
    const session = await signInAda();
    logLines.length = 0;
    storeDown = true;
    try {
      await expect(jwt({ ...session })).rejects.toBeInstanceOf(SessionCheckUnavailableError);
      // Signing out still clears the browser's cookie (next-auth does, whatever the event does): the event never throws.
      await expect(signOut({ ...session })).resolves.toBeUndefined();
    } finally {
      storeDown = false;
    }
    expect(logged()).toMatchObject([
      { level: 'error', event: 'session.check-unavailable', error: expect.stringMatching(/ECONNREFUSED/) },
      { level: 'error', event: 'sign-out.revocation-failed' },
    ]);
    for (const line of logLines) expect(line).not.toContain(String(session['sid']));
    expect(await jwt({ ...session })).toMatchObject({ sid: session['sid'] });
  });
});
