import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AppProcess, repoRoot } from '../support/app-process';
import { Browserless, signInOverHttp } from '../support/browserless';
import { startSignInStack } from '../support/sign-in-stack';

// Needs the built dev IdP (dist/apps/dev-idp/main.js) and the built portal (apps/portal/.next).
const identities = JSON.parse(readFileSync(path.join(repoRoot, 'tools/demo/identities.json'), 'utf8')) as { password: string };
const LIFETIME_SECONDS = 6;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('portal session lifetime (counted from sign-in, ADR 0004)', () => {
  const started: AppProcess[] = [];
  let portalUrl = '';

  beforeAll(async () => {
    ({ portalUrl } = await startSignInStack(started, { portalEnv: { PORTAL_SESSION_MAX_AGE_SECONDS: String(LIFETIME_SECONDS) } }));
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
