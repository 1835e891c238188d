import { sameOriginRedirect } from './callback-url';

/** What the sign-in page gets instead of an error code that cannot have come from next-auth. */
export const GENERIC_AUTH_ERROR = 'Default';

/** next-auth's error codes are single words (`AccessDenied`, `OAuthCallback`, `Configuration`...). */
const ERROR_CODE = /^[A-Za-z]{1,64}$/;

/**
 * The error code to let next-auth see on /api/auth/error. next-auth copies it unencoded into the `Location` header of
 * its redirect to the sign-in page, and Node refuses a header with `✓` or a line break in it: the visitor would get a
 * 500 instead of the sign-in page (and a line break would otherwise be a header injection). Anything but a plain word
 * becomes the generic code, which the sign-in page shows as "Sign-in failed".
 */
export function authErrorCode(value: string): string {
  return ERROR_CODE.test(value) ? value : GENERIC_AUTH_ERROR;
}

/** Why an /api/auth request is refused before next-auth sees it. */
export interface AuthBodyRefusal {
  readonly status: 415;
  readonly error: 'unsupported_media_type';
  readonly message: string;
}

/**
 * Whether an /api/auth request's body may reach next-auth. Its route handler reads a POST body by the `Content-Type`
 * header: one that contains `application/json` goes through `req.json()`, unguarded (malformed JSON: a 500 before any
 * of the portal's code runs), and hands next-auth values of any JSON type where it expects strings (`callbackUrl`,
 * `csrfToken`). next-auth's own client (`signIn`, `signOut` of `next-auth/react`) and an IdP's form_post send
 * `application/x-www-form-urlencoded`, which it reads with `URLSearchParams`: strings only, never a parse error. So a
 * POST is refused (415) when it declares any other type; one with no `Content-Type` passes (next-auth reads no body
 * from it). Other methods carry no body next-auth reads.
 */
export function authBodyRefusal(method: string, contentType: string | null): AuthBodyRefusal | undefined {
  if (method.toUpperCase() !== 'POST' || contentType === null) return undefined;
  const essence = (contentType.split(';', 1)[0] ?? '').trim().toLowerCase();
  // next-auth looks for `application/json` anywhere in the header, parameters included.
  if (essence === 'application/x-www-form-urlencoded' && !contentType.toLowerCase().includes('json')) return undefined;
  return {
    status: 415,
    error: 'unsupported_media_type',
    message: 'POST /api/auth/* takes application/x-www-form-urlencoded bodies only.',
  };
}

/** An /api/auth request as next-auth's route handler reads it: the URL's query, and the path segments after /api/auth. */
export interface AuthRoute {
  readonly url: URL;
  readonly segments: readonly string[];
}

/**
 * The /api/auth request as next-auth may see it, or undefined when it may see it as it came. Visitors choose these
 * values, and next-auth answers 500 for some of them:
 * - `callbackUrl`: before any callback runs, next-auth refuses a value that is not an http URL (`foo`, `:`,
 *   `javascript:...`) as a server configuration error, on every /api/auth route. It becomes the same URL
 *   `sameOriginRedirect` would give (a URL of the portal at `publicUrl`, its base for anything else).
 * - the error code of /api/auth/error (the `error` parameter, else the path segment after `error`): see
 *   `authErrorCode`. It is handed over in the parameter only.
 */
export function cleanAuthRoute(route: AuthRoute, publicUrl: string): AuthRoute | undefined {
  const url = new URL(route.url);
  let segments = route.segments;
  const callbackUrl = url.searchParams.get('callbackUrl');
  if (callbackUrl !== null) url.searchParams.set('callbackUrl', sameOriginRedirect(callbackUrl, publicUrl));
  if (segments[0] === 'error') {
    const code = url.searchParams.get('error') ?? segments[1];
    if (code !== undefined) url.searchParams.set('error', authErrorCode(code));
    segments = ['error'];
  }
  const unchanged = url.search === route.url.search && segments.length === route.segments.length;
  return unchanged ? undefined : { url, segments };
}

/**
 * Whether next-auth takes `value` as a callback URL: an http(s) URL, or a path (resolved against the portal). Where it
 * then goes is the `redirect` callback's to decide (`sameOriginRedirect`).
 */
function takenByNextAuth(value: string, publicUrl: string): boolean {
  try {
    return /^https?:$/.test(new URL(value, value.startsWith('/') ? publicUrl : undefined).protocol);
  } catch {
    return false;
  }
}

/** The cookies next-auth keeps the callback's answer in (the `__Secure-` one behind TLS). */
const CALLBACK_COOKIES = new Set(['next-auth.callback-url', '__Secure-next-auth.callback-url']);

/**
 * The `Cookie` header next-auth may see, or undefined when it may see it as it came. next-auth refuses a callback-URL
 * cookie that is not an http URL (`foo`, `:`) as a server configuration error on every /api/auth route: a 500 for
 * anyone whose browser holds one. Only a hand-made cookie can (next-auth writes the callback's answer there), but the
 * visitor, or a script of a sibling subdomain that may set cookies for the portal's host, chooses it. Such a value
 * becomes what `sameOriginRedirect` gives; one next-auth takes, and every other cookie, is passed on byte for byte.
 */
export function cleanCallbackCookie(header: string | null, publicUrl: string): string | undefined {
  if (header === null || !header.includes('callback-url')) return undefined;
  let changed = false;
  const pairs = header.split(';').map((pair) => {
    const at = pair.indexOf('=');
    // A nameless cookie (`next-auth.callback-url` alone, what a browser sends for `document.cookie = 'name'`): Next
    // reads it as that cookie with the value `true`, which next-auth refuses (found by re-review).
    if (at < 0) {
      if (!CALLBACK_COOKIES.has(pair.trim())) return pair;
      changed = true;
      return `${pair}=${encodeURIComponent(sameOriginRedirect('true', publicUrl))}`;
    }
    if (!CALLBACK_COOKIES.has(pair.slice(0, at).trim())) return pair;
    // Untrimmed, as Next's cookie parser hands it to next-auth: String#trim also drops U+00A0 (a raw 0xA0 byte of the
    // header), which `new URL` keeps, and `\u00A0http://x` was judged as `http://x` and let through (found by review).
    const raw = pair.slice(at + 1);
    let value: string;
    try {
      value = decodeURIComponent(raw);
    } catch {
      value = raw;
    }
    if (takenByNextAuth(value, publicUrl)) return pair;
    changed = true;
    return `${pair.slice(0, at)}=${encodeURIComponent(sameOriginRedirect(value, publicUrl))}`;
  });
  return changed ? pairs.join(';') : undefined;
}
