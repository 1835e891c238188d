// The environment `npm start` gives every app of the local stack (tools/scripts/start.mjs): local defaults, the
// development secrets made once per checkout, then what the environment (and .env) sets.

/** The variables given secrets made here when the environment leaves them unset or empty. */
export const GENERATED_SECRETS = new Set([
  'NEXTAUTH_SECRET',
  'PORTAL_OIDC_CLIENT_SECRET',
  'DEV_IDP_COOKIE_SECRET',
  'CONTROL_PLANE_JWT_SECRET',
  'CONTROL_PLANE_SECRETS_KEYRING',
  'GATEWAY_SECRETS_KEYRING',
]);

/**
 * @param {Record<string, string | undefined>} environment what the environment sets (process.env after .env is loaded)
 * @param {{ secrets: { NEXTAUTH_SECRET: string, PORTAL_OIDC_CLIENT_SECRET: string, DEV_IDP_COOKIE_SECRET: string,
 *   SECRETS_KEYRING: string, CONTROL_PLANE_JWT_SECRET: string }, auditSigningKeyFile: string, auditVerifyKeysFile: string }} local
 *   the development secrets and the audit key pair's files
 * @returns {Record<string, string>}
 */
export function stackEnv(environment, { secrets, auditSigningKeyFile, auditVerifyKeysFile }) {
  /** @type {Record<string, string>} */
  const env = {
    LOG_LEVEL: 'info',
    DATABASE_ADMIN_URL: 'postgresql://postgres@127.0.0.1:5432/portcullis',
    DATABASE_URL: 'postgresql://portcullis_app@127.0.0.1:5432/portcullis',
    DATABASE_SYSTEM_URL: 'postgresql://portcullis_system@127.0.0.1:5432/portcullis',
    REDIS_URL: 'redis://127.0.0.1:6379',
    NEXTAUTH_URL: 'http://localhost:3000',
    PORTAL_OIDC_ISSUER: 'http://localhost:3400',
    DEV_IDP_HOST: '127.0.0.1',
    DEV_IDP_ISSUER: 'http://localhost:3400',
    // The demo upstreams listen on 127.0.0.1: let the gateway reach private addresses locally.
    GATEWAY_UPSTREAM_ALLOW_PRIVATE: 'true',
    // ... and test connection, which goes through the same SSRF guard.
    CONTROL_PLANE_UPSTREAM_ALLOW_PRIVATE: 'true',
    NEXTAUTH_SECRET: secrets.NEXTAUTH_SECRET,
    PORTAL_OIDC_CLIENT_SECRET: secrets.PORTAL_OIDC_CLIENT_SECRET,
    DEV_IDP_COOKIE_SECRET: secrets.DEV_IDP_COOKIE_SECRET,
    CONTROL_PLANE_JWT_SECRET: secrets.CONTROL_PLANE_JWT_SECRET,
    // The control plane seals upstream secrets with this keyring and the gateway opens them with it.
    CONTROL_PLANE_SECRETS_KEYRING: secrets.SECRETS_KEYRING,
    GATEWAY_SECRETS_KEYRING: secrets.SECRETS_KEYRING,
    // Chain heads signed (audit:verify -- --public-key tmp/audit-signing.pub checks them).
    AUDIT_SIGNING_KEY_FILE: auditSigningKeyFile,
    // ... and the control plane's audit verification checks them with the public half.
    AUDIT_VERIFY_KEYS_FILE: auditVerifyKeysFile,
    GATEWAY_METRICS_PORT: '3201',
    CONTROL_PLANE_METRICS_PORT: '3101',
    // What the environment (and .env) sets wins; an empty secret does not (.env.example leaves them `NAME=`, unset,
    // which would otherwise take the place of the ones made above). Other empty values keep their meaning (an empty
    // GATEWAY_METRICS_PORT turns metrics off).
    ...Object.fromEntries(
      Object.entries(environment).filter(/** @returns {entry is [string, string]} */ (entry) => entry[1] !== undefined && (entry[1] !== '' || !GENERATED_SECRETS.has(entry[0]))),
    ),
  };
  // The dev IdP and the portal must agree on the portal's client secret: unset or empty (as .env.example leaves it),
  // it is the portal's.
  if (!env['DEV_IDP_PORTAL_CLIENT_SECRET']) env['DEV_IDP_PORTAL_CLIENT_SECRET'] = env['PORTAL_OIDC_CLIENT_SECRET'] ?? '';
  return env;
}
