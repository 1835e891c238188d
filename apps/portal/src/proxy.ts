import { type NextRequest, NextResponse } from 'next/server';
import { getToken } from 'next-auth/jwt';
import { SIGN_IN_PATH } from '@portcullis/portal/auth';
import { portalConfig } from './config';

/**
 * Sends anonymous visitors of any page to the sign-in page, remembering where they were going.
 * The dashboard layout checks the session again (defence in depth).
 */
export async function proxy(request: NextRequest): Promise<NextResponse> {
  const token = await getToken({ req: request, secret: portalConfig().auth.sessionSecret });
  if (token) return NextResponse.next();
  const signIn = new URL(SIGN_IN_PATH, request.nextUrl);
  signIn.searchParams.set('callbackUrl', `${request.nextUrl.pathname}${request.nextUrl.search}`);
  return NextResponse.redirect(signIn);
}

export const config = {
  matcher: ['/((?!api/|_next/|sign-in|healthz|readyz|favicon\\.ico).*)'],
};
