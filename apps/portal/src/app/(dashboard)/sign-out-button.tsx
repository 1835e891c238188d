'use client';

import { getSession, signOut } from 'next-auth/react';
import { useState } from 'react';

/**
 * Step one: the portal records the session as ended (every copy of its cookie with it) and says where to go after the
 * portal's session is cleared — the provider's sign-out, or the sign-in page. Throws when it could not record it (an
 * answer that is not ok, or none): the sign-out stops there, the person is told, and the cookie stays.
 */
async function endSession(): Promise<string> {
  const response = await fetch('/api/sign-out', { method: 'POST', cache: 'no-store' });
  if (!response.ok) throw new Error(`the portal did not record the sign-out (${response.status})`);
  const body = (await response.json()) as { url?: unknown };
  return typeof body.url === 'string' ? body.url : '/sign-in';
}

/**
 * Signs out of the portal (it records the session as ended, then next-auth clears its session cookie) and then of the
 * identity provider, whose sign-out page sends the browser back to the sign-in page: the next "Sign in with SSO" asks
 * for the password again. The provider is visited only once the portal's own session is known to be gone: next-auth
 * answers a sign-out it refuses (its CSRF check failed) as if it had worked, and the browser would otherwise be told it
 * is signed out, end up on the sign-in page, and be let back into the dashboard by the session still in its cookie.
 */
export function SignOutButton() {
  const [busy, setBusy] = useState(false);
  const [failed, setFailed] = useState(false);
  const onClick = async () => {
    setBusy(true);
    setFailed(false);
    try {
      // Not recorded (Redis refused the write or did not answer): next-auth would clear this browser's cookie and say
      // it worked while every copy of the cookie stayed a valid session. The person is told and can try again.
      const destination = await endSession();
      await signOut({ redirect: false });
      if ((await getSession()) !== null) throw new Error('the portal session is still there');
      window.location.assign(destination);
    } catch {
      setFailed(true);
      setBusy(false);
    }
  };
  return (
    <>
      <button type="button" className="sign-out-button" disabled={busy} onClick={() => void onClick()}>
        Sign out
      </button>
      {failed ? <span role="alert">Sign-out did not complete. Try again.</span> : null}
    </>
  );
}
