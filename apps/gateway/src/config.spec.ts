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
    // Named, not echoed (a value may be a secret in other variables).
    expect((error as ConfigError).message).not.toContain('lots');
    return (error as ConfigError).problems.map((problem) => problem.split(':')[0] ?? problem).sort();
  }
  throw new Error('the configuration was accepted');
}

describe('gateway config: the listing cache', () => {
  it('defaults to 15 s per page and 2,000 pages per replica', () => {
    const { mcp } = parseConfig(gatewayConfigSchema, REQUIRED);
    expect(mcp.listCacheMs).toBe(15_000);
    expect(mcp.listCacheMaxPages).toBe(2_000);
  });

  it('reads both variables', () => {
    const { mcp } = parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_LIST_CACHE_MS: '0', GATEWAY_LIST_CACHE_MAX_PAGES: '50' });
    expect(mcp.listCacheMs).toBe(0);
    expect(mcp.listCacheMaxPages).toBe(50);
  });

  it('refuses a bound that could not hold a page, or is not a whole number, naming the variable and no value', () => {
    expect(problemsOf({ GATEWAY_LIST_CACHE_MAX_PAGES: '0' })).toEqual(['GATEWAY_LIST_CACHE_MAX_PAGES']);
    expect(problemsOf({ GATEWAY_LIST_CACHE_MAX_PAGES: 'lots', GATEWAY_LIST_CACHE_MS: '-1' })).toEqual([
      'GATEWAY_LIST_CACHE_MAX_PAGES',
      'GATEWAY_LIST_CACHE_MS',
    ]);
    expect(problemsOf({ GATEWAY_LIST_CACHE_MAX_PAGES: '2.5' })).toEqual(['GATEWAY_LIST_CACHE_MAX_PAGES']);
  });
});

describe('gateway config: upstream answers held while they arrive', () => {
  it('defaults to 256 MiB for the replica and 64 MiB per tenant, and reads both in MiB', () => {
    expect(parseConfig(gatewayConfigSchema, REQUIRED).upstreams).toMatchObject({ heldAnswersMaxBytes: 256 * 1024 * 1024, heldAnswersTenantMaxBytes: 64 * 1024 * 1024 });
    const { upstreams } = parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_HELD_ANSWERS_MAX_MB: '1024', GATEWAY_HELD_ANSWERS_TENANT_MAX_MB: '100' });
    expect(upstreams).toMatchObject({ heldAnswersMaxBytes: 1024 * 1024 * 1024, heldAnswersTenantMaxBytes: 100 * 1024 * 1024 });
  });

  it('gives a tenant a quarter of the replica bound unless told otherwise (an empty value counts as unset)', () => {
    const { upstreams } = parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_HELD_ANSWERS_MAX_MB: '10', GATEWAY_HELD_ANSWERS_TENANT_MAX_MB: ' ' });
    expect(upstreams).toMatchObject({ heldAnswersMaxBytes: 10 * 1024 * 1024, heldAnswersTenantMaxBytes: 2.5 * 1024 * 1024 });
  });

  it('refuses a tenant bound over the replica bound, zero, fractions and words, naming the variable', () => {
    expect(problemsOf({ GATEWAY_HELD_ANSWERS_MAX_MB: '32', GATEWAY_HELD_ANSWERS_TENANT_MAX_MB: '33' })).toEqual(['GATEWAY_HELD_ANSWERS_TENANT_MAX_MB']);
    expect(problemsOf({ GATEWAY_HELD_ANSWERS_TENANT_MAX_MB: '0', GATEWAY_HELD_ANSWERS_MAX_MB: '1.5' })).toEqual(['GATEWAY_HELD_ANSWERS_MAX_MB', 'GATEWAY_HELD_ANSWERS_TENANT_MAX_MB']);
    expect(problemsOf({ GATEWAY_HELD_ANSWERS_MAX_MB: 'lots' })).toEqual(['GATEWAY_HELD_ANSWERS_MAX_MB']);
  });
});

