import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { createRedisClient } from '@portcullis/data/redis';
import { testContext } from '@portcullis/shared/util-testing';
import { redisSessionRevocations, SessionCheckUnavailableError, sessionState } from './session-revocation';

const now = () => Math.floor(Date.now() / 1000);

describe('session revocations in Redis', () => {
  const client = createRedisClient({ url: testContext().redisUrl, connectionName: 'portal-revocation-test' });
  const prefix = `test:portal:session:revoked:${randomUUID()}:`;
  const revocations = redisSessionRevocations(client, prefix);

  afterAll(async () => {
    const keys = await client.keys(`${prefix}*`);
    if (keys.length > 0) await client.del(...keys);
    client.disconnect();
  });

  it('records a signed-out session for the session lifetime, and only that session', async () => {
    const [sid, other] = [randomUUID(), randomUUID()];
    expect(await sessionState({ sid, authTime: now() }, revocations, 3_600)).toBe('active');
    await revocations.revoke(sid, 3_600);
    expect(await sessionState({ sid, authTime: now() }, revocations, 3_600)).toBe('ended');
    expect(await sessionState({ sid: other, authTime: now() }, revocations, 3_600)).toBe('active');
    const ttl = await client.ttl(`${prefix}${sid}`);
    expect(ttl).toBeGreaterThan(3_590);
    expect(ttl).toBeLessThanOrEqual(3_600);
  });

  it('fails closed, promptly, when Redis does not answer', async () => {
    // Nothing listens on port 1: every command fails after the client's retries.
    const down = createRedisClient({ url: 'redis://127.0.0.1:1', connectionName: 'portal-revocation-test-down', maxRetriesPerRequest: 1, commandTimeoutMs: 1_000 });
    try {
      const started = Date.now();
      await expect(sessionState({ sid: randomUUID(), authTime: now() }, redisSessionRevocations(down, prefix), 3_600)).rejects.toBeInstanceOf(SessionCheckUnavailableError);
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      down.disconnect();
    }
  });

  it('ends a session signed in longer ago than its lifetime, or without a sign-in time, whatever its cookie says', async () => {
    const sid = randomUUID();
    expect(await sessionState({ sid, authTime: now() - 3_590 }, revocations, 3_600)).toBe('active');
    expect(await sessionState({ sid, authTime: now() - 3_601 }, revocations, 3_600)).toBe('ended');
    expect(await sessionState({ sid }, revocations, 3_600)).toBe('ended');
  });
});
