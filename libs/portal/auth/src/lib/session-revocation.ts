import type { Redis } from '@portcullis/data/redis';
import type { PortalToken } from './session';

/**
 * Sessions ended by signing out. The session itself is a stateless encrypted cookie: clearing it in the browser leaves
 * any copy of it (a shared computer, a proxy's log, an extension) a valid session for the rest of its lifetime. So
 * signing out records the session's id here, for that lifetime, and every check of a session looks here.
 */
export interface SessionRevocations {
  /** Records that the session `sessionId` has ended; forgotten after `ttlSeconds` (the session lifetime). */
  revoke(sessionId: string, ttlSeconds: number): Promise<void>;
  /** Whether the session `sessionId` has ended. Rejects when that cannot be known (the store is unreachable). */
  isRevoked(sessionId: string): Promise<boolean>;
}

/** Thrown when a session cannot be checked (the revocation store is unreachable): the session is not trusted. */
export class SessionCheckUnavailableError extends Error {
  constructor(cause: unknown) {
    super('the portal cannot check sessions right now (its revocation store is unreachable)', { cause });
    this.name = 'SessionCheckUnavailableError';
  }
}

export const SESSION_REVOCATION_KEY_PREFIX = 'portal:session:revoked:';

/** Revocations in Redis: one key per ended session, `<prefix><session id>`, expiring with the session. */
export function redisSessionRevocations(client: Pick<Redis, 'set' | 'exists'>, prefix = SESSION_REVOCATION_KEY_PREFIX): SessionRevocations {
  return {
    revoke: async (sessionId, ttlSeconds) => {
      await client.set(`${prefix}${sessionId}`, '1', 'EX', Math.max(1, Math.ceil(ttlSeconds)));
    },
    isRevoked: async (sessionId) => (await client.exists(`${prefix}${sessionId}`)) > 0,
  };
}

/**
 * Whether a decoded session token may still be used: `ended` when it has no session id (it predates revocation, and
 * could not be revoked), was signed in longer ago than the session lifetime, or its id was revoked. Throws
 * {@link SessionCheckUnavailableError} when the store cannot answer: the caller refuses the session (fail closed)
 * without treating it as ended.
 */
export async function sessionState(token: PortalToken, revocations: SessionRevocations, lifetimeSeconds: number): Promise<'active' | 'ended'> {
  if (typeof token.sid !== 'string' || token.sid === '') return 'ended';
  // Counted from sign-in: next-auth renews the cookie's expiry on every use, so a copy renewed just before the end would
  // otherwise open pages for up to one more lifetime (the proxy, which lets pages through, did not count it).
  if (typeof token.authTime !== 'number' || Math.floor(Date.now() / 1000) - token.authTime > lifetimeSeconds) return 'ended';
  let revoked: boolean;
  try {
    revoked = await revocations.isRevoked(token.sid);
  } catch (error) {
    throw new SessionCheckUnavailableError(error);
  }
  return revoked ? 'ended' : 'active';
}
