import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import * as f from './fragments';
import { ConfigError, parseConfig } from './load-config';

const schema = z
  .object({
    PORT: f.port(3000),
    DATABASE_URL: f.postgresUrl,
    REDIS_URL: f.redisUrl,
    FEATURE_X: f.booleanFlag(false),
    ALLOWED_HOSTS: f.csv,
    API_SECRET: f.secret(16),
  })
  .transform((env) => ({ http: { port: env.PORT }, db: env.DATABASE_URL, flags: { x: env.FEATURE_X }, hosts: env.ALLOWED_HOSTS }));

const good = {
  DATABASE_URL: 'postgresql://app@127.0.0.1:5432/portcullis',
  REDIS_URL: 'redis://127.0.0.1:6379',
  API_SECRET: 's'.repeat(16),
};

describe('parseConfig', () => {
  it('applies defaults, coerces types and nests the result', () => {
    const config = parseConfig(schema, { ...good, ALLOWED_HOSTS: ' a.example, ,b.example ' });
    expect(config).toEqual({
      http: { port: 3000 },
      db: good.DATABASE_URL,
      flags: { x: false },
      hosts: ['a.example', 'b.example'],
    });
  });

  it('takes an empty or blank variable as unset: its default applies, or it is reported missing', () => {
    const bounded = z.object({ MAX_AGE_MS: z.coerce.number().int().min(0).default(600_000), FLAG: f.booleanFlag(true), NEEDED: f.secret(8) });
    expect(parseConfig(bounded, { MAX_AGE_MS: '', FLAG: ' ', NEEDED: 'long-enough' })).toEqual({ MAX_AGE_MS: 600_000, FLAG: true, NEEDED: 'long-enough' });
    expect(parseConfig(bounded, { MAX_AGE_MS: ' \t', NEEDED: 'long-enough' }).MAX_AGE_MS).toBe(600_000);
    expect(() => parseConfig(bounded, { NEEDED: '  ' })).toThrow(/NEEDED: is required/);
  });

  it('names a bad origin by its place in the list, never quoting it (a URL may carry a user and password)', () => {
    const origins = z.object({ ORIGINS: f.origins });
    expect(() => parseConfig(origins, { ORIGINS: 'https://ok.example.com, https://ops:hunter2-s3cret@portal.example.com' })).toThrow(/ORIGINS: entry 2 is not an origin/);
    try {
      parseConfig(origins, { ORIGINS: 'https://ops:hunter2-s3cret@portal.example.com' });
    } catch (error) {
      expect((error as ConfigError).message).not.toContain('hunter2');
    }
  });

  it('freezes the result deeply', () => {
    const config = parseConfig(schema, good);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.http)).toBe(true);
    expect(() => {
      (config.http as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it('names every bad variable at once, without echoing values', () => {
    let error: unknown;
    try {
      parseConfig(schema, {
        PORT: '70000',
        DATABASE_URL: 'mysql://root:topsecretpw@db/x',
        FEATURE_X: 'maybe',
        API_SECRET: 'short-secret',
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    for (const key of ['PORT', 'DATABASE_URL', 'REDIS_URL', 'FEATURE_X', 'API_SECRET']) expect(problems).toContain(key);
    expect(problems).not.toContain('topsecretpw');
    expect(problems).not.toContain('short-secret');
  });

  it('refuses a duration longer than a Node timer can wait (it would fire every millisecond)', () => {
    const timed = z.object({ REFRESH_MS: f.durationMs(30_000) });
    expect(parseConfig(timed, { REFRESH_MS: String(f.MAX_TIMER_MS) }).REFRESH_MS).toBe(f.MAX_TIMER_MS);
    expect(() => parseConfig(timed, { REFRESH_MS: '2592000000' })).toThrow(ConfigError);
    expect(() => parseConfig(timed, { REFRESH_MS: '2592000000' })).toThrow(/REFRESH_MS/);
  });
});

// ops review: a REDIS_URL whose path is not a database number (`redis://cache.internal:6379/portcullis`, `.../abc`)
// passed, and ioredis then sent `SELECT NaN`: the control plane, the gateway and the audit worker all died of an
// uncaught ReplyError, the variable never named. The same field serves GATEWAY_RATE_LIMIT_REDIS_URL and
// GATEWAY_AUDIT_REDIS_URL. Found by a later review: ioredis reads the query string as client options over the path, so
// `?db=abc` was the same crash by another spelling, and `?keyPrefix=` moved every key without a word.
describe('redisUrl: the database path and the query string', () => {
  const redisSchema = z.object({ REDIS_URL: f.redisUrl });

  it('accepts no path, "/" and a database number', () => {
    for (const url of ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379/', 'redis://127.0.0.1:6379/3', 'rediss://u:p@cache.internal:6380/15']) {
      expect(parseConfig(redisSchema, { REDIS_URL: url }).REDIS_URL).toBe(url);
    }
  });

  it.each([
    ['redis://:pw-ops8@127.0.0.1:6379/abc', 'database number'],
    ['rediss://cache.internal:6380/portcullis', 'database number'],
    ['redis://127.0.0.1:6379/1/2', 'database number'],
    ['redis://127.0.0.1:6379/-1', 'database number'],
    ['redis://:pw-ops8@127.0.0.1:6379?db=abc', 'query string'],
    ['redis://127.0.0.1:6379/?db=portcullis', 'query string'],
    ['redis://127.0.0.1:6379/0?keyPrefix=x', 'query string'],
    ['redis://127.0.0.1:6379/0?', 'query string'],
    ['redis://127.0.0.1:6379/0#frag', 'query string'],
  ])('refuses %s (%s), naming REDIS_URL and not the password', (url, problem) => {
    let error: unknown;
    try {
      parseConfig(redisSchema, { REDIS_URL: url });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.join('\n')).toMatch(new RegExp(`^REDIS_URL: .*${problem}`));
    expect((error as ConfigError).message).not.toContain('pw-ops8');
  });
});
