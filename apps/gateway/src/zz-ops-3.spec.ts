/**
 * ops review: GATEWAY_SECRETS_KEYRING is only checked against a regular expression. A key that is not 32 bytes, or a
 * key id given twice, passes the config and then stops the gateway later in boot (parseKeyring in startDataPlane):
 * exit 1 instead of 78, a fatal log line with a stack trace, and the message does not name the variable. The control
 * plane's CONTROL_PLANE_SECRETS_KEYRING (the same keyring) is validated with parseKeyring and named.
 */
import { randomBytes } from 'node:crypto';
import { ConfigError, parseConfig } from '@portcullis/shared/util-config';
import { describe, expect, it } from 'vitest';
import { gatewayConfigSchema } from './config';

const REQUIRED = { DATABASE_URL: 'postgresql://gateway@127.0.0.1:5432/portcullis', REDIS_URL: 'redis://127.0.0.1:6379' };

function problemsOf(env: Record<string, string>): string[] {
  try {
    parseConfig(gatewayConfigSchema, { ...REQUIRED, ...env });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).problems];
  }
  throw new Error('the configuration was accepted');
}

describe('gateway config: GATEWAY_SECRETS_KEYRING', () => {
  const key = randomBytes(32).toString('base64');
  const shortKey = randomBytes(12).toString('base64');

  it('refuses a key that is not 32 bytes, naming the variable and not the key', () => {
    const problems = problemsOf({ GATEWAY_SECRETS_KEYRING: `k1:${shortKey}` });
    expect(problems.map((p) => p.split(':')[0])).toEqual(['GATEWAY_SECRETS_KEYRING']);
    expect(problems.join('\n')).not.toContain(shortKey);
  });

  it('refuses a key id given twice', () => {
    expect(problemsOf({ GATEWAY_SECRETS_KEYRING: `k1:${key},k1:${key}` }).map((p) => p.split(':')[0])).toEqual(['GATEWAY_SECRETS_KEYRING']);
  });
});
