import NextAuth from 'next-auth';
import { cookies } from 'next/headers';
import { NextRequest } from 'next/server';
import { getToken } from 'next-auth/jwt';
import {
  authBodyRefusal,
  cleanAuthRoute,
  nextAuthCsrfCookieName,
  nextAuthFormField,
  type PortalToken,
  readBodyAtMost,
  sessionState,
  SIGN_OUT_BODY_MAX_BYTES,
  signOutCsrfVerified,
} from '@portcullis/portal/auth';
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
  // next-auth writes what is posted here to the server's log once a logger is configured (its client's log relay):
  // anyone could fill the portal's log. Nothing of the portal's uses it.
  if (segments[0] === '_log') return Response.json({ error: 'not_found', message: 'Not found.' }, { status: 404, headers: { 'cache-control': 'no-store' } });
  // What next-auth reads of the body: the request as it came, or the bytes read here to record a sign-out.
  let body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer> | null = request.body;
  // next-auth signs out on a POST whose first segment is `signout`, whatever follows (the rest is a provider id it
  // ignores there): each is recorded first.
  if (request.method === 'POST' && segments[0] === 'signout') {
    const read = await readBodyAtMost(request.body, SIGN_OUT_BODY_MAX_BYTES).catch(() => 'unreadable' as const);
    if (read === 'too_large' || read === 'unreadable') return signOutBodyRefusal(read);
    const refused = await recordBeforeSignOut(request, read);
    if (refused) return refused;
    body = read ?? null;
  }
  // next-auth answers 500 for some visitor-chosen values of `callbackUrl` and of the error code (see cleanAuthRoute):
  // it is handed the request with those cleaned. next-auth reads the query from `nextUrl` and the path from `params`.
  const clean = cleanAuthRoute({ url: new URL(request.url), segments }, portalConfig().publicUrl);
  // Next hands a HEAD to this (GET) handler, and next-auth answers 400 to any method but GET and POST: it is asked the
  // GET, and its answer goes back without the body.
  const method = request.method === 'HEAD' ? 'GET' : request.method;
  const [authRequest, authContext] =
    clean || body !== request.body || method !== request.method
      ? [
          new NextRequest(clean?.url ?? request.url, { method, headers: request.headers, body }),
          { params: Promise.resolve({ nextauth: [...(clean?.segments ?? segments)] }) },
        ]
      : [request, context];
  const response = (await NextAuth(authRequest as never, authContext as never, authOptions())) as Response;
  return request.method === 'HEAD' ? new Response(null, { status: response.status, statusText: response.statusText, headers: response.headers }) : response;
}

/** A sign-out body the portal does not read whole (over `SIGN_OUT_BODY_MAX_BYTES`) or could not read: nobody signs out. */
function signOutBodyRefusal(reason: 'too_large' | 'unreadable'): Response {
  const [status, error, message] =
    reason === 'too_large'
      ? [413, 'payload_too_large', `POST /api/auth/signout takes a form of at most ${SIGN_OUT_BODY_MAX_BYTES} bytes.`]
      : [400, 'bad_request', 'The body of the sign-out form could not be read.'];
  return Response.json({ error, message }, { status, headers: { 'cache-control': 'no-store' } });
}

/**
 * A sign-out posted to next-auth (`POST /api/auth/signout[/...]`) is recorded before next-auth clears the cookie, as
 * the sign-out button's first step does (`POST /api/sign-out`): else a Redis refusing the write could only be logged
 * (from next-auth's signOut event) while the person was told they were out and every copy of the cookie stayed valid.
 * It is recorded if and only if next-auth itself will sign out: its CSRF check is repeated as next-auth makes it (no
 * sign-out from another site, nor from a sibling host planting a CSRF cookie next-auth does not read) — the cookie
 * next-auth reads (`nextAuthCsrfCookieName`), the form field as next-auth reads `body` (`nextAuthFormField`), the same
 * comparison (`signOutCsrfVerified`) — and only for a session not recorded already (the button's second step writes
 * nothing).
 */
async function recordBeforeSignOut(request: NextRequest, body: Uint8Array | undefined): Promise<Response | undefined> {
  const { auth, publicUrl } = portalConfig();
  const options = authOptions();
  // next-auth reads the cookies from next/headers, the body as text (UTF-8, as `Request.text()` decodes it).
  const csrfCookie = (await cookies()).get(nextAuthCsrfCookieName(options, publicUrl))?.value;
  const text = body === undefined ? undefined : new TextDecoder().decode(body);
  const formToken = nextAuthFormField(request.headers.get('content-type'), text, 'csrfToken');
  if (!signOutCsrfVerified(csrfCookie, formToken, options.secret ?? auth.sessionSecret)) return undefined;
  // The session cookie only, as next-auth's sign-out reads it: getToken also takes `Authorization: Bearer <token>`,
  // which next-auth's sign-out ignores (recorded, it would end a session next-auth leaves alone; found in review).
  const token = (await getToken({ req: { cookies: request.cookies, headers: new Headers() } as never, secret: auth.sessionSecret })) as PortalToken | null;
  if (token === null || typeof token.sid !== 'string') return undefined;
  const state = await sessionState(token, sessionRevocations(), auth.sessionMaxAgeSeconds).catch(() => 'unknown' as const);
  if (state === 'ended') return undefined;
  return recordSignOut(token.sid);
}

export { handler as GET, handler as POST };
