import { AUDIT_DLQ, AUDIT_TASKS_QUEUE, sampleAuditEvent, verifyTenantChain } from '@portcullis/audit/core';
import { QUEUES, type AuditEventV1 } from '@portcullis/contracts/jobs';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import {
  createAuditEmitter,
  createAuditQueueProducer,
  type AuditEmitter,
} from '@portcullis/gateway/audit-emitter';
import { createTestTenant, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { Queue } from 'bullmq';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort, startBuiltApp, waitForReady, type AppProcess } from '../support/app-process';
import { privateRedis, type PrivateRedis } from './support/private-redis';

// Fault tests of the whole audit path: emitter -> BullMQ (Redis) -> the built audit-worker process -> Postgres.
// Each sends N events at a steady rate, breaks something in the middle, repairs it, and then proves every event
// was stored exactly once (count and ids compared) with an intact chain. Bounded: N events, 60 s per wait.
const N = 2_000;
const BURST = 25; // events per tick
const TICK_MS = 5; // => ~5,000 events/s offered, about 0.4 s of sending plus the pause around the fault

let db: SystemPrismaClient;
const spoolDirs: string[] = [];
const logger = {
  info: () => undefined,
  warn: () => undefined,
  error: (o: object, m: string) => console.error(m, o),
};

beforeAll(() => {
  db = createSystemPrismaClient({ url: inject('systemDatabaseUrl') });
});
afterAll(async () => {
  await db?.$disconnect();
  spoolDirs.forEach((dir) => rmSync(dir, { recursive: true, force: true }));
});

function startWorker(redisUrl: string, prefix: string, port: number): AppProcess {
  return startBuiltApp('audit-worker', {
    DATABASE_URL: inject('databaseUrl'),
    REDIS_URL: redisUrl,
    AUDIT_WORKER_HEALTH_PORT: String(port),
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: 'error',
    // A killed worker's jobs are handed out again after ~2 s instead of 30 s.
    AUDIT_LOCK_DURATION_MS: '2000',
    AUDIT_STALLED_INTERVAL_MS: '1000',
    AUDIT_RETRY_BASE_MS: '100',
  });
}

function emitterFor(redisUrl: string, prefix: string, jobFormat: 'batch' | 'event' = 'batch') {
  const producer = createAuditQueueProducer({ redisUrl, prefix, connectionName: 'e2e-emitter' });
  const spoolDir = mkdtempSync(path.join(os.tmpdir(), 'audit-spool-e2e-'));
  spoolDirs.push(spoolDir);
  const emitter = createAuditEmitter({
    producer,
    maxBuffer: 5_000,
    flushEveryMs: 10,
    batchSize: 200,
    spoolDir,
    spoolMaxBytes: 64 * 1024 * 1024,
    logger,
    sendTimeoutMs: 500,
    probeEveryMs: 250,
    jobFormat,
  });
  return { emitter, producer };
}

/** Emits `events` at a steady rate; `onProgress(sent)` runs between bursts (the test injects its fault there). */
async function sendSteadily(
  emitter: AuditEmitter,
  events: AuditEventV1[],
  onProgress: (sent: number) => Promise<void>,
) {
  for (let i = 0; i < events.length; i += BURST) {
    for (const e of events.slice(i, i + BURST)) expect(emitter.emit(e)).not.toBe('dropped');
    await onProgress(Math.min(i + BURST, events.length));
    await new Promise((resolve) => setTimeout(resolve, TICK_MS));
  }
}

/** Removes every key this test created under its prefix on the shared Redis. */
async function obliterate(redisUrl: string, prefix: string): Promise<void> {
  for (const name of [QUEUES.audit, AUDIT_DLQ, AUDIT_TASKS_QUEUE]) {
    const queue = new Queue(name, { connection: { url: redisUrl }, prefix });
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  }
}

const storedCount = (tenant: TestTenant) => db.auditEvent.count({ where: { tenantId: tenant.id } });

async function expectExactlyOnce(tenant: TestTenant, events: AuditEventV1[]): Promise<void> {
  await waitFor(async () => (await storedCount(tenant)) >= events.length, {
    timeoutMs: 60_000,
    intervalMs: 250,
    description: `${events.length} events stored`,
  });
  // Give a late duplicate the chance to show up before counting.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const rows = await db.auditEvent.findMany({
    where: { tenantId: tenant.id },
    select: { id: true },
    orderBy: { seq: 'asc' },
  });
  expect(rows).toHaveLength(events.length);
  expect(new Set(rows.map((r) => r.id))).toEqual(new Set(events.map((e) => e.eventId)));
  const report = await verifyTenantChain(db, tenant.id);
  expect(report).toMatchObject({ ok: true, checked: events.length, lastSeq: String(events.length) });
}