describe('gateway config: upstream network policy', () => {
  it('allows named private hosts without opening every private address', () => {
    const { upstreams } = parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_UPSTREAM_ALLOWED_HOSTS: ' MCP.internal , 10.0.0.7 ' });
    expect(upstreams).toMatchObject({ allowPrivateNetworks: false, allowedHosts: ['mcp.internal', '10.0.0.7'] });
    expect(parseConfig(gatewayConfigSchema, REQUIRED).upstreams.allowedHosts).toEqual([]);
  });
});

describe('gateway config: the stdio command allow-list', () => {
  it('is a list of exact commands when set, and none (as the control plane allowed) when unset or empty', () => {
    const allowlistOf = (value?: string) =>
      parseConfig(gatewayConfigSchema, { ...REQUIRED, ...(value === undefined ? {} : { GATEWAY_STDIO_COMMAND_ALLOWLIST: value }) }).upstreams.stdioCommandAllowlist;
    expect(allowlistOf(' /usr/bin/node , /opt/mcp/server ')).toEqual(['/usr/bin/node', '/opt/mcp/server']);
    expect(allowlistOf('')).toBeNull();
    expect(allowlistOf(' , ')).toBeNull();
    expect(allowlistOf()).toBeNull();
  });
});

describe('gateway config: the request timeout', () => {
  it('defaults to 30 s, reads GATEWAY_REQUEST_TIMEOUT_MS, and refuses what would turn it off or is not a whole number', () => {
    expect(parseConfig(gatewayConfigSchema, REQUIRED).http.requestTimeoutMs).toBe(30_000);
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_REQUEST_TIMEOUT_MS: '120000' }).http.requestTimeoutMs).toBe(120_000);
    expect(problemsOf({ GATEWAY_REQUEST_TIMEOUT_MS: '0' })).toEqual(['GATEWAY_REQUEST_TIMEOUT_MS']);
    expect(problemsOf({ GATEWAY_REQUEST_TIMEOUT_MS: 'lots' })).toEqual(['GATEWAY_REQUEST_TIMEOUT_MS']);
  });
});

describe('gateway config: how old API keys and tenants may get', () => {
  it('defaults to 10 minutes; 0 turns the bound off', () => {
    expect(parseConfig(gatewayConfigSchema, REQUIRED).mcp.credentialsMaxAgeMs).toBe(600_000);
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_CREDENTIALS_MAX_AGE_MS: '0' }).mcp.credentialsMaxAgeMs).toBe(0);
  });

  // Read as 0 ("no bound") before (found in review): `NAME=` in a copied .env.example turned two bounds off unsaid.
  it('takes an empty or blank value as unset (the default), for this bound and the sessions per principal', () => {
    for (const blank of ['', ' ']) {
      const { mcp } = parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_CREDENTIALS_MAX_AGE_MS: blank, GATEWAY_MAX_SESSIONS_PER_PRINCIPAL: blank });
      expect({ age: mcp.credentialsMaxAgeMs, sessions: mcp.maxSessionsPerPrincipal }).toEqual({ age: 600_000, sessions: 1_000 });
    }
  });

  it('refuses a bound that one failed reload would cross, or that is not a whole number of milliseconds', () => {
    // Reloads every 30 s by default: a bound under 60 s would refuse requests after a single failed reload.
    expect(problemsOf({ GATEWAY_CREDENTIALS_MAX_AGE_MS: '59999' })).toEqual(['GATEWAY_CREDENTIALS_MAX_AGE_MS']);
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_CREDENTIALS_MAX_AGE_MS: '60000' }).mcp.credentialsMaxAgeMs).toBe(60_000);
    expect(problemsOf({ GATEWAY_CREDENTIALS_MAX_AGE_MS: '2000', GATEWAY_SNAPSHOT_REFRESH_MS: '1500' })).toEqual(['GATEWAY_CREDENTIALS_MAX_AGE_MS']);
    expect(problemsOf({ GATEWAY_CREDENTIALS_MAX_AGE_MS: '-1' })).toEqual(['GATEWAY_CREDENTIALS_MAX_AGE_MS']);
    expect(problemsOf({ GATEWAY_CREDENTIALS_MAX_AGE_MS: 'lots' })).toEqual(['GATEWAY_CREDENTIALS_MAX_AGE_MS']);
  });
});

