import { ConfigError, parseConfig } from '@portcullis/shared/util-config';
import { describe, expect, it } from 'vitest';
import { controlPlaneConfigSchema } from './config';

const REQUIRED = { DATABASE_URL: 'postgresql://app@127.0.0.1:5432/portcullis', REDIS_URL: 'redis://127.0.0.1:6379' };
const SECRETS = { CONTROL_PLANE_JWT_SECRET: 'x'.repeat(40), CONTROL_PLANE_SECRETS_KEYRING: `k1:${Buffer.alloc(32, 1).toString('base64')}` };

function problemsOf(env: Record<string, string>): string[] {
  try {
    parseConfig(controlPlaneConfigSchema, { ...REQUIRED, ...env });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems.map((problem) => problem.split(':')[0] ?? problem).sort();
  }
  throw new Error('the configuration was accepted');
}

describe('control plane config: the development secrets', () => {
  it('are used only on loopback outside production, and say so', () => {
    for (const host of ['127.0.0.1', 'localhost', '::1', '127.0.0.2']) {
      const config = parseConfig(controlPlaneConfigSchema, { ...REQUIRED, CONTROL_PLANE_HOST: host });
      expect(config.auth.usingDevelopmentSecret).toBe(true);
      expect(config.secrets.usingDevelopmentKeyring).toBe(true);
    }
  });

  it('are refused when the API listens beyond loopback, even without NODE_ENV=production', () => {
    for (const host of ['0.0.0.0', '::', '10.0.0.5', 'api.internal']) {
      expect(problemsOf({ CONTROL_PLANE_HOST: host })).toEqual(['CONTROL_PLANE_JWT_SECRET', 'CONTROL_PLANE_SECRETS_KEYRING']);
    }
    const configured = parseConfig(controlPlaneConfigSchema, { ...REQUIRED, ...SECRETS, CONTROL_PLANE_HOST: '0.0.0.0' });
    expect(configured.auth.usingDevelopmentSecret).toBe(false);
  });

  it('are refused behind a proxy, though the API listens on loopback (the proxy serves whoever reaches it)', () => {
    for (const trust of ['1', 'loopback', '10.0.0.0/8']) {
      expect(problemsOf({ CONTROL_PLANE_HOST: '127.0.0.1', CONTROL_PLANE_TRUST_PROXY: trust })).toEqual(['CONTROL_PLANE_JWT_SECRET', 'CONTROL_PLANE_SECRETS_KEYRING']);
    }
    expect(parseConfig(controlPlaneConfigSchema, { ...REQUIRED, ...SECRETS, CONTROL_PLANE_TRUST_PROXY: '1' }).auth.usingDevelopmentSecret).toBe(false);
  });

  it('are refused in production wherever it listens', () => {
    expect(problemsOf({ NODE_ENV: 'production' })).toEqual(['CONTROL_PLANE_JWT_SECRET', 'CONTROL_PLANE_SECRETS_KEYRING']);
  });

  it('checks a keyring given with parseKeyring (the field the gateway shares): a short key, a key id twice', () => {
    const key = Buffer.alloc(32, 2).toString('base64');
    expect(problemsOf({ CONTROL_PLANE_SECRETS_KEYRING: `k1:${Buffer.alloc(12, 2).toString('base64')}` })).toEqual(['CONTROL_PLANE_SECRETS_KEYRING']);
    expect(problemsOf({ CONTROL_PLANE_SECRETS_KEYRING: `k1:${key},k1:${key}` })).toEqual(['CONTROL_PLANE_SECRETS_KEYRING']);
  });
});

describe('control plane config: CONTROL_PLANE_TRUST_PROXY', () => {
  it('names the proxies in front (none, a hop count or addresses) and refuses true, which trusts what clients write', () => {
    const trustOf = (value: string) => parseConfig(controlPlaneConfigSchema, { ...REQUIRED, ...SECRETS, CONTROL_PLANE_TRUST_PROXY: value }).http.trustProxy;
    expect(parseConfig(controlPlaneConfigSchema, REQUIRED).http.trustProxy).toBe(false);
    expect(trustOf('1')).toBe(1);
    expect(trustOf('10.0.0.0/8, loopback')).toEqual(['10.0.0.0/8', 'loopback']);
    expect(problemsOf({ CONTROL_PLANE_TRUST_PROXY: 'true' })).toEqual(['CONTROL_PLANE_TRUST_PROXY']);
    expect(problemsOf({ CONTROL_PLANE_TRUST_PROXY: 'not-an-address' })).toEqual(['CONTROL_PLANE_TRUST_PROXY']);
  });
});

