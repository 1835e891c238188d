import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import path from 'node:path';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@portcullis/shared/util-logger';
import { readIdentitiesFile } from './identities';
import { type RunningDevIdp, startDevIdp } from './server';

const DEMO_IDENTITIES = path.resolve(__dirname, '../../../../../tools/demo/identities.json');

const identities = readIdentitiesFile(DEMO_IDENTITIES);
const olivia = identities.users.find((user) => user.sub === 'u-olivia');
if (!olivia) throw new Error('demo identities changed: u-olivia is missing');

const PORTAL = {
  clientId: 'portal-test',
  clientSecret: 'portal-test-secret-0123',
  redirectUri: 'http://localhost:1/portal/cb',
};
const THIRD_PARTY = {
  clientId: 'third-party-test',
  clientSecret: 'third-party-secret-0123',
  redirectUri: 'http://localhost:1/tp/cb',
};

/** Sends one raw HTTP/1.1 request and resolves with the status line (or a description of what happened instead). */
function rawRequest(port: number, requestLine: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`${requestLine}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    let data = '';
    socket.setTimeout(2_000, () => {
      socket.destroy();
      resolve(data.split('\r\n')[0] || 'no answer within 2 s');
    });
    socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
    socket.on('close', () => resolve(data.split('\r\n')[0] || 'connection closed without an answer'));
    socket.on('error', (error) => resolve(`socket error: ${error.message}`));
  });
}

/** A minimal cookie jar: enough for the IdP's own cookies on one host. */
class CookieJar {
  private readonly cookies = new Map<string, string>();

  store(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';');
      const index = pair.indexOf('=');
      const name = pair.slice(0, index).trim();
      const value = pair.slice(index + 1).trim();
      const expired = attributes.some(
        (attr) => /^\s*expires=thu, 01 jan 1970/i.test(attr) || /^\s*max-age=0\b/i.test(attr),
      );
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  header(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }
}

describe('dev IdP', () => {
  let idp: RunningDevIdp;
  /** The IdP's log lines at warn and above, as JSON. */
  const logLines: string[] = [];

  beforeAll(async () => {
    idp = await startDevIdp({
      host: '127.0.0.1',
      port: 0,
      identities,
      logger: createLogger({ service: 'dev-idp-test', level: 'warn', destination: { write: (line: string) => logLines.push(line) } }),
      clients: [
        { ...PORTAL, redirectUris: [PORTAL.redirectUri], postLogoutRedirectUris: [], firstParty: true },
        {
          ...THIRD_PARTY,
          redirectUris: [THIRD_PARTY.redirectUri],
          postLogoutRedirectUris: [],
          firstParty: false,
        },
      ],
    });
  });

  afterAll(async () => {
    await idp?.close();
  });

  async function discovery(): Promise<Record<string, unknown>> {
    const response = await fetch(`${idp.issuer}/.well-known/openid-configuration`);
    expect(response.status).toBe(200);
    return (await response.json()) as Record<string, unknown>;
  }

  /** Follows the IdP's own redirects (with cookies) until it redirects somewhere else or renders a page. */
  async function follow(jar: CookieJar, url: string, init: RequestInit = {}): Promise<Response> {
    let response = await fetch(url, {
      ...init,
      redirect: 'manual',
      headers: { ...init.headers, cookie: jar.header() },
    });
    jar.store(response);
    for (let hops = 0; hops < 10; hops += 1) {
      const location = response.headers.get('location');
      if (response.status < 300 || response.status >= 400 || !location) return response;
      const next = new URL(location, idp.issuer);
      if (next.origin !== new URL(idp.issuer).origin) return response;
      response = await fetch(next, { redirect: 'manual', headers: { cookie: jar.header() } });
      jar.store(response);
    }
    throw new Error('too many redirects');
  }

  function authorizationUrl(meta: Record<string, unknown>, client: typeof PORTAL, verifier: string): string {
    const url = new URL(String(meta['authorization_endpoint']));
    url.search = new URLSearchParams({
      client_id: client.clientId,
      response_type: 'code',
      redirect_uri: client.redirectUri,
      scope: 'openid email profile groups',
      state: 'state-123',
      nonce: 'nonce-123',
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    }).toString();
    return url.toString();
  }

  function interactionAction(html: string, step: string): string {
    const match = html.match(new RegExp(`action="(/interaction/[\\w-]+/${step})"`));
    if (!match?.[1]) throw new Error(`no ${step} form in page`);
    return new URL(match[1], idp.issuer).toString();
  }

  const form = (fields: Record<string, string>): RequestInit => ({
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });

  it('answers health and readiness probes', async () => {
    expect((await fetch(`${idp.issuer}/healthz`)).status).toBe(200);
    expect((await fetch(`${idp.issuer}/readyz`)).status).toBe(200);
  });

  // `new URL(req.url, base)` threw for `//[` (a host that does not parse) in the plain node:http listener: an uncaught
  // exception, and the real dev-idp process (apps/dev-idp/src/main.ts) exited.
  it('answers a request target that is not a URL with 400 and keeps serving', async () => {
    for (const target of ['//[', '//a b', '//:99999']) {
      expect({ target, status: await rawRequest(idp.port, `GET ${target} HTTP/1.1`) }).toEqual({ target, status: expect.stringMatching(/^HTTP\/1\.1 400/) });
    }
    expect((await fetch(`${idp.issuer}/healthz`)).status).toBe(200);
  });

  it('publishes discovery and a JWKS', async () => {
    const meta = await discovery();
    expect(meta['issuer']).toBe(idp.issuer);
    expect(meta['scopes_supported']).toEqual(
      expect.arrayContaining(['openid', 'email', 'profile', 'groups']),
    );
    expect(meta['claims_supported']).toEqual(
      expect.arrayContaining(['sub', 'email', 'email_verified', 'name', 'groups']),
    );
    const jwks = (await (await fetch(String(meta['jwks_uri']))).json()) as {
      keys: Array<Record<string, unknown>>;
    };
    expect(jwks.keys.length).toBeGreaterThan(0);
    expect(jwks.keys[0]).not.toHaveProperty('d');
  });

  it('rejects a wrong password and does not release a code', async () => {
    const jar = new CookieJar();
    const meta = await discovery();
    const loginPage = await follow(
      jar,
      authorizationUrl(meta, PORTAL, randomBytes(32).toString('base64url')),
    );
    expect(loginPage.status).toBe(200);
    const html = await loginPage.text();
    const rejected = await follow(
      jar,
      interactionAction(html, 'login'),
      form({ email: olivia.email, password: 'wrong-password' }),
    );
    expect(rejected.status).toBe(401);
    expect(await rejected.text()).toContain('Wrong email or password.');
  });

  it('answers an oversized login form as the sender\'s mistake (413), not an internal error', async () => {
    const jar = new CookieJar();
    const meta = await discovery();
    const loginPage = await follow(jar, authorizationUrl(meta, PORTAL, randomBytes(32).toString('base64url')));
    const action = interactionAction(await loginPage.text(), 'login');
    const logged = logLines.length;
    // 20 KB of form, past the 16 KB limit: before, readForm threw a plain Error and the router answered 500.
    const refused = await follow(jar, action, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `email=${'a'.repeat(20_000)}&password=x`,
    });
    expect(refused.status).toBe(413);
    expect(await refused.text()).toContain('too large');
    const levels = logLines.slice(logged).map((line) => (JSON.parse(line) as { level: string }).level);
    expect(levels).toEqual(['warn']);
    // A body far past the limit is still answered, not cut off with the connection.
    const huge = await fetch(action, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: jar.header() },
      body: `email=${'a'.repeat(2_000_000)}&password=x`,
    });
    expect(huge.status).toBe(413);
  });

  it('signs a demo user in with the authorization code flow (first-party client: no consent page)', async () => {
    const jar = new CookieJar();
    const meta = await discovery();
    const verifier = randomBytes(32).toString('base64url');
    const loginPage = await follow(jar, authorizationUrl(meta, PORTAL, verifier));
    const done = await follow(
      jar,
      interactionAction(await loginPage.text(), 'login'),
      form({ email: olivia.email.toUpperCase(), password: identities.password }),
    );
    expect(done.status).toBe(303);
    const callback = new URL(done.headers.get('location') ?? '');
    expect(`${callback.origin}${callback.pathname}`).toBe(PORTAL.redirectUri);
    expect(callback.searchParams.get('state')).toBe('state-123');
    const code = callback.searchParams.get('code');
    expect(code).toBeTruthy();

    const tokenResponse = await fetch(String(meta['token_endpoint']), {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${PORTAL.clientId}:${PORTAL.clientSecret}`).toString('base64')}`,
      },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: code ?? '',
        redirect_uri: PORTAL.redirectUri,
        code_verifier: verifier,
      }).toString(),
    });
    expect(tokenResponse.status).toBe(200);
    const tokens = (await tokenResponse.json()) as { id_token: string; access_token: string };
    const { payload } = await jwtVerify(
      tokens.id_token,
      createRemoteJWKSet(new URL(String(meta['jwks_uri']))),
      {
        issuer: idp.issuer,
        audience: PORTAL.clientId,
      },
    );
    expect(payload).toMatchObject({
      sub: 'u-olivia',
      email: olivia.email,
      email_verified: true,
      name: 'Olivia Owner',
      groups: ['engineering'],
      nonce: 'nonce-123',
    });

    const userinfo = await fetch(String(meta['userinfo_endpoint']), {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    expect(await userinfo.json()).toMatchObject({ sub: 'u-olivia', groups: ['engineering'] });
  });

  it('asks for consent for a client that is not first-party', async () => {
    const jar = new CookieJar();
    const meta = await discovery();
    const loginPage = await follow(
      jar,
      authorizationUrl(meta, THIRD_PARTY, randomBytes(32).toString('base64url')),
    );
    const consentPage = await follow(
      jar,
      interactionAction(await loginPage.text(), 'login'),
      form({ email: olivia.email, password: identities.password }),
    );
    expect(consentPage.status).toBe(200);
    const html = await consentPage.text();
    expect(html).toContain('Allow access?');
    const done = await follow(jar, interactionAction(html, 'confirm'), form({}));
    const callback = new URL(done.headers.get('location') ?? '');
    expect(`${callback.origin}${callback.pathname}`).toBe(THIRD_PARTY.redirectUri);
    expect(callback.searchParams.get('code')).toBeTruthy();
  });

  it('refuses an authorization request without PKCE, of a confidential client too: no code is issued', async () => {
    const meta = await discovery();
    const url = new URL(authorizationUrl(meta, PORTAL, 'v'.repeat(43)));
    url.searchParams.delete('code_challenge');
    url.searchParams.delete('code_challenge_method');
    const response = await fetch(url, { redirect: 'manual' });
    // Refused before any sign-in: back to the client with the error, never on to the login page.
    const location = new URL(response.headers.get('location') ?? '', idp.issuer);
    expect(`${location.origin}${location.pathname}`).toBe(PORTAL.redirectUri);
    expect(location.searchParams.get('error')).toBe('invalid_request');
    expect(location.searchParams.get('code')).toBeNull();
  });

  it('rejects a redirect URI that is not registered', async () => {
    const meta = await discovery();
    const url = new URL(authorizationUrl(meta, PORTAL, 'v'.repeat(43)));
    url.searchParams.set('redirect_uri', 'http://localhost:1/evil');
    const response = await fetch(url, { redirect: 'manual' });
    expect(response.status).toBe(400);
  });
});
