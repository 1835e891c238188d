import { type NextRequest, NextResponse } from 'next/server';
import { getToken } from 'next-auth/jwt';
import { cleanCallbackCookie, type PortalToken, SessionCheckUnavailableError, sessionState, SIGN_IN_PATH } from '@portcullis/portal/auth';
import { portalConfig } from './config';
import { portalLogger } from './logger';
import { sessionRevocations } from './session-revocations';

/** What a signed-in person sees while sessions cannot be checked (Redis down): the session is not trusted, not ended. */
function sessionCheckUnavailable(): NextResponse {
  const page = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Portcullis is unavailable</title></head><body>
<main><h1>Portcullis cannot check your session right now</h1>
<p>The portal cannot confirm that your session is still valid, so it does not open the dashboard. You are still signed in: try again in a moment.</p></main>
</body></html>`;
  return new NextResponse(page, { status: 503, headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'retry-after': '5' } });
}

/** Whether every percent-escape of `pathname` decodes (UTF-8), as Next decodes the segments of a dynamic route. */
function pathDecodes(pathname: string): boolean {
  try {
    decodeURIComponent(pathname);
    return true;
  } catch {
    return false;
  }
}

/**
 * Sends anonymous visitors of any page to the sign-in page, remembering where they were going. A session cookie whose
 * session was signed out (a copy kept after signing out), or was signed in longer ago than the session lifetime (a copy
 * next-auth renewed), counts as anonymous; while the signed-out sessions cannot be
 * looked up (Redis down), a page answers 503 (fail closed). getToken only decrypts the cookie — next-auth's `jwt`
 * callback, which checks the same, does not run here. The dashboard layout checks the session again (defence in depth).
 *
 * Everywhere it hands on a callback-URL cookie next-auth would refuse cleaned (`cleanCallbackCookie`): next-auth's
 * route handler, and `getServerSession` in every page (the sign-in page and the dashboard's layout), judge the cookies
 * of the request as it reached the app, and a refused one was a 500 there (on the pages too, found by a review: a
 * sibling subdomain's script could lock a person out of the portal, sign-in page included). This is the one place
 * they can be changed. On /api/auth and the sign-in page that is all it does.
 *
 * A path whose percent-encoding does not decode (`/api/auth/%ZZ`) is refused first (400): Next's route matcher throws
 * decoding it into the segments of `[...nextauth]`, a bare 500 no route handler sees. The pages have no dynamic
 * segments (such a path was a 404, or the sign-in page for an anonymous visitor), but are refused the same.
 */
export async function proxy(request: NextRequest): Promise<NextResponse> {
  if (!pathDecodes(request.nextUrl.pathname)) {
    return NextResponse.json(
      { error: 'bad_request', message: 'The path is not valid percent-encoding.' },
      { status: 400, headers: { 'cache-control': 'no-store' } },
    );
  }
  const cookie = cleanCallbackCookie(request.headers.get('cookie'), portalConfig().publicUrl);
  const onward = (): NextResponse => {
    if (cookie === undefined) return NextResponse.next();
    const headers = new Headers(request.headers);
    headers.set('cookie', cookie);
    return NextResponse.next({ request: { headers } });
  };
  const { pathname } = request.nextUrl;
  if (pathname.startsWith('/api/auth/') || pathname === SIGN_IN_PATH) return onward();
  const token = (await getToken({ req: request, secret: portalConfig().auth.sessionSecret })) as PortalToken | null;
  if (token) {
    try {
      if ((await sessionState(token, sessionRevocations(), portalConfig().auth.sessionMaxAgeSeconds)) === 'active') return onward();
    } catch (error) {
      if (!(error instanceof SessionCheckUnavailableError)) throw error;
      portalLogger().error({ event: 'session.check-unavailable', error: String(error.cause) }, 'page refused: the session revocation store (Redis) does not answer');
      return sessionCheckUnavailable();
    }
  }
  const signIn = new URL(SIGN_IN_PATH, request.nextUrl);
  signIn.searchParams.set('callbackUrl', `${request.nextUrl.pathname}${request.nextUrl.search}`);
  return NextResponse.redirect(signIn);
}

export const config = {
  matcher: ['/api/auth/:path*', '/sign-in', '/((?!api/|_next/|sign-in|healthz|readyz|favicon\\.ico).*)'],
};
