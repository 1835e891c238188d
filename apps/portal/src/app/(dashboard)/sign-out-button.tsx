'use client';

import { signOut } from 'next-auth/react';
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
 * page sends the browser back to the sign-in page: the next "Sign in with SSO" asks for the password again.
 */
export function SignOutButton() {
  const [busy, setBusy] = useState(false);
  const onClick = async () => {
    setBusy(true);
    const destination = await nextStop();
    await signOut({ redirect: false });
    window.location.assign(destination);
  };
  return (
    <button type="button" className="sign-out-button" disabled={busy} onClick={() => void onClick()}>
      Sign out
    </button>
  );
}
