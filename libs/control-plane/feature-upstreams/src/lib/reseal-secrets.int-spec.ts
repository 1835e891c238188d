import { openJson, parseKeyring, sealJson, upstreamSecretContext } from '@portcullis/auth/secrets';
import { createSystemPrismaClient } from '@portcullis/data/db';
import { newId } from '@portcullis/shared/util-ids';
import { createTestTenant, testContext } from '@portcullis/shared/util-testing';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { resealUpstreamSecrets } from './reseal-secrets';

const system = createSystemPrismaClient({ url: testContext().systemDatabaseUrl });
afterAll(async () => {
  await system.$disconnect();
});

const key = (id: string) => `${id}:${randomBytes(32).toString('base64')}`;

describe('resealUpstreamSecrets (real Postgres, system role)', () => {
  it('moves every upstream sealed under an old key to the active key, after which the old key can go', async () => {
    const tenant = await createTestTenant(system);
    const [old, next, lost] = [key(`old-${newId().slice(-6)}`), key(`new-${newId().slice(-6)}`), key(`lost-${newId().slice(-6)}`)];
    const oldRing = parseKeyring(old);
    const lostRing = parseKeyring(lost);
    const create = async (ring: typeof oldRing, values: { headers?: Record<string, string>; env?: Record<string, string> }) => {
      const id = newId();
      const sealed = (field: 'headers' | 'env') => {
        const value = values[field];
        return value === undefined ? null : new Uint8Array(sealJson(ring, value, upstreamSecretContext(tenant.id, id, field)).ciphertext);
      };
      await system.upstream.create({
        data: {
          id,
          tenantId: tenant.id,
          name: `up-${id.slice(-6)}`,
          toolPrefix: `p${id.slice(-6).replace(/-/g, '')}`,
          transport: 'streamable_http',
          url: 'https://example.test/mcp',
          headersCiphertext: sealed('headers'),
          envCiphertext: sealed('env'),
          encryptionKeyId: ring.activeKeyId,
          version: 3,
        },
      });
      return id;
    };
    const both = await create(oldRing, { headers: { Authorization: 'Bearer one' }, env: { TOKEN: 'two' } });
    const headersOnly = await create(oldRing, { headers: { 'X-Key': 'three' } });
    const orphan = await create(lostRing, { headers: { 'X-Key': 'four' } });

    // The operator puts the new key first (active) and keeps the old one until the reseal is done.
    const rotating = parseKeyring(`${next},${old}`);
    const dry = await resealUpstreamSecrets(system, rotating, { dryRun: true });
    expect(dry.resealed).toBeGreaterThanOrEqual(2);
    expect((await system.upstream.findUniqueOrThrow({ where: { id: both }, select: { encryptionKeyId: true } })).encryptionKeyId).toBe(oldRing.activeKeyId);

    const result = await resealUpstreamSecrets(system, rotating);
    expect(result.failed).toContainEqual({ upstreamId: orphan, tenantId: tenant.id, reason: `key ${lostRing.activeKeyId} is not in the keyring` });
    expect(JSON.stringify(result)).not.toMatch(/Bearer one|three|four/);

    // Opened with the new key alone, to the same values; the configuration version is unchanged.
    const newOnly = parseKeyring(next);
    const read = async (id: string, field: 'headers' | 'env') => {
      const row = await system.upstream.findUniqueOrThrow({ where: { id }, select: { headersCiphertext: true, envCiphertext: true, encryptionKeyId: true, version: true } });
      expect(row).toMatchObject({ encryptionKeyId: newOnly.activeKeyId, version: 3 });
      const stored = field === 'headers' ? row.headersCiphertext : row.envCiphertext;
      return stored === null ? null : openJson(newOnly, { keyId: newOnly.activeKeyId, ciphertext: Buffer.from(stored) }, upstreamSecretContext(tenant.id, id, field));
    };
    expect(await read(both, 'headers')).toEqual({ Authorization: 'Bearer one' });
    expect(await read(both, 'env')).toEqual({ TOKEN: 'two' });
    expect(await read(headersOnly, 'headers')).toEqual({ 'X-Key': 'three' });
    expect(await read(headersOnly, 'env')).toBeNull();
    expect((await system.upstream.findUniqueOrThrow({ where: { id: orphan }, select: { encryptionKeyId: true } })).encryptionKeyId).toBe(lostRing.activeKeyId);

    // Nothing left under the old key: a second run finds nothing of this tenant to do.
    const again = await resealUpstreamSecrets(system, rotating);
    expect(again.failed.filter((f) => f.tenantId === tenant.id).map((f) => f.upstreamId)).toEqual([orphan]);
  });
});
