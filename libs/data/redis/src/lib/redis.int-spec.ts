import { inject, describe, expect, it } from 'vitest';
import { createRedisClient, pingRedis } from './redis';

describe('createRedisClient (real Redis)', () => {
  it('answers PING on the test Redis', async () => {
    const client = createRedisClient({ url: inject('redisUrl'), connectionName: 'int-test' });
    try {
      await expect(pingRedis(client)).resolves.toBeUndefined();
    } finally {
      client.disconnect();
    }
  });

  it('fails fast, without hanging, when Redis is not there', async () => {
    const client = createRedisClient({ url: 'redis://127.0.0.1:1', connectionName: 'int-test-dead', maxRetriesPerRequest: 0 });
    const started = Date.now();
    try {
      await expect(pingRedis(client)).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      client.disconnect();
    }
  });
});
