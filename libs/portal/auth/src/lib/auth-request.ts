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
