import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testContext } from '@portcullis/shared/util-testing';
import { type AppProcess, freePort, repoRoot, startBuiltApp, startProcess, waitForReady } from '../support/app-process';
import { Browserless, signInOverHttp } from '../support/browserless';

// Needs the built dev IdP (dist/apps/dev-idp/main.js) and the built portal (apps/portal/.next).
const identities = JSON.parse(readFileSync(path.join(repoRoot, 'tools/demo/identities.json'), 'utf8')) as { password: string };
const nextBin = path.join(repoRoot, 'node_modules/next/dist/bin/next');
const { redisUrl } = testContext();
const LIFETIME_SECONDS = 6;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('portal session lifetime (counted from sign-in, ADR 0004)', () => {
  const started: AppProcess[] = [];
  let portalUrl = '';

  beforeAll(async () => {
    for (const artefact of ['dist/apps/dev-idp/main.js', 'apps/portal/.next/BUILD_ID']) {
      if (!existsSync(path.join(repoRoot, artefact))) throw new Error(`${artefact} is missing: build dev-idp and portal first`);
    }
    const [idpPort, portalPort] = [await freePort(), await freePort()];
    const idpUrl = `http://localhost:${idpPort}`;
    portalUrl = `http://localhost:${portalPort}`;
    const clientSecret = randomBytes(24).toString('base64url');
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
    const portal = startProcess(
      process.execPath,
      [nextBin, 'start', '--port', String(portalPort), '--hostname', 'localhost'],
      {
        NODE_ENV: 'production',
        NEXT_TELEMETRY_DISABLED: '1',
        NEXTAUTH_URL: portalUrl,
        NEXTAUTH_SECRET: randomBytes(32).toString('base64url'),
        PORTAL_OIDC_ISSUER: idpUrl,
        PORTAL_OIDC_CLIENT_SECRET: clientSecret,
        PORTAL_SESSION_MAX_AGE_SECONDS: String(LIFETIME_SECONDS),
        REDIS_URL: redisUrl,
      },
      path.join(repoRoot, 'apps/portal'),
    );
    started.push(portal);
    await waitForReady(`${portalUrl}/readyz`, portal, 60_000);
  }, 120_000);

  afterAll(async () => {
    for (const app of started.reverse()) await app.stop(5_000);
  });

  it('does not render a dashboard page for a copy of the cookie once the lifetime since sign-in is over', async () => {
    const browser = new Browserless();
    await signInOverHttp(browser, portalUrl, identities.password);
    // The person's own tab keeps the session in use (next-auth's client polls /api/auth/session): the cookie is renewed
    // shortly before the lifetime ends, as next-auth renews it on every use.
    await sleep((LIFETIME_SECONDS - 2) * 1000);
    expect(((await (await browser.go(`${portalUrl}/api/auth/session`)).json()) as { user?: unknown }).user).toBeDefined();
    const copy = browser.cookie(portalUrl);
    // Past the lifetime counted from sign-in: the session has ended (the jwt callback says so)...
    await sleep(4_000);
    expect(await (await fetch(`${portalUrl}/api/auth/session`, { headers: { cookie: copy } })).json()).toEqual({});
    // ...and the proxy, the one check every page request passes, sends the copy to sign in before any page renders
    // (found by review: it let the copy through, and only the layout redirected, the page's content in the redirect's
    // body; client navigations do not render the layout again at all).
    const page = await fetch(`${portalUrl}/upstreams`, { headers: { cookie: copy }, redirect: 'manual' });
    const body = await page.text();
    expect({ status: page.status, location: page.headers.get('location'), pageRendered: body.includes('MCP servers the gateway forwards to.') }).toEqual({
      status: 307,
      location: '/sign-in?callbackUrl=%2Fupstreams',
      pageRendered: false,
    });
  });
});
