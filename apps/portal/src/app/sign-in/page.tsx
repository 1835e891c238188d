import type { Metadata } from 'next';
import { redirect } from 'next/navigation';
import { OIDC_PROVIDER_ID, safeCallbackPath } from '@portcullis/portal/auth';
import { currentUser } from '../../auth';
import { SignInButton } from './sign-in-button';
import './sign-in.css';

export const metadata: Metadata = { title: 'Sign in' };

// A Map, not an object: the code comes from the URL, and on an object `constructor`, `toString` or `__proto__` would
// look up Object.prototype's members (a function React cannot render: the page answered 500).
const ERRORS = new Map<string, string>([
  ['AccessDenied', 'Access was denied.'],
  ['OAuthCallback', 'The identity provider answered with an error. Try again.'],
  ['OAuthSignin', 'Could not reach the identity provider. Try again.'],
  ['SessionRequired', 'Please sign in to continue.'],
]);

export default async function SignInPage({
  searchParams,
}: {
  readonly searchParams: Promise<Record<string, string | string[] | undefined>>;
}) {
  const params = await searchParams;
  // Only the portal's own paths; anything else falls back to the dashboard.
  const callbackUrl = safeCallbackPath(params['callbackUrl']);
  if (await currentUser()) redirect(callbackUrl);
  const errorCode = typeof params['error'] === 'string' ? params['error'] : undefined;
  const error = errorCode ? (ERRORS.get(errorCode) ?? 'Sign-in failed. Try again.') : undefined;

  return (
    <main className="sign-in">
      <h1>Portcullis</h1>
      <p>Sign in with your organisation&apos;s single sign-on.</p>
      {error ? (
        <p className="sign-in-error" role="alert">
          {error}
        </p>
      ) : null}
      <SignInButton providerId={OIDC_PROVIDER_ID} callbackUrl={callbackUrl} />
    </main>
  );
}
