import { newId } from '@portcullis/shared/util-ids';
import { describe, expect, it } from 'vitest';
import { AccessTokenError, issueAccessToken, verifyAccessToken, type AccessTokenSettings } from './access-token';

const settings: AccessTokenSettings = {
  secret: 'unit-test-secret-unit-test-secret-unit-test',
  issuer: 'portcullis',
  audience: 'portcullis-control-plane',
  ttlSeconds: 900,
  clockToleranceSeconds: 5,
};

describe('access tokens', () => {
  it('round-trips a user id and caps the lifetime at 15 minutes', async () => {
    const userId = newId();
    const { token, expiresAt } = await issueAccessToken({ ...settings, ttlSeconds: 3_600 }, { userId });
    expect(expiresAt.getTime() - Date.now()).toBeLessThanOrEqual(900_000);
    expect((await verifyAccessToken(settings, token)).userId).toBe(userId);
  });

  it('reports expiry distinctly and everything else as invalid', async () => {
    const old = await issueAccessToken(settings, { userId: newId() }, new Date(Date.now() - 20 * 60_000));
    await expect(verifyAccessToken(settings, old.token)).rejects.toMatchObject({ reason: 'expired' });
    const other = await issueAccessToken({ ...settings, issuer: 'someone-else' }, { userId: newId() });
    await expect(verifyAccessToken(settings, other.token)).rejects.toBeInstanceOf(AccessTokenError);
    await expect(verifyAccessToken(settings, other.token)).rejects.toMatchObject({ reason: 'invalid' });
  });

  it('tolerates small clock skew only', async () => {
    const now = Date.now();
    const justExpired = await issueAccessToken({ ...settings, ttlSeconds: 60 }, { userId: newId() }, new Date(now - 62_000));
    await expect(verifyAccessToken(settings, justExpired.token)).resolves.toBeDefined();
    const longExpired = await issueAccessToken({ ...settings, ttlSeconds: 60 }, { userId: newId() }, new Date(now - 70_000));
    await expect(verifyAccessToken(settings, longExpired.token)).rejects.toMatchObject({ reason: 'expired' });
  });
});
