import 'server-only';
import { portalConfig } from './config';
import { portalLogger } from './logger';
import { sessionRevocations } from './session-revocations';

/**
 * Records the session `sessionId` as signed out, for its lifetime: every copy of its cookie ends with it. Undefined
 * once recorded; when Redis refuses the write or does not answer, the answer to give instead of signing out — 503
 * `sign_out_unavailable` — and the person keeps the session to try again: a sign-out that clears the browser's cookie
 * without this record leaves every copy of the cookie a valid session, nobody told.
 */
export async function recordSignOut(sessionId: string): Promise<Response | undefined> {
  try {
    await sessionRevocations().revoke(sessionId, portalConfig().auth.sessionMaxAgeSeconds);
    return undefined;
  } catch (error) {
    portalLogger().error(
      { event: 'sign-out.revocation-failed', error: String(error) },
      'sign-out refused: the ended session could not be recorded (Redis refused the write or did not answer); the person is asked to try again and keeps the session',
    );
    return Response.json(
      { error: 'sign_out_unavailable', message: 'Sign-out did not complete: the portal could not record it. Try again.' },
      { status: 503, headers: { 'cache-control': 'no-store', 'retry-after': '5' } },
    );
  }
}
