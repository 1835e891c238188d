import 'server-only';
import type { NextAuthOptions } from 'next-auth';
import { getServerSession } from 'next-auth';
import { redirect } from 'next/navigation';
import { connection } from 'next/server';
import { createAuthOptions, type PortalUser, SIGN_IN_PATH, toPortalUser } from '@portcullis/portal/auth';
import { portalConfig } from './config';
import { portalLogger } from './logger';
import { sessionRevocations } from './session-revocations';

let options: NextAuthOptions | undefined;

export function authOptions(): NextAuthOptions {
  options ??= createAuthOptions(portalConfig().auth, portalLogger(), sessionRevocations());
  return options;
}

export async function currentUser(): Promise<PortalUser | undefined> {
  // Per-request: never prerender a page that depends on the session (nor read config at build time).
  await connection();
  return toPortalUser(await getServerSession(authOptions()));
}

/** The signed-in user, or a redirect to the sign-in page that returns to `returnTo` afterwards. */
export async function requireUser(returnTo: string): Promise<PortalUser> {
  const user = await currentUser();
  if (!user) redirect(`${SIGN_IN_PATH}?callbackUrl=${encodeURIComponent(returnTo)}`);
  return user;
}
