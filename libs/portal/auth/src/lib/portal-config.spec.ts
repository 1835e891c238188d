import { ConfigError, parseConfig } from '@portcullis/shared/util-config';
import { describe, expect, it } from 'vitest';
import { portalEnvSchema } from './portal-config';

const BASE = { NEXTAUTH_SECRET: 'x'.repeat(32), PORTAL_OIDC_CLIENT_SECRET: 'y'.repeat(16), REDIS_URL: 'redis://127.0.0.1:6379' };

function problemsOf(env: Record<string, string>): string[] {
  try {
    parseConfig(portalEnvSchema, { ...BASE, ...env });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems.map((problem) => problem.split(':')[0] ?? problem).sort();
  }
  throw new Error('the configuration was accepted');
}

describe('portal config', () => {
  it('uses the development identity provider outside production only', () => {
    const config = parseConfig(portalEnvSchema, { ...BASE, NEXTAUTH_URL: 'http://localhost:3000' });
    expect(config.auth.issuer).toBe('http://localhost:3400');
    expect(config.logLevel).toBe('info');
    expect(problemsOf({ NODE_ENV: 'production', NEXTAUTH_URL: 'https://portal.example.test' })).toEqual(['PORTAL_OIDC_ISSUER']);
  });

  it('needs https for the portal and the provider in production, except on loopback', () => {
    const production = { NODE_ENV: 'production', NEXTAUTH_URL: 'https://portal.example.test', PORTAL_OIDC_ISSUER: 'https://sso.example.test/' };
    expect(parseConfig(portalEnvSchema, { ...BASE, ...production }).auth.issuer).toBe('https://sso.example.test');
    expect(problemsOf({ ...production, PORTAL_OIDC_ISSUER: 'http://sso.example.test' })).toEqual(['PORTAL_OIDC_ISSUER']);
    expect(problemsOf({ ...production, NEXTAUTH_URL: 'http://portal.example.test' })).toEqual(['NEXTAUTH_URL']);
    const local = { ...BASE, NODE_ENV: 'production', NEXTAUTH_URL: 'http://127.0.0.1:3000', PORTAL_OIDC_ISSUER: 'http://localhost:3400' };
    expect(parseConfig(portalEnvSchema, local).publicUrl).toBe('http://127.0.0.1:3000');
  });

  // Found by review: 9e12 passed, and next-auth's expiry date was then invalid on every session read.
  it('takes a session lifetime of at most 30 days', () => {
    const local = { NEXTAUTH_URL: 'http://localhost:3000' };
    expect(parseConfig(portalEnvSchema, { ...BASE, ...local, PORTAL_SESSION_MAX_AGE_SECONDS: '2592000' }).auth.sessionMaxAgeSeconds).toBe(2_592_000);
    for (const value of ['2592001', '9000000000000']) expect(problemsOf({ ...local, PORTAL_SESSION_MAX_AGE_SECONDS: value })).toEqual(['PORTAL_SESSION_MAX_AGE_SECONDS']);
  });

  it('needs the Redis that keeps signed-out sessions', () => {
    expect(parseConfig(portalEnvSchema, { ...BASE, NEXTAUTH_URL: 'http://localhost:3000' }).redis).toEqual({ url: 'redis://127.0.0.1:6379', commandTimeoutMs: 1_000 });
    for (const value of ['', 'http://127.0.0.1:6379']) {
      expect(new Set(problemsOf({ NEXTAUTH_URL: 'http://localhost:3000', REDIS_URL: value }))).toEqual(new Set(['REDIS_URL']));
    }
  });
});
