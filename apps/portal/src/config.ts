import 'server-only';
import { z } from 'zod';
import { configFields, type DeepReadonly, loadConfigOrExit } from '@portcullis/shared/util-config';

/**
 * Every variable the portal reads. NEXTAUTH_URL is also read by next-auth itself; it is validated here
 * so a missing or malformed value stops the server at boot.
 */
export const portalEnvSchema = z
  .object({
    NODE_ENV: configFields.nodeEnv,
    NEXTAUTH_URL: configFields.httpUrl,
    NEXTAUTH_SECRET: configFields.secret(32),
    PORTAL_SESSION_MAX_AGE_SECONDS: z.coerce
      .number()
      .int()
      .positive()
      .default(8 * 60 * 60),
    PORTAL_OIDC_ISSUER: configFields.httpUrl.default('http://localhost:3400'),
    PORTAL_OIDC_CLIENT_ID: z.string().min(1).default('portcullis-portal'),
    PORTAL_OIDC_CLIENT_SECRET: configFields.secret(16),
    PORTAL_OIDC_SCOPES: z
      .string()
      .default('openid email profile groups')
      .transform((value) => value.split(/\s+/).filter(Boolean))
      .refine((scopes) => scopes.includes('openid'), 'must include openid'),
    PORTAL_READINESS_TIMEOUT_MS: configFields.durationMs(2_000),
  })
  .transform((env) => ({
    nodeEnv: env.NODE_ENV,
    publicUrl: env.NEXTAUTH_URL.replace(/\/+$/, ''),
    auth: {
      issuer: env.PORTAL_OIDC_ISSUER.replace(/\/+$/, ''),
      clientId: env.PORTAL_OIDC_CLIENT_ID,
      clientSecret: env.PORTAL_OIDC_CLIENT_SECRET,
      scopes: env.PORTAL_OIDC_SCOPES,
      sessionSecret: env.NEXTAUTH_SECRET,
      sessionMaxAgeSeconds: env.PORTAL_SESSION_MAX_AGE_SECONDS,
    },
    readinessTimeoutMs: env.PORTAL_READINESS_TIMEOUT_MS,
  }));

export type PortalConfig = DeepReadonly<z.output<typeof portalEnvSchema>>;

let config: PortalConfig | undefined;

/**
 * The validated config. instrumentation.ts calls this when the server boots, so a bad environment
 * stops `next start` before it serves anything; `next build` never calls it.
 */
export function portalConfig(): PortalConfig {
  config ??= loadConfigOrExit('portal', portalEnvSchema);
  return config;
}
