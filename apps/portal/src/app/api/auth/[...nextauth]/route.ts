import NextAuth from 'next-auth';
import { NextRequest } from 'next/server';
import { getToken } from 'next-auth/jwt';
import { authBodyRefusal, cleanAuthRoute, NEXT_AUTH_CSRF_COOKIES, type PortalToken, sessionState, signOutCsrfVerified } from '@portcullis/portal/auth';
import { authOptions } from '../../../../auth';
import { portalConfig } from '../../../../config';
import { recordSignOut } from '../../../../record-sign-out';
import { sessionRevocations } from '../../../../session-revocations';

type RouteContext = { params: Promise<{ nextauth: string[] }> };

async function handler(request: NextRequest, context: RouteContext): Promise<Response> {
  // A JSON body (or any but a form) never reaches next-auth: it parses JSON unguarded and keeps its value types.
  const refusal = authBodyRefusal(request.method, request.headers.get('content-type'));
  if (refusal) {
    const { status, error, message } = refusal;
    return Response.json({ error, message }, { status, headers: { accept: 'application/x-www-form-urlencoded', 'cache-control': 'no-store' } });
  }
  const segments = (await context.params).nextauth;
  if (request.method === 'POST' && segments.length === 1 && segments[0] === 'signout') {
    const refused = await recordBeforeSignOut(request);
    if (refused) return refused;
  }
  // next-auth answers 500 for some visitor-chosen values of `callbackUrl` and of the error code (see cleanAuthRoute):
  // it is handed the request with those cleaned. next-auth reads the query from `nextUrl` and the path from `params`.
  const clean = cleanAuthRoute({ url: new URL(request.url), segments }, portalConfig().publicUrl);
  const [authRequest, authContext] = clean
    ? [
        new NextRequest(clean.url, { method: request.method, headers: request.headers, body: request.body }),
        { params: Promise.resolve({ nextauth: [...clean.segments] }) },
      ]
    : [request, context];
  return NextAuth(authRequest as never, authContext as never, authOptions()) as Promise<Response>;
}

/**
 * A sign-out posted to next-auth (`POST /api/auth/signout`) is recorded before next-auth clears the cookie, as the
 * sign-out button's first step does (`POST /api/sign-out`): else a Redis refusing the write could only be logged (from
 * next-auth's signOut event) while the person was told they were out and every copy of the cookie stayed valid. Only a
 * POST that next-auth itself would act on is recorded (its CSRF token checked the same way: no sign-out from another
 * site), and only for a session not recorded already (the button's second step writes nothing).
 */
async function recordBeforeSignOut(request: NextRequest): Promise<Response | undefined> {
  const { auth } = portalConfig();
  const form = await request.clone().formData().catch(() => undefined);
  const csrfCookies = NEXT_AUTH_CSRF_COOKIES.map((name) => request.cookies.get(name)?.value);
  if (!form || !signOutCsrfVerified(csrfCookies, form.get('csrfToken'), auth.sessionSecret)) return undefined;
  const token = (await getToken({ req: request, secret: auth.sessionSecret })) as PortalToken | null;
  if (token === null || typeof token.sid !== 'string') return undefined;
  const state = await sessionState(token, sessionRevocations()).catch(() => 'unknown' as const);
  if (state === 'ended') return undefined;
  return recordSignOut(token.sid);
}

export { handler as GET, handler as POST };
