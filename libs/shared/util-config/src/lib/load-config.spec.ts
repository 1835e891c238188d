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
