import { type NextRequest, NextResponse } from 'next/server';
import { getToken } from 'next-auth/jwt';
import { cleanCallbackCookie, SIGN_IN_PATH } from '@portcullis/portal/auth';
import { portalConfig } from './config';

/**
 * Sends anonymous visitors of any page to the sign-in page, remembering where they were going.
 * The dashboard layout checks the session again (defence in depth).
 *
 * On /api/auth, it only hands next-auth a callback-URL cookie next-auth would refuse (a 500 on every route) cleaned
 * (`cleanCallbackCookie`): next-auth's route handler reads the cookies of the request as it reached the app, so this
 * is the one place they can be changed.
 */
export async function proxy(request: NextRequest): Promise<NextResponse> {
  if (request.nextUrl.pathname.startsWith('/api/auth/')) {
    const cookie = cleanCallbackCookie(request.headers.get('cookie'), portalConfig().publicUrl);
    if (cookie === undefined) return NextResponse.next();
    const headers = new Headers(request.headers);
    headers.set('cookie', cookie);
    return NextResponse.next({ request: { headers } });
  }
  const token = await getToken({ req: request, secret: portalConfig().auth.sessionSecret });
  if (token) return NextResponse.next();
  const signIn = new URL(SIGN_IN_PATH, request.nextUrl);
  signIn.searchParams.set('callbackUrl', `${request.nextUrl.pathname}${request.nextUrl.search}`);
  return NextResponse.redirect(signIn);
}

export const config = {
  matcher: ['/api/auth/:path*', '/((?!api/|_next/|sign-in|healthz|readyz|favicon\\.ico).*)'],
};
