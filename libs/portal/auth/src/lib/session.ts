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
  /** When the person signed in at the provider (seconds since the epoch); the session ends a lifetime after it. */
  authTime?: number;
  /** The provider's ID token from sign-in: the hint its end-session endpoint takes when the person signs out. */
  idToken?: string;
}

/** Keeps only the string items of a claim that should be a list of strings. */
export function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

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
