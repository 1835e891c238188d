'use client';

import { signIn } from 'next-auth/react';
import { useState } from 'react';

export function SignInButton({
  providerId,
  callbackUrl,
}: {
  readonly providerId: string;
  readonly callbackUrl: string;
}) {
  const [pending, setPending] = useState(false);
  return (
    <button
      type="button"
      className="sign-in-button"
      disabled={pending}
      onClick={() => {
        setPending(true);
        void signIn(providerId, { callbackUrl });
      }}
    >
      {pending ? 'Redirecting…' : 'Sign in with SSO'}
    </button>
  );
}
