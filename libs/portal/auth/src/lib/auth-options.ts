import type { NextAuthOptions } from 'next-auth';
import type { OAuthConfig } from 'next-auth/providers/oauth';
import { type PortalSession, type PortalToken, stringList } from './session';

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
  /** Session lifetime in seconds. */
  readonly sessionMaxAgeSeconds: number;
}

/** Claims the portal reads from the ID token. */
interface OidcProfile {
  sub: string;
  email?: string;
  email_verified?: unknown;
  name?: string;
  groups?: unknown;
}

/**
 * next-auth options for signing in through one OpenID provider (the dev IdP locally). Sessions are
 * encrypted JWT cookies carrying sub, name, email and groups; nothing is stored server-side.
 */
export function createAuthOptions(settings: PortalAuthSettings): NextAuthOptions {
  const oidc: OAuthConfig<OidcProfile> = {
    id: OIDC_PROVIDER_ID,
    name: 'SSO',
    type: 'oauth',
    wellKnown: `${settings.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`,
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
    providers: [oidc],
    session: { strategy: 'jwt', maxAge: settings.sessionMaxAgeSeconds },
    pages: { signIn: SIGN_IN_PATH, error: SIGN_IN_PATH },
    callbacks: {
      // An email the provider says it has not verified is anyone's to claim: refused (absent, the provider vouches
      // for its emails as many do).
      signIn: ({ profile }) => {
        const claims = profile as OidcProfile | undefined;
        return typeof claims?.email === 'string' && claims.email_verified !== false && claims.email_verified !== 'false';
      },
      jwt: ({ token, profile }) => {
        const next = token as PortalToken;
        if (profile) {
          const claims = profile as OidcProfile;
          next.sub = claims.sub;
          next.email = claims.email ?? null;
          next.name = claims.name ?? claims.email ?? null;
          next.groups = stringList(claims.groups);
        }
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
