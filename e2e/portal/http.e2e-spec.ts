import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testContext, waitFor } from '@portcullis/shared/util-testing';

// The built portal (`next start`) over HTTP, no browser: needs apps/portal/.next (the build stage), as login.e2e-spec.ts does.
const portalDir = path.resolve(__dirname, '../../apps/portal');
const nextBin = path.resolve(portalDir, '../../node_modules/next/dist/bin/next');

/** A free TCP port on 127.0.0.1 (the OS picks; released at once). */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * A stand-in OpenID provider whose discovery document names another issuer than the one the portal is configured with
 * (a typo, http vs https behind a proxy, another host name for the same provider).
 */
function startMisnamedProvider(): Promise<Server> {
  const server = createServer((req, res) => {
    const self = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (req.url !== '/.well-known/openid-configuration') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        issuer: 'http://idp.elsewhere.example',
        authorization_endpoint: `${self}/auth`,
        token_endpoint: `${self}/token`,
        jwks_uri: `${self}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
      }),
    );
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe('the built portal over HTTP', () => {
  let portal: ChildProcess | undefined;
  let output = '';
  let provider: Server | undefined;
  let portalUrl = '';

  beforeAll(async () => {
    if (!existsSync(path.join(portalDir, '.next/BUILD_ID'))) {
      throw new Error('apps/portal/.next/BUILD_ID is missing: run `npx nx run portal:build` first');
    }
    provider = await startMisnamedProvider();
    const port = await freePort();
    portalUrl = `http://localhost:${port}`;
    portal = spawn(process.execPath, [nextBin, 'start', '--port', String(port), '--hostname', '127.0.0.1'], {
      cwd: portalDir,
      env: {
        PATH: process.env['PATH'] ?? '',
        HOME: process.env['HOME'] ?? '/tmp',
        NODE_ENV: 'production',
        NEXT_TELEMETRY_DISABLED: '1',
        NEXTAUTH_URL: portalUrl,
        NEXTAUTH_SECRET: randomBytes(32).toString('base64url'),
        PORTAL_OIDC_ISSUER: `http://127.0.0.1:${(provider.address() as AddressInfo).port}`,
        PORTAL_OIDC_CLIENT_SECRET: randomBytes(24).toString('base64url'),
        REDIS_URL: testContext().redisUrl,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    portal.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    portal.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    // /healthz, not /readyz: this portal is misconfigured on purpose, and must say so on /readyz.
    await waitFor(
      async () => {
        if (portal?.exitCode !== null) throw new Error(`the portal exited (${portal?.exitCode}):\n${output}`);
        return (await fetch(`${portalUrl}/healthz`)).ok;
      },
      { timeoutMs: 60_000, intervalMs: 150, description: `${portalUrl}/healthz` },
    );
  }, 90_000);

  afterAll(async () => {
    if (portal && portal.exitCode === null) {
      const exited = once(portal, 'exit');
      portal.kill('SIGTERM');
      await exited;
    }
    provider?.close();
  });

  const get = (pathAndQuery: string) => fetch(`${portalUrl}${pathAndQuery}`, { redirect: 'manual' });

  it('answers a callbackUrl that is not a URL without a 500, and sends it to the portal', async () => {
    expect((await get('/api/auth/session?callbackUrl=/tenants')).status).toBe(200);
    // Before, next-auth refused these as a server configuration error (not an http URL) on every /api/auth route: 500.
    for (const query of ['callbackUrl=foo', 'callbackUrl=javascript:alert(1)', 'callbackUrl=%3A']) {
      for (const route of ['session', 'csrf', 'providers']) {
        expect({ route, query, status: (await get(`/api/auth/${route}?${query}`)).status }).toEqual({ route, query, status: 200 });
      }
    }
    const signIn = await get('/api/auth/signin?callbackUrl=foo');
    expect(signIn.status).toBe(302);
    const location = new URL(signIn.headers.get('location') ?? '', portalUrl);
    expect(location.pathname).toBe('/sign-in');
    expect(location.searchParams.get('callbackUrl')).toBe(`${portalUrl}/`);
  });

  it('answers a browser holding a callback-URL cookie next-auth would refuse without a 500, its other cookies kept', async () => {
    const csrf = await get('/api/auth/csrf');
    const { csrfToken } = (await csrf.json()) as { csrfToken: string };
    const csrfCookie = csrf.headers.getSetCookie().map((line) => line.split(';')[0]).join('; ');
    // Before, a hand-made `next-auth.callback-url=foo` answered 500 on every /api/auth route while the browser held it.
    for (const value of ['foo', '%3A', 'javascript%3Aalert(1)']) {
      const cookie = `${csrfCookie}; next-auth.callback-url=${value}`;
      for (const route of ['session', 'csrf', 'providers']) {
        const response = await fetch(`${portalUrl}/api/auth/${route}`, { redirect: 'manual', headers: { cookie } });
        expect({ route, value, status: response.status }).toEqual({ route, value, status: 200 });
      }
      // The CSRF cookie passed on untouched: the sign-in form is taken (a broken one would go back to ?csrf=true).
      const signIn = await fetch(`${portalUrl}/api/auth/signin/oidc`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
        body: new URLSearchParams({ csrfToken, callbackUrl: '/tenants', json: 'true' }).toString(),
      });
      expect(signIn.status).toBe(200);
      expect(((await signIn.json()) as { url: string }).url).not.toContain('csrf=true');
    }
  });

  it('keeps the form of a sign-in whose query carries a callbackUrl next-auth would refuse', async () => {
    const csrf = await get('/api/auth/csrf');
    const { csrfToken } = (await csrf.json()) as { csrfToken: string };
    const cookie = csrf.headers.getSetCookie().map((line) => line.split(';')[0]).join('; ');
    const response = await fetch(`${portalUrl}/api/auth/signin/oidc?callbackUrl=foo`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
      body: new URLSearchParams({ csrfToken, callbackUrl: '/tenants', json: 'true' }).toString(),
    });
    expect(response.status).toBe(200);
    // The form reached next-auth: without its CSRF token, next-auth would send the browser back to ?csrf=true.
    const { url } = (await response.json()) as { url: string };
    expect(url).not.toContain('csrf=true');
  });

  it('sends an error code a Location header cannot carry to the sign-in page with the generic code', async () => {
    const known = await get('/api/auth/error?error=AccessDenied');
    expect(known.status).toBe(302);
    expect(known.headers.get('location')).toBe('/sign-in?error=AccessDenied');
    // Before, `Location: /sign-in?error=<raw value>` was built unencoded, and Node refused the header: 500.
    for (const query of ['error=%E2%9C%93', 'error=%0d%0aX-Injected:%201', 'error=']) {
      const response = await get(`/api/auth/error?${query}`);
      expect({ query, status: response.status, location: response.headers.get('location') }).toEqual({
        query,
        status: 302,
        location: '/sign-in?error=Default',
      });
      expect(response.headers.get('x-injected')).toBeNull();
    }
    // next-auth also takes the code from the path.
    const fromPath = await get('/api/auth/error/%0d%0aX-Injected:%201');
    expect(fromPath.status).toBe(302);
    expect(fromPath.headers.get('location')).toBe('/sign-in?error=Default');
  });

  it('shows the sign-in page for an error code named like an Object.prototype member', async () => {
    // Before, the page looked the code up on a plain object: these found Object.prototype's members, which React cannot
    // render (500).
    for (const code of ['constructor', 'toString', 'valueOf', 'hasOwnProperty', '__proto__']) {
      const response = await get(`/sign-in?error=${code}`);
      expect({ code, status: response.status }).toEqual({ code, status: 200 });
      expect(await response.text()).toContain('Sign-in failed. Try again.');
    }
    // The way a visitor is sent there: next-auth's error route passes a plain word on (authErrorCode).
    const viaNextAuth = await get('/api/auth/error?error=constructor');
    expect(viaNextAuth.headers.get('location')).toBe('/sign-in?error=constructor');
    expect((await get(viaNextAuth.headers.get('location') ?? '')).status).toBe(200);
  });

  it('refuses a path whose percent-encoding does not decode with 400, not a bare 500', async () => {
    // Before, Next's route matcher threw decoding the segments of [...nextauth]: 500, before any of the portal's code.
    const requests = [
      ['GET', '/api/auth/%ZZ'],
      ['GET', '/api/auth/error/%E0%A4%A'],
      ['GET', '/api/auth/signin/%E0'],
      ['GET', '/api/auth/session;%ZZ'],
      ['POST', '/api/auth/signout/%ZZ'],
      // Pages have no dynamic segments (a 404, or the sign-in page), but the proxy refuses them the same.
      ['GET', '/%ZZ'],
      ['GET', '/tenants/%E0%A4%A'],
    ] as const;
    for (const [method, route] of requests) {
      const response = await fetch(`${portalUrl}${route}`, { method, redirect: 'manual' });
      expect({ method, route, status: response.status }).toEqual({ method, route, status: 400 });
      expect(await response.json()).toEqual({ error: 'bad_request', message: expect.stringMatching(/percent-encoding/) });
    }
    // An escape that decodes still reaches next-auth.
    expect((await get('/api/auth/%73ession')).status).toBe(200);
  });

  it('answers HEAD on the GET routes of /api/auth as GET, without the body', async () => {
    for (const route of ['csrf', 'session', 'providers']) {
      const getResponse = await get(`/api/auth/${route}`);
      // Before, next-auth was handed the HEAD and refused it: 400.
      const head = await fetch(`${portalUrl}/api/auth/${route}`, { method: 'HEAD', redirect: 'manual' });
      expect({ route, get: getResponse.status, head: head.status }).toEqual({ route, get: 200, head: 200 });
      expect({ route, type: head.headers.get('content-type') }).toEqual({ route, type: getResponse.headers.get('content-type') });
      expect({ route, cacheControl: head.headers.get('cache-control') }).toEqual({ route, cacheControl: getResponse.headers.get('cache-control') });
      expect({ route, setsCookies: head.headers.getSetCookie().map((line) => line.split('=')[0]) }).toEqual({
        route,
        setsCookies: getResponse.headers.getSetCookie().map((line) => line.split('=')[0]),
      });
      expect(await head.text()).toBe('');
    }
  });

  it('is not ready while the provider\'s discovery names another issuer: no sign-in can succeed', async () => {
    // Every ID token that provider signs carries iss=http://idp.elsewhere.example, which the signIn callback refuses;
    // before, /readyz said "reachable".
    const response = await get('/readyz');
    expect(response.status).toBe(503);
    const body = (await response.json()) as { status: string; identityProvider: string };
    expect(body.status).toBe('not ready');
    expect(body.identityProvider).toMatch(/another issuer than PORTAL_OIDC_ISSUER/);
    expect(body.identityProvider).not.toMatch(/elsewhere|127\.0\.0\.1/);
  });

  const postJson = (route: string, body: string) =>
    fetch(`${portalUrl}/api/auth/${route}`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/json' }, body });

  // next-auth's route handler parses a JSON body with `req.json()` and hands `callbackUrl` to the redirect callback as
  // parsed: a number, an object, an array threw there (500); malformed JSON threw before any of the portal's code (500).
  it('answers a callbackUrl that is not a string without a 500 (the redirect callback threw on it)', async () => {
    for (const body of ['{"callbackUrl":1}', '{"callbackUrl":{"a":1}}', '{"callbackUrl":["/tenants"]}', '{"callbackUrl":true}']) {
      for (const route of ['session', 'signout', 'signin/oidc', 'csrf']) {
        const { status } = await postJson(route, body);
        expect({ route, body, status }).toEqual({ route, body, status: expect.any(Number) });
        expect({ route, body, serverError: status >= 500 }).toEqual({ route, body, serverError: false });
      }
    }
  });

  it('answers a body that is not JSON at all without a 500 (next-auth parses it unguarded)', async () => {
    for (const route of ['session', 'signout', 'signin/oidc']) {
      const { status } = await postJson(route, '{not json');
      expect({ route, serverError: status >= 500 }).toEqual({ route, serverError: false });
    }
  });

  it('refuses a POST body that is not form-encoded with 415, before next-auth sees it; a form still reaches it', async () => {
    for (const type of ['application/json', 'text/plain', 'application/x-www-form-urlencoded; x=application/json']) {
      const response = await fetch(`${portalUrl}/api/auth/signout`, { method: 'POST', redirect: 'manual', headers: { 'content-type': type }, body: '{}' });
      expect({ type, status: response.status }).toEqual({ type, status: 415 });
      expect(await response.json()).toEqual({ error: 'unsupported_media_type', message: expect.stringMatching(/x-www-form-urlencoded/) });
    }
    // What next-auth's client sends: its form reaches next-auth (no CSRF token here, so next-auth asks for one).
    const form = await fetch(`${portalUrl}/api/auth/signout`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ callbackUrl: '/', json: 'true' }).toString(),
    });
    expect(form.status).toBe(200);
    expect(((await form.json()) as { url: string }).url).toContain('csrf=true');
  });

  it('logged no error for any of these requests', () => {
    expect(output).not.toMatch(/\[next-auth\]\[error\]|ERR_INVALID_CHAR|"level":"error"|TypeError|SyntaxError|⨯/);
  });

  // After the check above: an error the provider sends back is one next-auth reports (logged at error level).
  it("refuses next-auth's log relay (POST /api/auth/_log): nobody writes the portal's log", async () => {
    const forged = { level: 'error', code: 'FORGED', message: 'written by a visitor' };
    const response = await fetch(`${portalUrl}/api/auth/_log`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(forged).toString() });
    expect(response.status).toBe(404);
    expect(output).not.toContain('FORGED');
  });

  it('logs what next-auth reports as one JSON line, a visitor\'s text inside it (GET /api/auth/callback/oidc?error=...)', async () => {
    const forged = '{"level":50,"service":"portal","msg":"forged by a visitor"}';
    const response = await get(`/api/auth/callback/oidc?error=${encodeURIComponent(`x\n${forged}\n`)}`);
    expect(response.status).toBeLessThan(500);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(output.split('\n')).not.toContain(forged);
  });

});
