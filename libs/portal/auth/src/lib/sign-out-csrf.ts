import { createHash, timingSafeEqual } from 'node:crypto';

/** next-auth's CSRF cookie: `__Host-` prefixed when the portal's cookies are secure (an https URL), plain otherwise. */
export const NEXT_AUTH_CSRF_COOKIES = ['__Host-next-auth.csrf-token', 'next-auth.csrf-token'] as const;

/**
 * The check next-auth makes before it signs anyone out, made by the portal first so that it can record the sign-out
 * before next-auth clears the cookie: the form's `csrfToken` equals the token of a CSRF cookie whose value is
 * `<token>|sha256(<token><secret>)` (the hash proves the portal set it, so a cookie planted by a sibling host does not
 * pass). Each cookie value given is tried; any that passes is enough.
 */
export function signOutCsrfVerified(cookieValues: readonly (string | undefined)[], formToken: unknown, secret: string): boolean {
  if (typeof formToken !== 'string' || formToken === '') return false;
  return cookieValues.some((value) => {
    if (value === undefined) return false;
    const [token, hash, extra] = value.split('|');
    if (token === undefined || hash === undefined || extra !== undefined || token !== formToken) return false;
    const expected = createHash('sha256').update(`${token}${secret}`).digest();
    const given = Buffer.from(hash, 'hex');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