describe('audit pipeline under faults (built worker, real Postgres)', () => {
  it('stores every event exactly once when the worker is SIGKILLed mid-load and restarted', async () => {
    const tenant = await createTestTenant(db);
    const prefix = `e2e-kill-${randomBytes(4).toString('hex')}`;
    const port = await freePort();
    const redisUrl = inject('redisUrl');
    const events = Array.from({ length: N }, () => sampleAuditEvent(tenant.id));
    // Left in the queue by the previous version (one job per event) when the new worker starts: consumed too.
    const legacy = emitterFor(redisUrl, prefix, 'event');
    const old = events.slice(0, N / 4);
    for (const e of old) legacy.emitter.emit(e);
    await legacy.emitter.close();
    await legacy.producer.close();
    expect(legacy.emitter.stats()).toMatchObject({ sent: old.length, jobs: old.length });
    let worker = startWorker(redisUrl, prefix, port);
    await waitForReady(`http://127.0.0.1:${port}/readyz`, worker);
    const { emitter, producer } = emitterFor(redisUrl, prefix);
    const fresh = events.slice(N / 4);
    let killedAt = -1;
    try {
      await sendSteadily(emitter, fresh, async (sent) => {
        if (killedAt >= 0 || sent < fresh.length / 2) return;
        // Mid-way, and only once the worker is demonstrably writing.
        await waitFor(async () => (await storedCount(tenant)) > 0, {
          timeoutMs: 20_000,
          description: 'first rows',
        });
        killedAt = await storedCount(tenant);
        worker.child.kill('SIGKILL');
        await new Promise((resolve) => worker.child.once('exit', resolve));
        worker = startWorker(redisUrl, prefix, port);
        await waitForReady(`http://127.0.0.1:${port}/readyz`, worker);
      });
      await emitter.close();
      expect(killedAt).toBeGreaterThan(0);
      expect(killedAt).toBeLessThan(N);
      const stats = emitter.stats();
      expect(stats.dropped).toBe(0);
      // A send slower than its timeout on a busy machine is spooled and replayed: sent + replayed covers them all.
      expect(stats.sent + stats.replayed).toBeGreaterThanOrEqual(fresh.length);
      // Batch jobs: many events per job (one per flush of up to 200).
      expect(stats.jobs).toBeLessThan(fresh.length / 5);
      await expectExactlyOnce(tenant, events);
    } finally {
      await emitter.close();
      await producer.close();
      await worker.stop();
      await obliterate(redisUrl, prefix);
    }
  });

  it('stores every event exactly once through a Redis outage (emitter spools, replays on return)', async () => {
    const tenant = await createTestTenant(db);
    // A Redis of this test's own, persistent like production (AOF, fsync always), killed and restarted on its port.
    const redis: PrivateRedis = await privateRedis(await freePort(), { persistent: true });
    await redis.start();
    const prefix = 'e2e-outage';
    const port = await freePort();
    const worker = startWorker(redis.url, prefix, port);
    const { emitter, producer } = emitterFor(redis.url, prefix);
    const events = Array.from({ length: N }, () => sampleAuditEvent(tenant.id));
    let outage = false;
    let restarted = false;
    try {
      await waitForReady(`http://127.0.0.1:${port}/readyz`, worker);
      await sendSteadily(emitter, events, async (sent) => {
        if (!outage && sent >= N / 4) {
          outage = true;
          await redis.kill();
        }
        if (outage && !restarted && sent >= (3 * N) / 4) {
          restarted = true;
          // The emitter notices the outage from a send that times out (500 ms) or a failed probe: on a loaded machine
          // that can come after the half of the events sent meanwhile, so it is waited for (bounded), not assumed.
          await waitFor(() => emitter.stats().redis === 'down', { timeoutMs: 10_000, description: 'the emitter to notice the outage' });
          await redis.start();
        }
      });
      expect(outage).toBe(true);
      await waitFor(() => emitter.stats().spoolBytes === 0 && emitter.stats().buffered === 0, {
        timeoutMs: 30_000,
        description: 'spool replayed',
      });
      const stats = emitter.stats();
      expect(stats.dropped).toBe(0);
      expect(stats.jobs).toBeLessThan(N / 5); // batch jobs, spooled ones replayed as batches too
      expect(stats.spooled).toBeGreaterThan(0);
      expect(stats.replayed).toBe(stats.spooled);
      await expectExactlyOnce(tenant, events);
    } finally {
      await emitter.close();
      await producer.close();
      await worker.stop();
      await redis.dispose();
    }
  });
});
