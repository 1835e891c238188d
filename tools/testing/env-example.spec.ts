/**
 * `.env.example` says: copy it to `.env` to pin values, and an empty `NAME=` means unset. `npm start` loads `.env`
 * with Node's own parser (process.loadEnvFile in tools/scripts/start.mjs) and each app validates what it gets: the
 * file as shipped, its secrets left empty for `npm start` to supply, must be a valid configuration of every app.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { ConfigError, parseConfig } from '@portcullis/shared/util-config';
import { describe, expect, it } from 'vitest';
import { auditWorkerConfigSchema } from '../../apps/audit-worker/src/config';
import { controlPlaneConfigSchema } from '../../apps/control-plane/src/config';
import { devIdpEnvSchema } from '../../apps/dev-idp/src/config';
import { gatewayConfigSchema } from '../../apps/gateway/src/config';
import { portalEnvSchema } from '../../libs/portal/auth/src/lib/portal-config';
import { stackEnv } from '../scripts/lib/stack-env.mjs';

const example = parseEnv(readFileSync(path.resolve(__dirname, '../../.env.example'), 'utf8')) as Record<string, string>;

function problems(schema: Parameters<typeof parseConfig>[0], env: Record<string, string> = example): string[] {
  try {
    parseConfig(schema, env);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
}

describe('.env.example copied to .env', () => {
  it('leaves its secrets empty, as unset', () => {
    expect(example['CONTROL_PLANE_JWT_SECRET']).toBe('');
    expect(example['GATEWAY_SECRETS_KEYRING']).toBe('');
  });

  it.each([
    ['the gateway', gatewayConfigSchema],
    ['the control plane', controlPlaneConfigSchema],
    ['the audit worker', auditWorkerConfigSchema],
  ] as const)('is a valid configuration of %s', (_app, schema) => {
    expect(problems(schema)).toEqual([]);
  });

  it.each([
    ['the gateway', gatewayConfigSchema],
    ['the control plane', controlPlaneConfigSchema],
    ['the audit worker', auditWorkerConfigSchema],
    ['the dev IdP', devIdpEnvSchema],
    ['the portal', portalEnvSchema],
  ] as const)('with the secrets npm start makes, is a valid configuration of %s as npm start runs it', (_app, schema) => {
    // As tools/scripts/start.mjs builds each app's environment from .env (its empty secrets, DEV_IDP_PORTAL_CLIENT_SECRET
    // among them, filled in); NODE_ENV as start.mjs gives the apps.
    const env = stackEnv(example, {
      secrets: {
        NEXTAUTH_SECRET: 'n'.repeat(43),
        PORTAL_OIDC_CLIENT_SECRET: 'p'.repeat(32),
        DEV_IDP_COOKIE_SECRET: 'c'.repeat(43),
        SECRETS_KEYRING: `local:${Buffer.alloc(32, 7).toString('base64')}`,
        CONTROL_PLANE_JWT_SECRET: 'j'.repeat(43),
      },
      auditSigningKeyFile: 'tmp/audit-signing.key',
      auditVerifyKeysFile: 'tmp/audit-signing.pub',
    });
    expect(env['DEV_IDP_PORTAL_CLIENT_SECRET']).toBe(env['PORTAL_OIDC_CLIENT_SECRET']);
    expect(problems(schema, { NODE_ENV: 'development', ...env })).toEqual([]);
  });
});
