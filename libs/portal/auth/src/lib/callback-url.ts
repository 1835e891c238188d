/**
 * Where to send someone after sign-in: a path of the portal itself, or `/`. A leading `/` is not enough: browsers read
 * `/\evil.example` and `/<tab>/evil.example` as `//evil.example`, another site. The value is resolved against a
 * placeholder origin, and kept only if it stays there; what is returned is rebuilt from the parsed URL.
 */
export function safeCallbackPath(value: string | readonly string[] | undefined): string {
  const candidate = typeof value === 'string' ? value : value?.[0];
  if (candidate === undefined || !candidate.startsWith('/')) return '/';
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
