import { withoutTrailingSlashes } from '@portcullis/shared/util-config';

/**
 * Where to send someone after sign-in: a path of the portal itself, or `/`. A leading `/` is not enough: browsers read
 * `/\evil.example` and `/<tab>/evil.example` as `//evil.example`, another site. The value is resolved against a
 * placeholder origin, and kept only if it stays there; what is returned is rebuilt from the parsed URL.
 */
export function safeCallbackPath(value: string | readonly string[] | undefined): string {
  const candidate: unknown = typeof value === 'string' ? value : value?.[0];
  if (typeof candidate !== 'string' || !candidate.startsWith('/')) return '/';
  const base = 'http://portal.invalid';
  let url: URL;
  try {
    url = new URL(candidate, base);
  } catch {
    return '/';
  }
  // Same origin is not enough either: dot segments can leave a path that starts with `//` (`/.//host` → `//host`),
  // which a browser reads as another site.
  if (url.origin !== base || url.pathname.startsWith('//')) return '/';
  return `${url.pathname}${url.search}${url.hash}`;
}

function parseUrl(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

/**
 * next-auth's `redirect` callback: where the browser goes after signing in or out. next-auth hands it the `callbackUrl`
 * of any /api/auth request (form field, parameter or cookie), whatever a visitor sent; its default runs
 * `new URL(value)` on what is not a path, which throws on `foo` or `:`: a 500. Kept: a path of the portal, or an
 * absolute URL of the portal itself (next-auth's client sends those), both through `safeCallbackPath`. Anything else
 * goes to the portal's base. Never throws. (`cleanAuthRoute` gives the parameter the same treatment earlier, because
 * next-auth refuses some values before any callback runs.) next-auth's type says `url` is a string, but it hands over
 * `req.body.callbackUrl` as parsed: from a JSON body (which the portal's route refuses, but this must not depend on it)
 * a number, an object, an array or a boolean. Anything but a string goes to the portal's base.
 */
export function sameOriginRedirect(url: unknown, baseUrl: string): string {
  const base = withoutTrailingSlashes(baseUrl);
  if (typeof url !== 'string') return `${base}/`;
  const absolute = url.startsWith('/') ? undefined : parseUrl(url);
  const ownOrigin = absolute !== undefined && absolute.origin !== 'null' && absolute.origin === parseUrl(base)?.origin;
  const path = ownOrigin ? safeCallbackPath(`${absolute.pathname}${absolute.search}${absolute.hash}`) : safeCallbackPath(url);
  return `${base}${path}`;
}
