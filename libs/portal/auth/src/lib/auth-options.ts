import type { NextAuthOptions } from 'next-auth';
import type { OAuthConfig } from 'next-auth/providers/oauth';
import type { Logger } from '@portcullis/shared/util-logger';
import { sameOriginRedirect } from './callback-url';
import { normalizeIssuer } from './issuer';
import { MAX_KEPT_ID_TOKEN, type PortalSession, type PortalToken, sessionGroups } from './session';
import { SessionCheckUnavailableError, type SessionRevocations, sessionState } from './session-revocation';

/** next-auth's provider id; the callback URL is <NEXTAUTH_URL>/api/auth/callback/oidc. */
export const OIDC_PROVIDER_ID = 'oidc';
export const SIGN_IN_PATH = '/sign-in';

export interface PortalAuthSettings {
  /** OpenID issuer; discovery is read from <issuer>/.well-known/openid-configuration. */
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly scopes: readonly string[];
  /** Encrypts the session cookie (next-auth `secret`). */
  readonly sessionSecret: string;
  /**
   * Session lifetime in seconds, counted from sign-in: activity does not extend it (next-auth renews the cookie on
   * use; the `jwt` callback refuses a token whose sign-in is older), so a copied cookie or a person disabled at the
   * provider is out within this time.
   */
  readonly sessionMaxAgeSeconds: number;
  /** Test seam: seconds since the epoch. */
  readonly nowSeconds?: () => number;
}

/** Claims the portal reads from the ID token. */
interface OidcProfile {
  iss?: string;
  sub: string;
  email?: string;
  email_verified?: unknown;
  name?: string;
  groups?: unknown;
}

/**
 * next-auth options for signing in through one OpenID provider (the dev IdP locally). Sessions are
 * encrypted JWT cookies carrying sub, name, email and groups; the only thing stored server-side is the id of each
 * session that was signed out (`revocations`), until its lifetime is over.
 */
