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

  it('is ready on a database other than 0 that the server has', async () => {
    const client = createRedisClient({ url: withDatabase(inject('redisUrl'), 3), connectionName: 'int-test-db3' });
    try {
      await expect(pingRedis(client)).resolves.toBeUndefined();
    } finally {
      client.disconnect();
    }
  });

  it('is not ready when the server refuses the database REDIS_URL names (ioredis carries on in database 0)', async () => {
    const client = createRedisClient({ url: withDatabase(inject('redisUrl'), 99_999), connectionName: 'int-test-db-missing' });
    try {
      await expect(pingRedis(client)).rejects.toThrow(/connected to Redis database 0, not 99999/);
    } finally {
      client.disconnect();
    }
  });

  // Readiness would stay 503 for good on a server that cannot answer CLIENT INFO (before 6.2, or an ACL user denied it).
  it('is ready on a database other than 0 when the server will not say which database a connection is on', async () => {
    const user = `no-client-${process.pid}`;
    const admin = createRedisClient({ url: inject('redisUrl'), connectionName: 'int-test-acl' });
    await admin.call('ACL', 'SETUSER', user, 'on', '>acl-test-password', '~*', '&*', '+@all', '-client');
    const url = new URL(withDatabase(inject('redisUrl'), 3));
    url.username = user;
    url.password = 'acl-test-password';
    const client = createRedisClient({ url: url.toString(), connectionName: 'int-test-acl-user' });
    try {
      await expect(client.call('CLIENT', 'INFO')).rejects.toThrow(/NOPERM|permission/i);
      await expect(pingRedis(client)).resolves.toBeUndefined();
    } finally {
      client.disconnect();
      await admin.call('ACL', 'DELUSER', user);
      admin.disconnect();
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

function withDatabase(url: string, db: number): string {
  const parsed = new URL(url);
  parsed.pathname = `/${db}`;
  return parsed.toString();
}
