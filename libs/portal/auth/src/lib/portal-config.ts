import { z } from 'zod';
import { configFields, type DeepReadonly, withoutTrailingSlashes } from '@portcullis/shared/util-config';

/** The development identity provider (`apps/dev-idp`), the issuer when none is configured outside production. */
const DEV_ISSUER = 'http://localhost:3400';

/**
 * Every variable the portal reads. NEXTAUTH_URL is also read by next-auth itself; it is validated here
 * so a missing or malformed value stops the server at boot.
 */
export const portalEnvSchema = z
  .object({
    NODE_ENV: configFields.nodeEnv,
    NEXTAUTH_URL: configFields.httpUrl,
    NEXTAUTH_SECRET: configFields.secret(32),
    // At most 30 days: a session of an admin portal, and next-auth's expiry dates break past a Date's range (found by
    // review: 9e12 made every session route throw, so nobody stayed signed in).
    PORTAL_SESSION_MAX_AGE_SECONDS: z.coerce
      .number()
      .int()
      .positive()
      .max(30 * 24 * 60 * 60, 'must be at most 2592000 (30 days)')
      .default(8 * 60 * 60),
    /** Unset: the development identity provider (refused in production). */
    PORTAL_OIDC_ISSUER: configFields.httpUrl.optional(),
    PORTAL_OIDC_CLIENT_ID: z.string().min(1).default('portcullis-portal'),
    PORTAL_OIDC_CLIENT_SECRET: configFields.secret(16),
    PORTAL_OIDC_SCOPES: z
      .string()
      .default('openid email profile groups')
      .transform((value) => value.split(/\s+/).filter(Boolean))
      .refine((scopes) => scopes.includes('openid'), 'must include openid'),
    PORTAL_READINESS_TIMEOUT_MS: configFields.durationMs(2_000),
    /** Where signed-out sessions are recorded (`SessionRevocations`); the dashboard refuses sessions while it is down. */
    REDIS_URL: configFields.redisUrl,
    /** Bound on one look at Redis: a session check that takes longer is refused (fail closed). */
    PORTAL_REDIS_TIMEOUT_MS: configFields.durationMs(1_000),
    LOG_LEVEL: configFields.logLevel,
  })
  .superRefine((env, ctx) => {
    if (env.NODE_ENV !== 'production') return;
    // In production the provider is named, never the development default, and both URLs are https unless they name
    // this machine: over plain http anyone on the path could serve the provider's signing keys (and sign anyone in),
    // and next-auth drops the Secure flag from its cookies when the portal's own URL is http.
    if (env.PORTAL_OIDC_ISSUER === undefined) {
      ctx.addIssue({ code: 'custom', path: ['PORTAL_OIDC_ISSUER'], message: 'must be set in production (the default is the development identity provider)' });
    }
    for (const key of ['NEXTAUTH_URL', 'PORTAL_OIDC_ISSUER'] as const) {
      const value = env[key];
      if (value === undefined) continue;
      const url = new URL(value);
      if (url.protocol !== 'https:' && !configFields.isLoopbackHost(url.hostname)) {
        ctx.addIssue({ code: 'custom', path: [key], message: 'must be an https URL in production (http only for a loopback host)' });
      }
    }
  })
  .transform((env) => ({
    nodeEnv: env.NODE_ENV,
    publicUrl: withoutTrailingSlashes(env.NEXTAUTH_URL),
    auth: {
      issuer: withoutTrailingSlashes(env.PORTAL_OIDC_ISSUER ?? DEV_ISSUER),
      clientId: env.PORTAL_OIDC_CLIENT_ID,
      clientSecret: env.PORTAL_OIDC_CLIENT_SECRET,
      scopes: env.PORTAL_OIDC_SCOPES,
      sessionSecret: env.NEXTAUTH_SECRET,
      sessionMaxAgeSeconds: env.PORTAL_SESSION_MAX_AGE_SECONDS,
    },
    readinessTimeoutMs: env.PORTAL_READINESS_TIMEOUT_MS,
    redis: { url: env.REDIS_URL, commandTimeoutMs: env.PORTAL_REDIS_TIMEOUT_MS },
    logLevel: env.LOG_LEVEL,
  }));

export type PortalConfig = DeepReadonly<z.output<typeof portalEnvSchema>>;
