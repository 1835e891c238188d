import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextAuthOptions } from 'next-auth';

/*
 * The portal records a sign-out posted to next-auth (`POST /api/auth/signout`) before next-auth clears the cookie, and
 * must record it if and only if next-auth will sign out. next-auth 4.24 (core/index.js) signs out a POST whose first
 * path segment after /api/auth is `signout`, whatever follows it (the second segment is read as a provider id and
 * ignored), once its CSRF check (core/lib/csrf-token.js) passes. Each function here repeats one step of that check as
 * next-auth makes it, not as it might be read: a stricter or looser copy lets one of the two act without the other
 * (a sign-out next-auth refuses yet the portal records: the victim's session ended from a sibling host; one next-auth
 * makes yet the portal does not record: every copy of the cookie stays valid).
 */

/** next-auth's default names, when its options name no CSRF cookie (core/lib/cookie.js `defaultCookies`). */
const CSRF_COOKIE = { secure: '__Host-next-auth.csrf-token', plain: 'next-auth.csrf-token' } as const;

/**
 * The one cookie next-auth reads its CSRF token from, derived as next-auth derives it (core/init.js) from the options
 * the portal gives it and its URL (NEXTAUTH_URL, which the portal requires, so next-auth never guesses it from the
 * request): the options' `cookies.csrfToken.name` when set; else the `__Host-` name when `useSecureCookies`, which
 * defaults to whether the URL is https. A CSRF cookie under any other name is not next-auth's: a sibling subdomain can
 * plant the plain name on an https portal (keeping it out is what `__Host-` is for), so it must not count.
 */
export function nextAuthCsrfCookieName(options: Pick<NextAuthOptions, 'cookies' | 'useSecureCookies'>, nextAuthUrl: string): string {
  const named = options.cookies?.csrfToken?.name;
  if (named !== undefined) return named;
  // next-auth's parseUrl: a URL not starting with `http` is taken as a host name behind https.
  const origin = new URL(nextAuthUrl.startsWith('http') ? nextAuthUrl : `https://${nextAuthUrl}`).origin;
  return (options.useSecureCookies ?? origin.startsWith('https://')) ? CSRF_COOKIE.secure : CSRF_COOKIE.plain;
}

/**
 * A form field of a POST body as next-auth's route handler reads it (next/utils.js `getBody`): only when the
 * `Content-Type` contains `application/x-www-form-urlencoded` (as written: the check is case-sensitive), decoded with
 * `URLSearchParams` into an object (`Object.fromEntries`), so of a repeated field the last one counts. Undefined when
 * next-auth reads no such field.
 */
export function nextAuthFormField(contentType: string | null, body: string | undefined, name: string): string | undefined {
  if (body === undefined || contentType === null || !contentType.includes('application/x-www-form-urlencoded')) return undefined;
  return new URLSearchParams(body).getAll(name).at(-1);
}

/**
 * next-auth's CSRF check for a POST (core/lib/csrf-token.js): the cookie (a non-empty value, `<token>|<hash>`; any
 * further `|` part ignored) has the hash sha256(<token><secret>) as lowercase hex, exactly (the hash proves the portal
 * set the cookie), and the form's `csrfToken` equals its token. The hash is compared in constant time, which is equal
 * strings all the same: `expected` is ASCII, so equal UTF-8 bytes mean an equal string.
 */
export function signOutCsrfVerified(cookieValue: string | undefined, formToken: string | undefined, secret: string): boolean {
  if (!cookieValue) return false;
  const [token = '', hash = ''] = cookieValue.split('|');
  const expected = Buffer.from(createHash('sha256').update(`${token}${secret}`).digest('hex'), 'utf8');
  const given = Buffer.from(hash, 'utf8');
  return given.length === expected.length && timingSafeEqual(given, expected) && token === formToken;
}

/**
 * The most of a sign-out form the portal reads before next-auth does: the form is a CSRF token (64 characters), a
 * callback URL and `json=true`, a few hundred bytes; 64 KiB leaves room for the longest URL a browser sends encoded.
 * A larger body is refused (`readBodyAtMost`), by the portal and so by next-auth, which never sees it.
 */
export const SIGN_OUT_BODY_MAX_BYTES = 64 * 1024;

/**
 * The bytes of `body`, read whole unless it holds more than `maxBytes`: then `too_large`, and the rest is not read.
 * Undefined when there is no body.
 */
export async function readBodyAtMost(body: ReadableStream<Uint8Array> | null, maxBytes: number): Promise<Uint8Array<ArrayBuffer> | 'too_large' | undefined> {
  if (body === null) return undefined;
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => undefined);
      return 'too_large';
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}