describe('gateway config: concurrency leases and approval waits', () => {
  it('refuses a lease that a held call could outlive, naming the lease', () => {
    expect(problemsOf({ GATEWAY_RATE_LIMIT_LEASE_MS: '600000' })).toEqual(['GATEWAY_RATE_LIMIT_LEASE_MS']);
    expect(problemsOf({ GATEWAY_RATE_LIMIT_LEASE_MS: '900000', GATEWAY_APPROVAL_TIMEOUT_MS: '3600000' })).toEqual(['GATEWAY_RATE_LIMIT_LEASE_MS']);
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_RATE_LIMIT_LEASE_MS: '3700000', GATEWAY_APPROVAL_TIMEOUT_MS: '3600000' }).rateLimits.leaseMs).toBe(3_700_000);
  });
});

describe('gateway config: keep-alives and the replay log', () => {
  it('defaults to a comment within 15 s; refuses a log lifetime the renewals could not keep up with, or a bad interval', () => {
    expect(parseConfig(gatewayConfigSchema, REQUIRED).mcp.sseKeepAliveMs).toBe(15_000);
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_SSE_KEEPALIVE_MS: '150', GATEWAY_SSE_REPLAY_TTL_MS: '1000' }).mcp.sseKeepAliveMs).toBe(150);
    expect(problemsOf({ GATEWAY_SSE_KEEPALIVE_MS: '60000', GATEWAY_SSE_REPLAY_TTL_MS: '120000' })).toEqual(['GATEWAY_SSE_REPLAY_TTL_MS']);
    // Resumption off: no log to keep.
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_SSE_KEEPALIVE_MS: '60000', GATEWAY_SSE_REPLAY_TTL_MS: '60000', GATEWAY_SSE_REPLAY_MAX_BYTES: '0' }).mcp.sseKeepAliveMs).toBe(60_000);
    for (const bad of ['0', '10', '600000', 'often']) expect(problemsOf({ GATEWAY_SSE_KEEPALIVE_MS: bad })).toContain('GATEWAY_SSE_KEEPALIVE_MS');
  });

  it("gives a running stream's writer a lease of two and a half keep-alive intervals, and at least one and 10 s", () => {
    expect(parseConfig(gatewayConfigSchema, REQUIRED).mcp.sseReplay.leaseMs).toBe(37_500);
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_SSE_KEEPALIVE_MS: '200' }).mcp.sseReplay.leaseMs).toBe(10_200);
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_SSE_KEEPALIVE_MS: '60000', GATEWAY_SSE_REPLAY_TTL_MS: '600000' }).mcp.sseReplay.leaseMs).toBe(150_000);
  });
});

describe('gateway config: the user stdio servers run as', () => {
  it('reads uid:gid, and leaves it unset when empty or absent', () => {
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_STDIO_RUN_AS: '65534:65533' }).upstreams.stdioRunAs).toEqual({ uid: 65534, gid: 65533 });
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_STDIO_RUN_AS: '' }).upstreams.stdioRunAs).toBeUndefined();
    expect(parseConfig(gatewayConfigSchema, REQUIRED).upstreams.stdioRunAs).toBeUndefined();
  });

  it('refuses anything but two numbers', () => {
    for (const value of ['nobody', '65534', '65534:', 'lots:1', '-1:0', '1:2:3', '4294967294:4294967294', '1:2147483648']) {
      expect(problemsOf({ GATEWAY_STDIO_RUN_AS: value }), value).toEqual(['GATEWAY_STDIO_RUN_AS']);
    }
  });
});

