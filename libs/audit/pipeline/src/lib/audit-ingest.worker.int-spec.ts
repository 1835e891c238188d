import { AuditBatcher, PostgresAuditEventStore, sampleAuditEvent, verifyTenantChain } from '@portcullis/audit/core';
import { encodeAuditEventBatchV2, type AuditEventV1 } from '@portcullis/contracts/jobs';
import { createPrismaClient, createSystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext } from '@portcullis/shared/util-testing';
import type { Job } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditIngestWorker } from './audit-ingest.worker';

const ctx = testContext();
const app = createPrismaClient({ url: ctx.databaseUrl });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
afterAll(async () => {
  await Promise.all([app.$disconnect(), system.$disconnect()]);
});

const settings = {
  connection: {},
  prefix: 'audit-ingest-int',
  concurrency: 1,
  maxAttempts: 3,
  retryBaseMs: 1_000,
  lockDurationMs: 30_000,
  stalledIntervalMs: 30_000,
};

describe('AuditIngestWorker, against Postgres', () => {
  it('stores arguments under an own __proto__ key as the upstream received them, and the chain verifies', async () => {
    // An agent could keep arguments out of the trail under `__proto__`: the gateway parses the body with JSON.parse (an
    // own key), forwards it to the upstream as it came and keeps the key in its event, but the worker validated events
    // with `z.json()`, which rebuilds objects by assignment: the key was dropped from the stored (and hashed) row.
    const tenant = await createTestTenant(system);
    // The tools/call params as the gateway parsed them from the agent's body (and forwarded them to the upstream).
    const params = JSON.parse('{"name":"ks__exec","arguments":{"message":"hello","__proto__":{"command":"rm -rf /srv/data"}}}') as {
      arguments: Record<string, unknown>;
    };
    expect(Object.keys(params.arguments)).toEqual(['message', '__proto__']);
    const event: AuditEventV1 = sampleAuditEvent(tenant.id, { arguments: { arguments: params.arguments } as AuditEventV1['arguments'] });
    // The job as BullMQ hands it to the worker: the emitter's v2 payload through JSON.
    const data: unknown = JSON.parse(JSON.stringify(encodeAuditEventBatchV2([event])));
    expect(JSON.stringify(data)).toContain('rm -rf /srv/data');

    const batcher = new AuditBatcher({ store: new PostgresAuditEventStore(app), maxBatch: 100, lingerMs: 1 });
    const worker = new AuditIngestWorker(batcher, settings);
    const job = { id: 'job-1', name: 'audit.events.ingest', data, attemptsStarted: 1, timestamp: Date.now() } as unknown as Job;
    await worker.process(job, 'token');

    const rows = await system.$queryRawUnsafe<{ args: string }[]>(
      'SELECT arguments::text AS args FROM audit_events WHERE tenant_id = $1::uuid',
      tenant.id,
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]?.args).toContain('rm -rf /srv/data');
    expect(JSON.parse(rows[0]?.args ?? 'null')).toEqual(JSON.parse(JSON.stringify(event.arguments)));
    // The hash was taken over what was stored: read back (with the key), the chain verifies.
    expect(await verifyTenantChain(system, tenant.id)).toMatchObject({ ok: true, checked: 1 });
    expect(Object.prototype).not.toHaveProperty('command');
  });
});
