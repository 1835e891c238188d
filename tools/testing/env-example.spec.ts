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
import { gatewayConfigSchema } from '../../apps/gateway/src/config';

const example = parseEnv(readFileSync(path.resolve(__dirname, '../../.env.example'), 'utf8')) as Record<string, string>;

function problems(schema: Parameters<typeof parseConfig>[0]): string[] {
  try {
    parseConfig(schema, example);
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
});
