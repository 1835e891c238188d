import { z } from 'zod';
import { configFields, type DeepReadonly, withoutTrailingSlashes } from '@portcullis/shared/util-config';
import { devIdpClientListSchema } from '@portcullis/dev-idp/provider';

/** A comma-separated list of absolute http(s) URLs. */
const urlList = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value) =>
      value
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item.length > 0),
    )
    .pipe(z.array(z.url({ protocol: /^https?$/, error: 'must list absolute http(s) URLs' })).min(1));

/** Every variable the dev IdP reads, validated once at boot. */
export const devIdpEnvSchema = z
  .object({
    NODE_ENV: configFields.nodeEnv,
    LOG_LEVEL: configFields.logLevel,
    // Loopback unless told otherwise: its demo identities' password is in the repository, so anyone who could reach it
    // could sign in as any of them.
    DEV_IDP_HOST: configFields.listenHost('127.0.0.1'),
    DEV_IDP_PORT: configFields.port(3400),
    // An OpenID issuer identifier has no query or fragment (oidc-provider asserts it at start, naming nothing).
    DEV_IDP_ISSUER: configFields.httpUrl
      .refine((value) => !URL.canParse(value) || (new URL(value).search === '' && new URL(value).hash === '' && !/[?#]/.test(value)), 'must have no query string or fragment (an OpenID issuer identifier)')
      .optional(),
    DEV_IDP_PORTAL_CLIENT_ID: z.string().min(1).default('portcullis-portal'),
    DEV_IDP_PORTAL_CLIENT_SECRET: configFields.secret(16),
    DEV_IDP_PORTAL_REDIRECT_URIS: urlList('http://localhost:3000/api/auth/callback/oidc'),
    DEV_IDP_PORTAL_POST_LOGOUT_REDIRECT_URIS: urlList('http://localhost:3000/sign-in'),
    DEV_IDP_EXTRA_CLIENTS: devIdpClientListSchema,
    DEV_IDP_IDENTITIES_FILE: z.string().trim().min(1).default('tools/demo/identities.json'),
    DEV_IDP_COOKIE_SECRET: configFields.secret(32).optional(),
  })
  // Client ids are unique (oidc-provider refuses a repeated one at start with a bare InvalidClientMetadata).
  .superRefine((env, context) => {
    const seen = new Set([env.DEV_IDP_PORTAL_CLIENT_ID]);
    env.DEV_IDP_EXTRA_CLIENTS.forEach((client, index) => {
      if (seen.has(client.clientId)) {
        context.addIssue({ code: 'custom', path: ['DEV_IDP_EXTRA_CLIENTS', index, 'clientId'], message: 'repeats a client id (the portal client or an earlier extra client)' });
      }
      seen.add(client.clientId);
    });
  })
  .transform((env) => ({
    nodeEnv: env.NODE_ENV,
    logLevel: env.LOG_LEVEL,
    http: { host: env.DEV_IDP_HOST, port: env.DEV_IDP_PORT },
    issuer: withoutTrailingSlashes(env.DEV_IDP_ISSUER ?? `http://localhost:${env.DEV_IDP_PORT}`),
    clients: [
      {
        clientId: env.DEV_IDP_PORTAL_CLIENT_ID,
        clientSecret: env.DEV_IDP_PORTAL_CLIENT_SECRET,
        redirectUris: env.DEV_IDP_PORTAL_REDIRECT_URIS,
        postLogoutRedirectUris: env.DEV_IDP_PORTAL_POST_LOGOUT_REDIRECT_URIS,
        firstParty: true,
      },
      ...env.DEV_IDP_EXTRA_CLIENTS,
    ],
    identitiesFile: env.DEV_IDP_IDENTITIES_FILE,
    cookieKeys: env.DEV_IDP_COOKIE_SECRET ? [env.DEV_IDP_COOKIE_SECRET] : [],
  }));

export type DevIdpConfig = DeepReadonly<z.output<typeof devIdpEnvSchema>>;
