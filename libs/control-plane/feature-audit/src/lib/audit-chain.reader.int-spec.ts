import { auditAnchorSigner, auditVerificationKeys } from '@portcullis/audit/chain';
import { anchorAuditChains, PostgresAuditEventStore, runRetention, sampleAuditEvent } from '@portcullis/audit/core';
import { createPrismaClient, createSystemPrismaClient, type PortcullisPrismaClient } from '@portcullis/data/db';
import { tenantId as toTenantId } from '@portcullis/shared/util-ids';
import { createTestTenant, testContext } from '@portcullis/shared/util-testing';
import { generateKeyPairSync } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { verifyTenantChainScoped } from './audit-chain.reader';

const ctx = testContext();
const db = createPrismaClient({ url: ctx.databaseUrl });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
const store = new PostgresAuditEventStore(db);
afterAll(async () => {
  await Promise.all([db.$disconnect(), system.$disconnect()]);
});

/**
 * The application client, except that `beforePage` runs before each query of audit_events made inside a transaction
 * (the verifier's pages): what another process does between the verifier's own queries.
 */
function interleaved(beforePage: () => Promise<void>): PortcullisPrismaClient {
  return new Proxy(db, {
    get(target, property, receiver) {
      if (property !== '$transaction') return Reflect.get(target, property, receiver);
      return (fn: (tx: unknown) => Promise<unknown>, options?: unknown) =>
        target.$transaction(
          (tx) =>
            fn(
              new Proxy(tx, {
                get(inner, name, innerReceiver) {
                  if (name !== '$queryRawUnsafe') return Reflect.get(inner, name, innerReceiver);
                  return async (sql: string, ...params: unknown[]) => {
                    if (sql.includes('FROM audit_events') && !sql.includes('SELECT hash') && !sql.includes('audit_chain_heads')) await beforePage();
                    return inner.$queryRawUnsafe(sql, ...params);
                  };
                },
              }),
            ),
          options as never,
        );
    },
  });
}

describe('verifyTenantChainScoped (application role)', () => {
  it('starts again from the new checkpoint when retention deletes the chain’s first rows during the walk', async () => {
    const tenant = await createTestTenant(system);
    await system.tenant.update({ where: { id: tenant.id }, data: { settings: { audit: { retentionDays: 30 } } } });
    const now = new Date('2026-11-22T12:00:00Z');
    const daysAgo = (days: number) => new Date(now.getTime() - days * 86_400_000).toISOString();
    await store.insert([60, 50, 40, 5, 2].map((days) => sampleAuditEvent(tenant.id, { occurredAt: daysAgo(days) })));
    let retentionRan = false;
    const pruning = interleaved(async () => {
      if (retentionRan) return;
      retentionRan = true;
      await runRetention(system, { now });
    });
    expect(await verifyTenantChainScoped(pruning, toTenantId(tenant.id))).toMatchObject({ ok: true, complete: true, checked: 2, fromSeq: '3', lastSeq: '5' });
    expect(retentionRan).toBe(true);
  });

  it('still reports rows deleted from the middle, however often it looks again', async () => {
    const tenant = await createTestTenant(system);
    await store.insert(Array.from({ length: 5 }, () => sampleAuditEvent(tenant.id)));
    // Leading rows pruned the legitimate way would move the checkpoint; a row removed behind its back does not.
    const owner = new pg.Client({ connectionString: ctx.adminDatabaseUrl });
    await owner.connect();
    try {
      // As the database owner with the append-only trigger off for this transaction: what an attacker with the keys does.
      await owner.query('BEGIN');
      await owner.query('SET LOCAL session_replication_role = replica');
      await owner.query('DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 3', [tenant.id]);
      await owner.query('COMMIT');
    } finally {
      await owner.end();
    }
    let pages = 0;
    const counting = interleaved(async () => {
      pages += 1;
    });
    expect(await verifyTenantChainScoped(counting, toTenantId(tenant.id), { pageSize: 2 })).toMatchObject({ ok: false, brokenAt: { seq: '4', problem: 'seq_gap' } });
    // One walk: no restart, since the checkpoint did not move.
    expect(pages).toBe(2);
  });
});

describe('verification from afterSeq at or before the retention checkpoint', () => {
  it('checks the checkpoint against the signed anchors as a walk without afterSeq does (found by review)', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const signer = auditAnchorSigner(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    const keys = auditVerificationKeys(publicKey.export({ type: 'spki', format: 'pem' }).toString());
    const tenant = await createTestTenant(system);
    await store.insert(Array.from({ length: 10 }, () => sampleAuditEvent(tenant.id)));
    await anchorAuditChains(system, signer, { tenantIds: [tenant.id] });
    await store.insert([sampleAuditEvent(tenant.id), sampleAuditEvent(tenant.id)]);
    await anchorAuditChains(system, signer, { tenantIds: [tenant.id] });
    // The checkpoint moved past the anchors and the events before it deleted, by someone other than retention.
    await system.$executeRawUnsafe(
      `UPDATE audit_chain_heads SET pruned_through_seq = 11, pruned_through_hash = (SELECT hash FROM audit_events WHERE tenant_id = $1::uuid AND seq = 11), pruned_at = now() WHERE tenant_id = $1::uuid`,
      tenant.id,
    );
    await system.$executeRawUnsafe('DELETE FROM audit_events WHERE tenant_id = $1::uuid AND seq <= 11', tenant.id);
    const id = toTenantId(tenant.id);
    const forged = { ok: false, brokenAt: { problem: 'checkpoint_mismatch' } };
    expect(await verifyTenantChainScoped(db, id, { keys })).toMatchObject(forged);
    // afterSeq=0 (or the checkpoint's own seq) walks from the checkpoint too.
    expect(await verifyTenantChainScoped(db, id, { keys, afterSeq: 0n })).toMatchObject(forged);
    expect(await verifyTenantChainScoped(db, id, { keys, afterSeq: 11n })).toMatchObject(forged);
  });
});