describe('gateway config: a user id of its own for each stdio server', () => {
  it('reads first-last, and leaves it unset when empty or absent', () => {
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_STDIO_UID_RANGE: '200000-200999' }).upstreams.stdioUidRange).toEqual({ first: 200000, last: 200999 });
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_STDIO_UID_RANGE: '7-7' }).upstreams.stdioUidRange).toEqual({ first: 7, last: 7 });
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_STDIO_UID_RANGE: '' }).upstreams.stdioUidRange).toBeUndefined();
    expect(parseConfig(gatewayConfigSchema, REQUIRED).upstreams.stdioUidRange).toBeUndefined();
  });

  it('refuses root, reversed or oversized ranges, and a range beside GATEWAY_STDIO_RUN_AS', () => {
    for (const value of ['200000', '0-10', '10-9', '1-2147483648', '1-1000001', 'a-b', '-1-5', '5-', '1:2']) {
      expect(problemsOf({ GATEWAY_STDIO_UID_RANGE: value }), value).toEqual(['GATEWAY_STDIO_UID_RANGE']);
    }
    expect(problemsOf({ GATEWAY_STDIO_UID_RANGE: '200000-200009', GATEWAY_STDIO_RUN_AS: '65534:65534' })).toEqual(['GATEWAY_STDIO_UID_RANGE']);
  });
});

describe('gateway config: the tool name separator', () => {
  it('takes separators no tool prefix the control plane accepts can contain', () => {
    for (const separator of ['__', '___', '.', '-', '--', '_.', 'X', '..']) {
      expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_TOOL_SEPARATOR: separator }).mcp.toolSeparator).toBe(separator);
    }
  });

  it('refuses one that could occur inside an accepted prefix (my_files, v2x), naming the variable', () => {
    for (const separator of ['_', 'x', '2', '_x', 'a.']) expect(problemsOf({ GATEWAY_TOOL_SEPARATOR: separator })).toEqual(['GATEWAY_TOOL_SEPARATOR']);
  });
});

describe('gateway config: metrics', () => {
  it('is off unless GATEWAY_METRICS_PORT is set (empty counts as unset), on loopback unless told otherwise', () => {
    expect(parseConfig(gatewayConfigSchema, REQUIRED).metrics).toBeNull();
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_METRICS_PORT: '' }).metrics).toBeNull();
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_METRICS_PORT: '9464' }).metrics).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_METRICS_PORT: '9464', GATEWAY_METRICS_HOST: '0.0.0.0' }).metrics).toEqual({ host: '0.0.0.0', port: 9464 });
  });

  it('refuses a port that is not one, naming the variable', () => {
    expect(problemsOf({ GATEWAY_METRICS_PORT: 'lots' })).toEqual(['GATEWAY_METRICS_PORT']);
    expect(problemsOf({ GATEWAY_METRICS_PORT: '70000' })).toEqual(['GATEWAY_METRICS_PORT']);
  });
});

describe('gateway config: values that could never work', () => {
  it('refuses a Redis URL with a malformed percent-escape (the client would stop the boot with a bare URIError)', () => {
    expect(problemsOf({ REDIS_URL: 'redis://:pa%ZZss@127.0.0.1:6379' })).toEqual(['REDIS_URL']);
    expect(() => parseConfig(gatewayConfigSchema, { ...REQUIRED, REDIS_URL: 'redis://:pa%25ss@127.0.0.1:6379' })).not.toThrow();
  });

  it('refuses allowed origins that are not origins (no browser Origin header could equal them), and takes them in any case', () => {
    expect(problemsOf({ GATEWAY_ALLOWED_ORIGINS: 'portal.example.com' })).toEqual(['GATEWAY_ALLOWED_ORIGINS']);
    expect(problemsOf({ GATEWAY_ALLOWED_ORIGINS: 'https://portal.example.com/' })).toEqual(['GATEWAY_ALLOWED_ORIGINS']);
    expect(problemsOf({ GATEWAY_ALLOWED_ORIGINS: 'https://portal.example.com/admin' })).toEqual(['GATEWAY_ALLOWED_ORIGINS']);
    const { http } = parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_ALLOWED_ORIGINS: 'https://Portal.example.com, http://127.0.0.1:3000' });
    expect(http.allowedOrigins).toEqual(['https://portal.example.com', 'http://127.0.0.1:3000']);
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_ALLOWED_ORIGINS: '*' }).http.allowedOrigins).toEqual(['*']);
  });

  it('takes an empty keyring (`NAME=` in an env file) as unset', () => {
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_SECRETS_KEYRING: '' }).secrets.keyring).toBeNull();
  });
});