describe('control plane config: CONTROL_PLANE_STDIO_RUN_AS', () => {
  it('takes uid:gid as numbers, unset when empty, and refuses anything else', () => {
    const runAsOf = (value: string) => parseConfig(controlPlaneConfigSchema, { ...REQUIRED, CONTROL_PLANE_STDIO_RUN_AS: value }).upstreams.stdioRunAs;
    expect(runAsOf('65534:65534')).toEqual({ uid: 65534, gid: 65534 });
    expect(runAsOf('')).toBeUndefined();
    for (const value of ['nobody', '65534', '1:2:3', '-1:0', '4294967296:0']) expect(problemsOf({ CONTROL_PLANE_STDIO_RUN_AS: value }), value).toEqual(['CONTROL_PLANE_STDIO_RUN_AS']);
  });
});

describe('control plane config: CONTROL_PLANE_STDIO_UID_RANGE', () => {
  it('takes first-last as numbers, unset when empty, refuses anything else, and not together with CONTROL_PLANE_STDIO_RUN_AS', () => {
    const rangeOf = (value: string) => parseConfig(controlPlaneConfigSchema, { ...REQUIRED, CONTROL_PLANE_STDIO_UID_RANGE: value }).upstreams.stdioUidRange;
    expect(rangeOf('230000-230099')).toEqual({ first: 230_000, last: 230_099 });
    expect(rangeOf('')).toBeUndefined();
    for (const value of ['230000', '0-5', '9-8', '1-2000000', 'a-b', '1-2147483648']) {
      expect(problemsOf({ CONTROL_PLANE_STDIO_UID_RANGE: value }), value).toEqual(['CONTROL_PLANE_STDIO_UID_RANGE']);
    }
    expect(problemsOf({ CONTROL_PLANE_STDIO_UID_RANGE: '230000-230099', CONTROL_PLANE_STDIO_RUN_AS: '65534:65534' })).toEqual(['CONTROL_PLANE_STDIO_UID_RANGE']);
  });
});

describe('control plane config: CONTROL_PLANE_OPENAPI', () => {
  it('serves the API description outside production, not in production unless asked', () => {
    const openApiOf = (env: Record<string, string>) => parseConfig(controlPlaneConfigSchema, { ...REQUIRED, ...SECRETS, ...env }).http.openApi;
    expect(openApiOf({})).toBe(true);
    expect(openApiOf({ NODE_ENV: 'production' })).toBe(false);
    expect(openApiOf({ NODE_ENV: 'production', CONTROL_PLANE_OPENAPI: 'true' })).toBe(true);
    expect(openApiOf({ CONTROL_PLANE_OPENAPI: 'false' })).toBe(false);
    expect(problemsOf({ CONTROL_PLANE_OPENAPI: 'yes' })).toEqual(['CONTROL_PLANE_OPENAPI']);
  });
});

describe('control plane config: CONTROL_PLANE_METRICS_PORT', () => {
  it('is off unless set, on its own host (loopback by default), and refuses what is not a port', () => {
    const metricsOf = (env: Record<string, string>) => parseConfig(controlPlaneConfigSchema, { ...REQUIRED, ...env }).metrics;
    expect(metricsOf({})).toBeNull();
    expect(metricsOf({ CONTROL_PLANE_METRICS_PORT: '' })).toBeNull();
    expect(metricsOf({ CONTROL_PLANE_METRICS_PORT: '3101' })).toEqual({ host: '127.0.0.1', port: 3101 });
    expect(metricsOf({ CONTROL_PLANE_METRICS_PORT: '0', CONTROL_PLANE_METRICS_HOST: '10.0.0.5' })).toEqual({ host: '10.0.0.5', port: 0 });
    for (const value of ['x', '-1', '65536', '1.5']) expect(problemsOf({ CONTROL_PLANE_METRICS_PORT: value }), value).toEqual(['CONTROL_PLANE_METRICS_PORT']);
  });
});

describe('control plane config: the worker public keys audit verification checks anchors with', () => {
  // Empty is unset for other variables; here it would have meant "check no signed anchor", unsaid (found in review).
  it('refuses an empty or blank AUDIT_VERIFY_KEYS_FILE instead of verifying without it', () => {
    expect(problemsOf({ AUDIT_VERIFY_KEYS_FILE: '' })).toEqual(['AUDIT_VERIFY_KEYS_FILE']);
    expect(problemsOf({ AUDIT_VERIFY_KEYS_FILE: '  ' })).toEqual(['AUDIT_VERIFY_KEYS_FILE']);
  });
});
