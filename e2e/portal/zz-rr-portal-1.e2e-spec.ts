import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppProcess, freePort, repoRoot, startBuiltApp, startProcess, waitForReady } from '../support/app-process';

// rr-portal review. Needs `nx run-many -t build -p dev-idp portal` first.
//
// Sign-out records the session's id in Redis from next-auth's `events.signOut`; a write that fails is only logged,
// and next-auth clears the browser's cookie and answers the sign-out as done whatever the event did. ADR 0004 calls
// that the "Redis down" trade-off (copies refused during the outage). But a Redis that answers reads and refuses
// writes — full (maxmemory with noeviction, the policy BullMQ requires), a replica after a failover (READONLY) —
// is not "down": the session check (EXISTS) answers "not revoked", so the copy of the cookie taken before sign-out
// stays a valid session for the rest of its lifetime, and nobody is told the sign-out did not end it.

const identities = JSON.parse(readFileSync(path.join(repoRoot, 'tools/demo/identities.json'), 'utf8')) as { password: string };
const nextBin = path.join(repoRoot, 'node_modules/next/dist/bin/next');

class Browserless {
  readonly jars = new Map<string, Map<string, string>>();
  jar(url: string): Map<string, string> {
    const host = new URL(url).host;
    let jar = this.jars.get(host);
    if (!jar) this.jars.set(host, (jar = new Map()));
    return jar;
  }
  async go(url: string, init: RequestInit & { headers?: Record<string, string> } = {}): Promise<Response> {
    const jar = this.jar(url);
    const cookie = [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
    const response = await fetch(url, { ...init, headers: { ...init.headers, cookie }, redirect: 'manual' });
    for (const line of response.headers.getSetCookie()) {
      const [pair = ''] = line.split(';');
      const at = pair.indexOf('=');
      const [name, value] = [pair.slice(0, at), pair.slice(at + 1)];
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line) || /max-age=0\b/i.test(line)) jar.delete(name);
      else jar.set(name, value);
    }
    return response;
  }
  form(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
    return this.go(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(fields).toString() });
  }
}

describe('zz-rr-portal-1: sign-out while Redis refuses writes but answers reads', () => {
  const started: AppProcess[] = [];
  let portalUrl = '';
  let idpUrl = '';
  let portal: AppProcess | undefined;

  beforeAll(async () => {
    for (const artefact of ['dist/apps/dev-idp/main.js', 'apps/portal/.next/BUILD_ID']) {
      if (!existsSync(path.join(repoRoot, artefact))) throw new Error(`${artefact} is missing: run \`npx nx run-many -t build -p dev-idp portal\` first`);
    }
    const [idpPort, portalPort, redisPort] = [await freePort(), await freePort(), await freePort()];
    idpUrl = `http://localhost:${idpPort}`;
    portalUrl = `http://localhost:${portalPort}`;
    const clientSecret = randomBytes(24).toString('base64url');
    // A Redis of its own that is full: every write is refused with OOM, reads answer.
    const redis = startProcess('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory', '1', '--maxmemory-policy', 'noeviction'], {});
    started.push(redis);
    const idp = startBuiltApp('dev-idp', {
      NODE_ENV: 'development',
      LOG_LEVEL: 'warn',
      DEV_IDP_HOST: '127.0.0.1',
      DEV_IDP_PORT: String(idpPort),
      DEV_IDP_ISSUER: idpUrl,
      DEV_IDP_PORTAL_CLIENT_SECRET: clientSecret,
      DEV_IDP_PORTAL_REDIRECT_URIS: `${portalUrl}/api/auth/callback/oidc`,
      DEV_IDP_PORTAL_POST_LOGOUT_REDIRECT_URIS: `${portalUrl}/sign-in`,
    });
    started.push(idp);
    await waitForReady(`${idpUrl}/readyz`, idp);
    portal = startProcess(
      process.execPath,
      [nextBin, 'start', '--port', String(portalPort), '--hostname', 'localhost'],
      {
        NODE_ENV: 'production',
        NEXT_TELEMETRY_DISABLED: '1',
        NEXTAUTH_URL: portalUrl,
        NEXTAUTH_SECRET: randomBytes(32).toString('base64url'),
        PORTAL_OIDC_ISSUER: idpUrl,
        PORTAL_OIDC_CLIENT_SECRET: clientSecret,
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      },
      path.join(repoRoot, 'apps/portal'),
    );
    started.push(portal);
    await waitForReady(`${portalUrl}/readyz`, portal, 60_000);
  }, 120_000);

  afterAll(async () => {
    for (const app of started.reverse()) await app.stop(5_000);
  });

  async function signIn(browser: Browserless): Promise<void> {
    const { csrfToken } = (await (await browser.go(`${portalUrl}/api/auth/csrf`)).json()) as { csrfToken: string };
    const start = await browser.form(`${portalUrl}/api/auth/signin/oidc`, { csrfToken, callbackUrl: '/', json: 'true' });
    let url = ((await start.json()) as { url: string }).url;
    for (let hop = 0; hop < 12 && !(url.startsWith(portalUrl) && !url.includes('/api/auth/')); hop++) {
      let response = await browser.go(url);
      if (response.status === 200 && url.includes('/interaction/')) {
        response = await browser.form(`${url}/login`, { email: 'olivia.owner@acme.example', password: identities.password });
      }
      const location = response.headers.get('location');
      if (!location) throw new Error(`sign-in stopped at ${url} (${response.status})`);
      url = new URL(location, url).toString();
    }
    const session = (await (await browser.go(`${portalUrl}/api/auth/session`)).json()) as { user?: { email?: string } };
    expect(session.user?.email).toBe('olivia.owner@acme.example');
  }

  it('either ends the copy of the session cookie or tells the person the sign-out did not complete', async () => {
    const browser = new Browserless();
    await signIn(browser);
    const cookieBefore = [...browser.jar(portalUrl)].map(([name, value]) => `${name}=${value}`).join('; ');
    expect((await fetch(`${portalUrl}/`, { headers: { cookie: cookieBefore }, redirect: 'manual' })).status).toBe(200);

    // The sign-out button's steps (sign-out-button.tsx): where to go, next-auth's sign-out, then getSession() must be null.
    const step1 = await browser.go(`${portalUrl}/api/sign-out`, { method: 'POST', headers: { origin: portalUrl } });
    const { csrfToken } = (await (await browser.go(`${portalUrl}/api/auth/csrf`)).json()) as { csrfToken: string };
    const step2 = await browser.form(`${portalUrl}/api/auth/signout`, { csrfToken, callbackUrl: portalUrl, json: 'true' });
    const step3 = (await (await browser.go(`${portalUrl}/api/auth/session`)).json()) as { user?: unknown };
    const toldItWorked = step1.status === 200 && step2.status === 200 && step3.user === undefined;

    const replayed = await fetch(`${portalUrl}/`, { headers: { cookie: cookieBefore }, redirect: 'manual' });
    const replayedSession = (await (await fetch(`${portalUrl}/api/auth/session`, { headers: { cookie: cookieBefore } })).json()) as { user?: { email?: string } };
    expect(portal?.output()).toContain('sign-out.revocation-failed');
    // Before a fix: told it worked, and the copy still opens the dashboard and /api/auth/session as Olivia.
    expect({ toldItWorked, copyDashboard: replayed.status, copySession: replayedSession.user?.email ?? null }).not.toEqual({
      toldItWorked: true,
      copyDashboard: 200,
      copySession: 'olivia.owner@acme.example',
    });
  });
});
