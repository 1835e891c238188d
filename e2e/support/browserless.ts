import { expect } from 'vitest';

/** fetch with one cookie jar per host, never following redirects: a browser for tests that need no page. */
export class Browserless {
  readonly jars = new Map<string, Map<string, string>>();

  jar(url: string): Map<string, string> {
    const host = new URL(url).host;
    let jar = this.jars.get(host);
    if (!jar) this.jars.set(host, (jar = new Map()));
    return jar;
  }

  /** The Cookie header this browser sends to `url`'s host. */
  cookie(url: string): string {
    return [...this.jar(url)].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  async go(url: string, init: RequestInit & { headers?: Record<string, string> } = {}): Promise<Response> {
    const jar = this.jar(url);
    const cookie = this.cookie(url);
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

/** Signs Olivia in at the portal on `portalUrl` through its dev IdP, as the sign-in button and the IdP's login form would. */
export async function signInOverHttp(browser: Browserless, portalUrl: string, password: string): Promise<void> {
  const { csrfToken } = (await (await browser.go(`${portalUrl}/api/auth/csrf`)).json()) as { csrfToken: string };
  const start = await browser.form(`${portalUrl}/api/auth/signin/oidc`, { csrfToken, callbackUrl: '/', json: 'true' });
  let url = ((await start.json()) as { url: string }).url;
  for (let hop = 0; hop < 12 && !(url.startsWith(portalUrl) && !url.includes('/api/auth/')); hop++) {
    let response = await browser.go(url);
    if (response.status === 200 && url.includes('/interaction/')) {
      response = await browser.form(`${url}/login`, { email: 'olivia.owner@acme.example', password });
    }
    const location = response.headers.get('location');
    if (!location) throw new Error(`sign-in stopped at ${url} (${response.status})`);
    url = new URL(location, url).toString();
  }
  const session = (await (await browser.go(`${portalUrl}/api/auth/session`)).json()) as { user?: { email?: string } };
  expect(session.user?.email).toBe('olivia.owner@acme.example');
}
