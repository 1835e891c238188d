import { randomBytes, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';
import Provider, { type Configuration, type JWK } from 'oidc-provider';
import type { DevIdpClient } from './clients';
import type { UserDirectory } from './identities';

export const INTERACTION_PATH = '/interaction';

export interface CreateProviderOptions {
  readonly issuer: string;
  readonly clients: readonly DevIdpClient[];
  readonly directory: UserDirectory;
  /** Keys that sign the IdP's cookies; random per boot when empty (sessions then end on restart). */
  readonly cookieKeys: readonly string[];
}

async function signingKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: randomUUID(), alg: 'RS256', use: 'sig' } as JWK;
}

/**
 * Builds the oidc-provider instance. Signing keys are generated per boot: relying parties only verify
 * ID tokens during sign-in, so a restart costs nothing but in-flight logins.
 */
export async function createProvider(options: CreateProviderOptions): Promise<Provider> {
  const { directory } = options;
  const cookieKeys =
    options.cookieKeys.length > 0 ? [...options.cookieKeys] : [randomBytes(32).toString('base64url')];

  const configuration: Configuration = {
    clients: options.clients.map((client) => ({
      client_id: client.clientId,
      client_secret: client.clientSecret,
      redirect_uris: [...client.redirectUris],
      post_logout_redirect_uris: [...client.postLogoutRedirectUris],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    // Put the requested claims in the ID token too, so relying parties need not call userinfo.
    conformIdTokenClaims: false,
    cookies: { keys: cookieKeys },
    // Explicit lifetimes in seconds (the defaults print notices on stdout, which must stay JSON).
    ttl: {
      AccessToken: 60 * 60,
      AuthorizationCode: 60,
      IdToken: 60 * 60,
      Interaction: 60 * 60,
      Grant: 14 * 24 * 60 * 60,
      Session: 14 * 24 * 60 * 60,
      RefreshToken: 14 * 24 * 60 * 60,
    },
    jwks: { keys: [await signingKey()] },
    // PKCE for every client, confidential ones too (oidc-provider requires it only of public clients by default): a
    // code is bound to the browser that asked for it, whatever client a developer registers (ADR 0004).
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true },
      revocation: { enabled: true },
    },
    interactions: {
      url: (_ctx, interaction) => `${INTERACTION_PATH}/${interaction.uid}`,
    },
    findAccount: (_ctx, sub) => {
      const user = directory.findBySub(sub);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        claims: () => ({
          sub: user.sub,
          email: user.email,
          email_verified: true,
          name: user.name,
          groups: [...user.groups],
        }),
      };
    },
    renderError: (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!doctype html><meta charset="utf-8"><title>Sign-in error</title><h1>Sign-in error</h1><pre>${escapeHtml(
        JSON.stringify(out, null, 2),
      )}</pre>`;
    },
  };

  return new Provider(options.issuer, configuration);
}

export function escapeHtml(value: string): string {
  return value
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}
