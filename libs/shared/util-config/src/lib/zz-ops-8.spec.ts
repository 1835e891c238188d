/**
 * ops review: a REDIS_URL whose path is not a database number (`redis://cache.internal:6379/portcullis`,
 * `.../abc`) passes `redisUrl`, and ioredis then sends `SELECT NaN`: Redis answers "ERR value is not an integer or out
 * of range" and the control plane, the gateway and the audit worker all die of an uncaught ReplyError (a raw stack on
 * stderr, exit 1, the variable never named). The same holds for GATEWAY_RATE_LIMIT_REDIS_URL and GATEWAY_AUDIT_REDIS_URL.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import * as f from './fragments';
import { ConfigError, parseConfig } from './load-config';

const schema = z.object({ REDIS_URL: f.redisUrl });

describe('redisUrl: the database path', () => {
  it('accepts no path, "/" and a database number', () => {
    for (const url of ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379/', 'redis://127.0.0.1:6379/3']) {
      expect(parseConfig(schema, { REDIS_URL: url }).REDIS_URL).toBe(url);
    }
  });

  it.each(['redis://:pw-ops8@127.0.0.1:6379/abc', 'rediss://cache.internal:6380/portcullis'])('refuses %s, naming REDIS_URL and not the password', (url) => {
    let error: unknown;
    try {
      parseConfig(schema, { REDIS_URL: url });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.join('\n')).toMatch(/^REDIS_URL: /);
    expect((error as ConfigError).message).not.toContain('pw-ops8');
  });
});
