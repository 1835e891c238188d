/**
 * `.env.example` says: copy it to `.env` to pin values, and an empty `NAME=` means unset. `npm start` loads `.env`
 * with Node's own parser (process.loadEnvFile in tools/scripts/start.mjs) and each app validates what it gets: the
 * file as shipped, its secrets left empty for `npm start` to supply, must be a valid configuration of every app.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual, parseEnv } from 'node:util';
import { ConfigError, parseConfig } from '@portcullis/shared/util-config';
import { describe, expect, it } from 'vitest';
import { auditWorkerConfigSchema } from '../../apps/audit-worker/src/config';
import { bootstrapConfigSchema, controlPlaneConfigSchema } from '../../apps/control-plane/src/config';
import { demoUpstreamsConfigSchema } from '../../apps/demo-upstreams/src/config';
import { devIdpEnvSchema } from '../../apps/dev-idp/src/config';
import { gatewayConfigSchema } from '../../apps/gateway/src/config';
import { portalEnvSchema } from '../../libs/portal/auth/src/lib/portal-config';
import { stackEnv } from '../scripts/lib/stack-env.mjs';

const exampleText = readFileSync(path.resolve(__dirname, '../../.env.example'), 'utf8');
const example = parseEnv(exampleText) as Record<string, string>;
/** Every name the file mentions, set or commented out (`# NAME=value`). */
const exampleNames = new Set([...exampleText.matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm)].map((match) => match[1] as string));

const SECRETS_NPM_START_MAKES = {
  secrets: {
    NEXTAUTH_SECRET: 'n'.repeat(43),
    PORTAL_OIDC_CLIENT_SECRET: 'p'.repeat(32),
    DEV_IDP_COOKIE_SECRET: 'c'.repeat(43),
    SECRETS_KEYRING: `local:${Buffer.alloc(32, 7).toString('base64')}`,
    CONTROL_PLANE_JWT_SECRET: 'j'.repeat(43),
  },
  auditSigningKeyFile: 'tmp/audit-signing.key',
  auditVerifyKeysFile: 'tmp/audit-signing.pub',
};

interface FieldSchema {
  safeParse(value: unknown): { success: boolean; data?: unknown };
}

/** The fields of a config schema: the object inside its refinements and transforms. */
function fieldsOf(schema: unknown): Record<string, FieldSchema> {
  let current = schema as { shape?: Record<string, FieldSchema>; def?: { in?: unknown; innerType?: unknown } } | undefined;
  for (let depth = 0; depth < 10 && current; depth++) {
    if (current.shape) return current.shape;
    current = (current.def?.in ?? current.def?.innerType) as typeof current;
  }
  throw new Error('no object schema inside');
}

/** name -> the apps that read it, with its field there. */
const readers = new Map<string, { app: string; field: FieldSchema }[]>();
for (const [app, schema] of Object.entries({
  gateway: gatewayConfigSchema,
  'control plane': controlPlaneConfigSchema,
  bootstrap: bootstrapConfigSchema,
  'audit worker': auditWorkerConfigSchema,
  'dev IdP': devIdpEnvSchema,
  portal: portalEnvSchema,
  'demo upstreams': demoUpstreamsConfigSchema,
})) {
  for (const [name, field] of Object.entries(fieldsOf(schema))) readers.set(name, [...(readers.get(name) ?? []), { app, field }]);
}
/** Read by other programs: Next.js itself, and the db:* scripts (tools/scripts/db.mjs). */
const READ_ELSEWHERE = new Set(['NEXT_TELEMETRY_DISABLED', 'DATABASE_ADMIN_URL']);

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
    const env = stackEnv(example, SECRETS_NPM_START_MAKES);
    expect(env['DEV_IDP_PORTAL_CLIENT_SECRET']).toBe(env['PORTAL_OIDC_CLIENT_SECRET']);
    expect(problems(schema, { NODE_ENV: 'development', ...env })).toEqual([]);
  });

  // Before, the copy set GATEWAY_/CONTROL_PLANE_UPSTREAM_ALLOW_PRIVATE=false (every seeded upstream refused by the SSRF
  // guard), both metrics ports empty (off) and the audit worker's shutdown grace to the others' 10000.
  it('changes nothing npm start gives the apps', () => {
    const without = stackEnv({}, SECRETS_NPM_START_MAKES);
    const withExample = stackEnv(example, SECRETS_NPM_START_MAKES);
    // What npm start sets itself; the rest the copy sets to the apps' defaults (the next describe).
    const changed = Object.keys(without)
      .filter((name) => without[name] !== withExample[name])
      .map((name) => `${name}: ${JSON.stringify(without[name])} -> ${JSON.stringify(withExample[name])}`);
    expect(changed).toEqual([]);
  });
});

describe('.env.example against the apps\' configuration schemas', () => {
  it('names every variable an app reads, and none that nothing reads', () => {
    expect([...readers.keys()].filter((name) => !exampleNames.has(name))).toEqual([]);
    expect([...exampleNames].filter((name) => !readers.has(name) && !READ_ELSEWHERE.has(name))).toEqual([]);
  });

  it('gives a variable it sets the default of every app that reads it', () => {
    const wrong: string[] = [];
    for (const [name, value] of Object.entries(example)) {
      if (value.trim() === '') continue;
      for (const { app, field } of readers.get(name) ?? []) {
        const unset = field.safeParse(undefined);
        if (!unset.success || unset.data === undefined) continue; // required, or no default
        const given = field.safeParse(value);
        if (!given.success || !isDeepStrictEqual(unset.data, given.data)) wrong.push(`${name} (${app}): ${JSON.stringify(value)}, default ${JSON.stringify(unset.data)}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
