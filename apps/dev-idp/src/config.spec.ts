import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '@portcullis/shared/util-config';
import { devIdpEnvSchema } from './config';

describe('dev IdP config', () => {
  it('applies defaults around the one required secret', () => {
    const config = parseConfig(devIdpEnvSchema, { DEV_IDP_PORTAL_CLIENT_SECRET: 'x'.repeat(16) });
    expect(config.http).toEqual({ host: '127.0.0.1', port: 3400 });
    expect(config.issuer).toBe('http://localhost:3400');
    expect(config.clients).toEqual([
      {
        clientId: 'portcullis-portal',
        clientSecret: 'x'.repeat(16),
        redirectUris: ['http://localhost:3000/api/auth/callback/oidc'],
        postLogoutRedirectUris: ['http://localhost:3000/sign-in'],
        firstParty: true,
      },
    ]);
  });

  it('adds extra clients from JSON', () => {
    const config = parseConfig(devIdpEnvSchema, {
      DEV_IDP_PORTAL_CLIENT_SECRET: 'x'.repeat(16),
      DEV_IDP_EXTRA_CLIENTS: JSON.stringify([
        { clientId: 'tests', clientSecret: 'y'.repeat(16), redirectUris: ['http://localhost:9/cb'] },
      ]),
    });
    expect(config.clients[1]).toMatchObject({
      clientId: 'tests',
      firstParty: false,
      postLogoutRedirectUris: [],
    });
  });

  it('names every bad variable and never echoes values', () => {
    let error: unknown;
    try {
      parseConfig(devIdpEnvSchema, {
        DEV_IDP_PORT: 'abc',
        DEV_IDP_ISSUER: 'ftp://nope',
        DEV_IDP_PORTAL_REDIRECT_URIS: 'not-a-url',
        DEV_IDP_EXTRA_CLIENTS: '{oops',
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    for (const key of [
      'DEV_IDP_PORT',
      'DEV_IDP_ISSUER',
      'DEV_IDP_PORTAL_CLIENT_SECRET',
      'DEV_IDP_PORTAL_REDIRECT_URIS',
      'DEV_IDP_EXTRA_CLIENTS',
    ]) {
      expect(problems).toContain(key);
    }
    expect(problems).not.toContain('{oops');
  });

  // Found by review: both passed the schema and then stopped oidc-provider at start with a stack naming no variable.
  it('refuses what oidc-provider would refuse at start: an issuer with a query or fragment, a repeated client id', () => {
    const problemsOf = (env: Record<string, string>): string => {
      try {
        parseConfig(devIdpEnvSchema, { DEV_IDP_PORTAL_CLIENT_SECRET: 'x'.repeat(16), ...env });
      } catch (error) {
        if (error instanceof ConfigError) return error.problems.join('\n');
        throw error;
      }
      return '(accepted)';
    };
    expect(problemsOf({ DEV_IDP_ISSUER: 'http://localhost:3400/?tenant=a' })).toMatch(/^DEV_IDP_ISSUER: .*query string/m);
    expect(problemsOf({ DEV_IDP_ISSUER: 'http://localhost:3400/#x' })).toMatch(/^DEV_IDP_ISSUER: /m);
    expect(problemsOf({ DEV_IDP_ISSUER: 'https://idp.example.test/realms/a' })).toBe('(accepted)');
    const client = (clientId: string) => ({ clientId, clientSecret: 'y'.repeat(16), redirectUris: ['http://localhost:9/cb'] });
    expect(problemsOf({ DEV_IDP_EXTRA_CLIENTS: JSON.stringify([client('portcullis-portal')]) })).toMatch(/^DEV_IDP_EXTRA_CLIENTS\.0\.clientId: repeats/m);
    expect(problemsOf({ DEV_IDP_EXTRA_CLIENTS: JSON.stringify([client('a'), client('a')]) })).toMatch(/^DEV_IDP_EXTRA_CLIENTS\.1\.clientId: repeats/m);
    expect(problemsOf({ DEV_IDP_EXTRA_CLIENTS: JSON.stringify([client('a'), client('b')]) })).toBe('(accepted)');
  });
});
