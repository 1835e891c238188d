import { randomBytes } from 'node:crypto';
import { Test } from '@nestjs/testing';
import pg from 'pg';
import type { PortcullisPrismaClient } from '@portcullis/data/db';
import { testContext } from '@portcullis/shared/util-testing';
import { describe, expect, it } from 'vitest';
import { DbModule, PRISMA_CLIENT } from './db.module';
import { databaseReadinessCheck } from './readiness';

describe('DbModule', () => {
  it('provides a connected client, reports ready, and disconnects on shutdown', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [DbModule.forRoot({ url: testContext().databaseUrl, poolMax: 1 })],
    }).compile();
    const client = moduleRef.get<PortcullisPrismaClient>(PRISMA_CLIENT);
    await expect(databaseReadinessCheck(client).check()).resolves.toBeUndefined();
    await moduleRef.close();
  });

  it('fails the readiness check when the database is unreachable', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [DbModule.forRoot({ url: 'postgresql://portcullis_app@127.0.0.1:1/none', poolMax: 1 })],
    }).compile();
    await expect(databaseReadinessCheck(moduleRef.get(PRISMA_CLIENT)).check()).rejects.toThrow();
    await moduleRef.close();
  });

  it('keeps the app not ready while the client connects as a role that bypasses row-level security', async () => {
    for (const url of [testContext().adminDatabaseUrl, testContext().systemDatabaseUrl]) {
      const moduleRef = await Test.createTestingModule({ imports: [DbModule.forRoot({ url, poolMax: 1 })] }).compile();
      const check = databaseReadinessCheck(moduleRef.get(PRISMA_CLIENT));
      await expect(check.check()).rejects.toThrow(/row-level security/);
      // Not once: every check asks again until the role is fixed.
      await expect(check.check()).rejects.toThrow(/row-level security/);
      await moduleRef.close();
    }
  });

  it('turns not ready when the role is given BYPASSRLS while the app runs', async () => {
    const role = `rls_probe_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: testContext().adminDatabaseUrl });
    await admin.connect();
    await admin.query(`CREATE ROLE ${role} LOGIN`);
    const moduleRef = await Test.createTestingModule({
      imports: [DbModule.forRoot({ url: asRole(testContext().adminDatabaseUrl, role), poolMax: 1 })],
    }).compile();
    try {
      const check = databaseReadinessCheck(moduleRef.get(PRISMA_CLIENT));
      await expect(check.check()).resolves.toBeUndefined();
      await admin.query(`ALTER ROLE ${role} BYPASSRLS`);
      await expect(check.check()).rejects.toThrow(/row-level security/);
      await admin.query(`ALTER ROLE ${role} NOBYPASSRLS`);
      await expect(check.check()).resolves.toBeUndefined();
    } finally {
      await moduleRef.close();
      await admin.query(`DROP ROLE ${role}`);
      await admin.end();
    }
  });
});

function asRole(url: string, role: string): string {
  const parsed = new URL(url);
  parsed.username = role;
  parsed.password = '';
  return parsed.toString();
}
