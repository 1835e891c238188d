'use client';

import { getSession, signOut } from 'next-auth/react';
import { useState } from 'react';

/** Where to go after the portal's session is cleared: the provider's sign-out, or the sign-in page. */
async function nextStop(): Promise<string> {
  try {
    const response = await fetch('/api/sign-out', { method: 'POST', cache: 'no-store' });
    const body = (await response.json()) as { url?: unknown };
    return response.ok && typeof body.url === 'string' ? body.url : '/sign-in';
  } catch {
    return '/sign-in';
  }
}

/**
 * Signs out of the portal (next-auth clears its session cookie) and then of the identity provider, whose sign-out
 * page sends the browser back to the sign-in page: the next "Sign in with SSO" asks for the password again. The
 * provider is visited only once the portal's own session is known to be gone: next-auth answers a sign-out it refuses
 * (its CSRF check failed) as if it had worked, and the browser would otherwise be told it is signed out, end up on the
 * sign-in page, and be let back into the dashboard by the session still in its cookie.
 */
export function SignOutButton() {
  const [busy, setBusy] = useState(false);
  const [failed, setFailed] = useState(false);
  const onClick = async () => {
    setBusy(true);
    setFailed(false);
    try {
      const destination = await nextStop();
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
