import { isUuid, userId as toUserId, type UserId } from '@portcullis/shared/util-ids';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { randomUUID } from 'node:crypto';

/** The longest lifetime a control-plane access token may have; longer-lived tokens are refused even if signed. */
export const MAX_ACCESS_TOKEN_TTL_SECONDS = 15 * 60;
const ALGORITHM = 'HS256';
/** RFC 9068 access-token type, so an ID token or another JWT signed with the same key is not accepted. */
const TOKEN_TYPE = 'at+jwt';

export interface AccessTokenSettings {
  /** HMAC key shared with whoever mints tokens (the portal after SSO, the bootstrap command). ≥ 32 bytes. */
  readonly secret: string;
  readonly issuer: string;
  readonly audience: string;
  /** Lifetime of the tokens this process issues; ≤ MAX_ACCESS_TOKEN_TTL_SECONDS. */
  readonly ttlSeconds: number;
  /** Accepted clock difference between minting and verifying hosts. */
  readonly clockToleranceSeconds: number;
}

export interface VerifiedAccessToken {
  readonly userId: UserId;
  readonly tokenId: string;
  readonly expiresAt: Date;
}

export class AccessTokenError extends Error {
  constructor(
    readonly reason: 'expired' | 'invalid',
    message: string,
  ) {
    super(message);
    this.name = 'AccessTokenError';
  }
}

const keyOf = (settings: AccessTokenSettings) => new TextEncoder().encode(settings.secret);

export async function issueAccessToken(
  settings: AccessTokenSettings,
  subject: { userId: string },
  now: Date = new Date(),
): Promise<{ token: string; expiresAt: Date }> {
  if (!isUuid(subject.userId)) throw new TypeError('userId must be a UUID');
  const ttl = Math.min(settings.ttlSeconds, MAX_ACCESS_TOKEN_TTL_SECONDS);
  const issuedAt = Math.floor(now.getTime() / 1000);
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: ALGORITHM, typ: TOKEN_TYPE })
    .setSubject(subject.userId)
    .setIssuer(settings.issuer)
    .setAudience(settings.audience)
    .setIssuedAt(issuedAt)
    .setExpirationTime(issuedAt + ttl)
    .setJti(randomUUID())
    .sign(keyOf(settings));
  return { token, expiresAt: new Date((issuedAt + ttl) * 1000) };
}

/**
 * Verifies signature (HS256 only), type, issuer, audience, expiry and issue time (with the configured tolerance),
 * and refuses tokens whose lifetime exceeds MAX_ACCESS_TOKEN_TTL_SECONDS. The caller learns only "expired" or
 * "invalid": the reason for an invalid token is for logs, not for the client.
 */
export async function verifyAccessToken(settings: AccessTokenSettings, token: string): Promise<VerifiedAccessToken> {
  try {
    const { payload } = await jwtVerify(token, keyOf(settings), {
      algorithms: [ALGORITHM],
      typ: TOKEN_TYPE,
      issuer: settings.issuer,
      audience: settings.audience,
      clockTolerance: settings.clockToleranceSeconds,
      maxTokenAge: MAX_ACCESS_TOKEN_TTL_SECONDS + settings.clockToleranceSeconds,
      requiredClaims: ['sub', 'exp', 'iat', 'jti'],
    });
    const { sub, exp, iat, jti } = payload;
    if (typeof exp !== 'number' || typeof iat !== 'number' || exp - iat > MAX_ACCESS_TOKEN_TTL_SECONDS) {
      throw new AccessTokenError('invalid', 'token lifetime exceeds the maximum');
    }
    if (!isUuid(sub)) throw new AccessTokenError('invalid', 'subject is not a user id');
    return { userId: toUserId(sub), tokenId: String(jti), expiresAt: new Date(exp * 1000) };
  } catch (error) {
    if (error instanceof AccessTokenError) throw error;
    if (error instanceof joseErrors.JWTExpired) throw new AccessTokenError('expired', 'token expired');
    const detail = error instanceof Error ? error.message : 'unknown';
    throw new AccessTokenError('invalid', detail);
  }
}
