import { type NextRequest } from 'next/server';
import { getToken } from 'next-auth/jwt';
import { type PortalToken, providerSignOutUrl, sessionState, SIGN_IN_PATH } from '@portcullis/portal/auth';
import { portalConfig } from '../../../config';
import { endSessionEndpoint } from '../../../provider-sign-out';
import { recordSignOut } from '../../../record-sign-out';
import { sessionRevocations } from '../../../session-revocations';

export const dynamic = 'force-dynamic';

/**
 * Step one of signing out (the sign-out button). It ends the session for every copy of its cookie — records its id as
 * signed out — before next-auth clears the browser's cookie, so that a record that cannot be written reaches the
 * person: 503 (`sign_out_unavailable`), and the button says the sign-out did not complete instead of going on. A Redis
 * that answers reads and refuses writes (full with noeviction, a read-only replica after a failover) is not "down": a
 * session it could not record as ended stays valid for every copy of its cookie.
 *
 * Recorded, it answers where the browser goes once next-auth has cleared the portal's cookie: the provider's
 * end-session endpoint with this person's ID token as its hint (the client id alone when the token was too large to
 * keep, or when the session could not be checked), which comes back to the sign-in page; or the sign-in page itself
 * when the provider offers no sign-out or the person was not signed in. Only the portal's own pages may ask (the answer
 * carries the ID token): a POST from another origin is refused. A session already signed out (a copy of its cookie) is
 * not signed in.
 */
export async function POST(request: NextRequest): Promise<Response> {
  const { auth, publicUrl } = portalConfig();
  const noStore = { 'cache-control': 'no-store' };
  if (request.headers.get('origin') !== new URL(publicUrl).origin) {
    return Response.json({ error: 'forbidden' }, { status: 403, headers: noStore });
  }
  const token = (await getToken({ req: request, secret: auth.sessionSecret })) as PortalToken | null;
  const state = token === null ? 'ended' : await sessionState(token, sessionRevocations(), auth.sessionMaxAgeSeconds).catch(() => 'unknown' as const);
  if (token === null || state === 'ended' || typeof token.sid !== 'string') {
    return Response.json({ url: SIGN_IN_PATH }, { headers: noStore });
  }
  const refused = await recordSignOut(token.sid);
  if (refused) return refused;
  const url = providerSignOutUrl({
    endSessionEndpoint: await endSessionEndpoint(),
    idToken: state === 'active' ? token.idToken : undefined,
    clientId: auth.clientId,
    postLogoutRedirectUri: `${publicUrl}${SIGN_IN_PATH}`,
  });
  return Response.json({ url: url ?? SIGN_IN_PATH }, { headers: noStore });
}
