/**
 * Review (audit-3): `recorded_at` is a stored field of every event, served by the audit API as `recordedAt` (when the
 * event reached the trail: what tells an auditor an event was stored hours after it occurred, e.g. replayed from a
 * spool), but it is in neither the hash nor the anchor. A database owner can move it at will and `audit:verify`, with
 * signed anchors and the public key, still reports the trail intact. (The same holds for the microseconds of
 * `occurred_at`: the column keeps them, the API's cursor pages by them, the hash covers milliseconds only.)
 */
import { auditAnchorSigner, auditVerificationKeys } from '@portcullis/audit/chain';
import { createPrismaClient, createSystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext } from '@portcullis/shared/util-testing';
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { anchorAuditChains } from './audit-anchors';
import { PostgresAuditEventStore } from './postgres-audit-event.store';
import { asDatabaseOwner } from './tamper.testing';
import { sampleAuditEvent } from './testing';
import { verifyTenantChain } from './verify-tenant-chain';

const ctx = testContext();
const app = createPrismaClient({ url: ctx.databaseUrl });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
const store = new PostgresAuditEventStore(app);
afterAll(async () => {
  await Promise.all([app.$disconnect(), system.$disconnect()]);
});

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const signer = auditAnchorSigner(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
const keys = auditVerificationKeys(publicKey.export({ type: 'spki', format: 'pem' }) as string);

describe('audit-3: stored fields outside the hash', () => {
  it('an edited recorded_at is reported by verification (with signed anchors and the public key)', async () => {
    const tenant = await createTestTenant(system);
    await store.insert([1, 2, 3].map((i) => sampleAuditEvent(tenant.id, { arguments: { i } })));
    const { anchored } = await anchorAuditChains(system, signer, { tenantIds: [tenant.id] });
    expect(anchored).toHaveLength(1);
    expect(await verifyTenantChain(system, tenant.id, { keys })).toMatchObject({ ok: true, checked: 3 });

    // A database owner makes event 2 look as if it had reached the trail a day earlier than it did.
    const before = await asDatabaseOwner(ctx.adminDatabaseUrl, async (client) => {
      const { rows } = await client.query<{ recorded_at: Date }>('SELECT recorded_at FROM audit_events WHERE tenant_id = $1 AND seq = 2', [tenant.id]);
      await client.query(`UPDATE audit_events SET recorded_at = recorded_at - interval '1 day' WHERE tenant_id = $1 AND seq = 2`, [tenant.id]);
      return rows[0]?.recorded_at;
    });
    const after = await system.$queryRawUnsafe<{ recorded_at: Date }[]>('SELECT recorded_at FROM audit_events WHERE tenant_id = $1::uuid AND seq = 2', tenant.id);
    expect(after[0]?.recorded_at.getTime()).toBe((before as Date).getTime() - 86_400_000);

    const report = await verifyTenantChain(system, tenant.id, { keys });
    expect(report.ok).toBe(false);
  });
});