// ops review: GATEWAY_SECRETS_KEYRING was only checked against a regular expression. A key that is not 32 bytes, or a
// key id given twice, passed the config and then stopped the gateway later in boot (parseKeyring in startDataPlane):
// exit 1 instead of 78, a fatal log line with a stack trace, the variable not named. It now uses the control plane's
// check (keyringSpecField, next to parseKeyring).
describe('gateway config: GATEWAY_SECRETS_KEYRING', () => {
  const key = randomBytes(32).toString('base64');
  const shortKey = randomBytes(12).toString('base64');

  function rawProblemsOf(env: Record<string, string>): string[] {
    try {
      parseConfig(gatewayConfigSchema, { ...REQUIRED, ...env });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return [...(error as ConfigError).problems];
    }
    throw new Error('the configuration was accepted');
  }

  it('refuses a key that is not 32 bytes, naming the variable and not the key', () => {
    const problems = rawProblemsOf({ GATEWAY_SECRETS_KEYRING: `k1:${shortKey}` });
    expect(problems.map((p) => p.split(':')[0])).toEqual(['GATEWAY_SECRETS_KEYRING']);
    expect(problems.join('\n')).not.toContain(shortKey);
  });

  it('refuses a key id given twice', () => {
    expect(rawProblemsOf({ GATEWAY_SECRETS_KEYRING: `k1:${key},k1:${key}` }).map((p) => p.split(':')[0])).toEqual(['GATEWAY_SECRETS_KEYRING']);
  });

  it('takes a keyring the control plane takes, kept as written', () => {
    const spec = `k2:${key},k1:${randomBytes(32).toString('base64')}`;
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_SECRETS_KEYRING: ` ${spec} ` }).secrets.keyring).toBe(spec);
  });
});

describe('gateway config: the Host header values the MCP endpoints answer to', () => {
  it('takes host and host:port names and addresses, an IPv6 one in brackets, in lower case', () => {
    const { http } = parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_ALLOWED_HOSTS: 'GW.example.com, gw.example.com:8443, 10.0.0.7, [::1]:3200, localhost' });
    expect(http.allowedHosts).toEqual(['gw.example.com', 'gw.example.com:8443', '10.0.0.7', '[::1]:3200', 'localhost']);
  });

  it('lets an entry on port 80 or 443 match the bare host too, which is what clients send for a default port', () => {
    const { http } = parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_ALLOWED_HOSTS: 'gw.example.com:443, [::1]:80, other.example.com:8443' });
    expect(http.allowedHosts).toEqual(['gw.example.com:443', 'gw.example.com', '[::1]:80', '[::1]', 'other.example.com:8443']);
  });

  // Accepted before, and every request was then refused with 403 "Host not allowed" (found in review).
  it.each(['*', 'https://gw.example.com', 'gw.example.com/', '::1', 'user@gw.example.com', 'gw.example.com:99999'])('refuses %s at start, naming the variable', (entry) => {
    expect(problemsOf({ GATEWAY_ALLOWED_HOSTS: `ok.example.com, ${entry}` })).toEqual(['GATEWAY_ALLOWED_HOSTS']);
  });
});

describe('gateway config: the address to listen on', () => {
  it('takes an IP address or a host name, and refuses anything else naming the variable', () => {
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_HOST: '::' }).http.host).toBe('::');
    expect(parseConfig(gatewayConfigSchema, { ...REQUIRED, GATEWAY_HOST: '0.0.0.0' }).http.host).toBe('0.0.0.0');
    expect(problemsOf({ GATEWAY_HOST: 'gateway host', GATEWAY_METRICS_HOST: 'http://127.0.0.1' })).toEqual(['GATEWAY_HOST', 'GATEWAY_METRICS_HOST']);
  });
});