export function createAuthOptions(settings: PortalAuthSettings, logger: Logger, revocations: SessionRevocations): NextAuthOptions {
  const issuer = normalizeIssuer(settings.issuer);
  const nowSeconds = settings.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
  const oidc: OAuthConfig<OidcProfile> = {
    id: OIDC_PROVIDER_ID,
    name: 'SSO',
    type: 'oauth',
    wellKnown: `${issuer}/.well-known/openid-configuration`,
    clientId: settings.clientId,
    clientSecret: settings.clientSecret,
    authorization: { params: { scope: settings.scopes.join(' ') } },
    idToken: true,
    checks: ['pkce', 'state', 'nonce'],
    client: { token_endpoint_auth_method: 'client_secret_basic', id_token_signed_response_alg: 'RS256' },
    profile: (profile) => ({
      id: profile.sub,
      name: profile.name ?? profile.email ?? profile.sub,
      email: profile.email ?? null,
    }),
  };

  return {
    secret: settings.sessionSecret,
    // next-auth's own reports go to the portal's logger, one JSON line each: its default printed them with console.error,
    // a visitor's `?error=` text included as it came, so a newline in it made a log line of the visitor's own (found by
    // review). Only the code and the error are kept; its debug output is off. (Given a logger, next-auth also takes
    // log lines posted to /api/auth/_log: the auth route refuses that path.)
    logger: {
      error: (code, metadata) => {
        const err = metadata instanceof Error ? metadata : metadata.error instanceof Error ? metadata.error : undefined;
        logger.error({ event: 'next-auth.error', code: String(code).slice(0, 100), ...(err === undefined ? {} : { err }) }, 'next-auth reported an error');
      },
      warn: (code) => logger.warn({ event: 'next-auth.warning', code: String(code).slice(0, 100) }, 'next-auth warned'),
      debug: () => undefined,
    },
    providers: [oidc],
    session: { strategy: 'jwt', maxAge: settings.sessionMaxAgeSeconds },
    pages: { signIn: SIGN_IN_PATH, error: SIGN_IN_PATH },
    events: {
      // Every sign-out ends the session for every copy of its cookie. The portal records it before next-auth signs
      // out — the sign-out button's first step (`POST /api/sign-out`), or the auth route itself for a form posted to
      // /api/auth/signout[/...] — and stops with "did not complete" when it cannot. This idempotent write is a backstop
      // should the two ever disagree on whether a sign-out goes ahead: next-auth clears the browser's cookie and
      // answers "done" whatever happens here, so a write that fails here can only be logged.
      signOut: async ({ token }) => {
        const sid = (token as PortalToken | null)?.sid;
        if (typeof sid !== 'string') return;
        try {
          await revocations.revoke(sid, settings.sessionMaxAgeSeconds);
        } catch (error) {
          logger.error({ event: 'sign-out.revocation-failed', error: String(error) }, 'sign-out could not record the ended session: unless the sign-out button\'s step did, copies of its cookie stay valid (refused only while Redis does not answer reads)');
        }
      },
    },
    callbacks: {
      // An email the provider says it has not verified is anyone's to claim: refused (absent, the provider vouches
      // for its emails as many do).
      // The ID token must come from the configured issuer itself: discovery documents of multi-tenant providers name
      // a template issuer and their clients accept tokens of any of the provider's tenants.
      // A refusal is logged with its reason: the person only sees "Access was denied.", and a misconfigured issuer
      // refuses everyone. No claims of the person are logged; issuers name providers, not people.
      signIn: ({ profile }) => {
        const claims = profile as OidcProfile | undefined;
        const tokenIssuer = typeof claims?.iss === 'string' ? normalizeIssuer(claims.iss) : undefined;
        if (tokenIssuer !== issuer) {
          logger.warn(
            { event: 'sign-in.refused', reason: 'issuer_mismatch', configuredIssuer: issuer, tokenIssuer: tokenIssuer ?? null },
            'sign-in refused: the ID token comes from another issuer than PORTAL_OIDC_ISSUER (compare it with the issuer of the provider\'s discovery document)',
          );
          return false;
        }
        if (typeof claims?.email !== 'string' || claims.email_verified === false || claims.email_verified === 'false') {
          logger.warn({ event: 'sign-in.refused', reason: 'no_verified_email', configuredIssuer: issuer }, 'sign-in refused: the ID token has no email the provider vouches for');
          return false;
        }
        // Both go into the session cookie whole and name the person everywhere: no address is longer than SMTP allows,
        // and OIDC bounds `sub` (a provider sending more made a cookie past Node's 16 KiB of headers: every request 431).
        if (claims.email.length > MAX_EMAIL || typeof claims.sub !== 'string' || claims.sub.length === 0 || claims.sub.length > MAX_SUBJECT) {
          logger.warn({ event: 'sign-in.refused', reason: 'malformed_identity', configuredIssuer: issuer }, 'sign-in refused: the ID token\'s sub or email is missing or longer than OIDC and SMTP allow');
          return false;
        }
        return true;
      },
      redirect: ({ url, baseUrl }) => sameOriginRedirect(url, baseUrl),
      jwt: async ({ token, profile, account }) => {
        const next = token as PortalToken;
        if (profile) {
          const claims = profile as OidcProfile;
          next.sid = crypto.randomUUID();
          next.sub = claims.sub;
          next.email = claims.email ?? null;
          next.name = displayName(claims.name) ?? claims.email ?? null;
          next.groups = sessionGroups(claims.groups);
          next.authTime = nowSeconds();
          // Kept (in the encrypted cookie) for signing out at the provider too, if small; never shown to pages.
          if (typeof account?.id_token === 'string' && account.id_token.length <= MAX_KEPT_ID_TOKEN) next.idToken = account.id_token;
          return next;
        }
        // next-auth renews the cookie's expiry on every use; the sign-in time does not move. Thrown, next-auth
        // clears the cookie and the session is gone (a token without a sign-in time predates this rule).
        if (typeof next.authTime !== 'number' || nowSeconds() - next.authTime > settings.sessionMaxAgeSeconds) {
          throw new Error('session ended: signed in longer ago than the session lifetime; sign in again');
        }
        // Signed out (a copy of the cookie), or from before sessions had ids: ended. Unknown, because the revocation
        // store does not answer: refused all the same (fail closed), and next-auth drops the cookie.
        let state: 'active' | 'ended';
        try {
          state = await sessionState(next, revocations, settings.sessionMaxAgeSeconds);
        } catch (error) {
          if (!(error instanceof SessionCheckUnavailableError)) throw error;
          logger.error({ event: 'session.check-unavailable', error: String(error.cause) }, 'session refused: the session revocation store (Redis) does not answer');
          throw error;
        }
        if (state === 'ended') throw new Error('session ended: signed out, or from before sign-out could end copies of it; sign in again');
        return next;
      },
      session: ({ session, token }) => {
        const claims = token as PortalToken;
        const portalSession: PortalSession = {
          expires: session.expires,
          user: {
            id: claims.sub ?? '',
            name: claims.name ?? claims.email ?? '',
            email: claims.email ?? '',
            groups: claims.groups ?? [],
          },
        };
        return portalSession;
      },
    },
  };
}

/** RFC 5321's longest address (a path of 256 octets less its angle brackets), and OpenID Connect's longest `sub`. */
const MAX_EMAIL = 254;
const MAX_SUBJECT = 255;
/** A display name is only shown: a longer one is cut short rather than refused. */
const MAX_DISPLAY_NAME = 200;

/** The `name` claim as shown: a non-blank string, cut to MAX_DISPLAY_NAME; undefined otherwise. */
function displayName(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  return value.length > MAX_DISPLAY_NAME ? `${value.slice(0, MAX_DISPLAY_NAME - 1)}…` : value;
}
