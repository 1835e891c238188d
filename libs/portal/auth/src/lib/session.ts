import type { Session } from 'next-auth';
import type { JWT } from 'next-auth/jwt';

/** The signed-in person as the portal sees them; `id` is the IdP subject. */
export interface PortalUser {
  readonly id: string;
  readonly name: string;
  readonly email: string;
  readonly groups: readonly string[];
}

/** The session next-auth hands to pages (JSON-serialisable; also what /api/auth/session returns). */
export interface PortalSession extends Session {
  readonly user: PortalUser;
}

/** Fields the portal keeps in the encrypted session cookie (next-auth's JWT). */
export interface PortalToken extends JWT {
  sub?: string;
  name?: string | null;
  email?: string | null;
  groups?: string[];
  /** This session's id, drawn at sign-in: what signing out revokes (`SessionRevocations`). */
  sid?: string;
  /** When the person signed in at the provider (seconds since the epoch); the session ends a lifetime after it. */
  authTime?: number;
  /** The provider's ID token from sign-in: the hint its end-session endpoint takes when the person signs out. */
  idToken?: string;
}

/** Keeps only the string items of a claim that should be a list of strings. */
export function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

/**
 * Group names kept in the session cookie, at most, and their length: they are shown, never used to authorise, and a
 * person in hundreds of groups (providers send up to 200) would otherwise make a cookie larger than the 16 KiB of
 * headers Node accepts — every request of theirs, signing out included, would be refused (431).
 */
export const MAX_SESSION_GROUPS = 50;
const MAX_GROUP_NAME = 80;

/** `stringList` of a groups claim, bounded for the session cookie (MAX_SESSION_GROUPS names, each cut short). */
export function sessionGroups(value: unknown): string[] {
  return stringList(value)
    .slice(0, MAX_SESSION_GROUPS)
    .map((name) => (name.length > MAX_GROUP_NAME ? `${name.slice(0, MAX_GROUP_NAME - 1)}…` : name));
}

/**
 * The longest ID token kept for the provider's sign-out. A token carrying a large groups claim would take the cookie
 * past Node's header limit and the end-session URL past the 8 KB request lines proxies accept (414): such a token is
 * not kept, and sign-out names the client instead (the provider may then ask the person to confirm; some, Okta among
 * them, want the token). 4 KB keeps ordinary tokens, a few dozen groups included: with 50 group names of at most 80
 * characters the cookie stays near 12 KB encrypted, and the URL near 4.5 KB.
 */
export const MAX_KEPT_ID_TOKEN = 4_096;

/** Narrows whatever getServerSession returned to a PortalUser, or undefined when anonymous or malformed. */
export function toPortalUser(session: Session | null | undefined): PortalUser | undefined {
  const user = session?.user as Partial<Record<keyof PortalUser, unknown>> | undefined;
  if (!user || typeof user.id !== 'string' || typeof user.email !== 'string') return undefined;
  return {
    id: user.id,
    email: user.email,
    name: typeof user.name === 'string' && user.name.length > 0 ? user.name : user.email,
    groups: stringList(user.groups),
  };
}
