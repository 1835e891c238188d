import { createRedisClient } from '@portcullis/data/redis';
import { verifyChain, type StoredChainLink } from '@portcullis/audit/chain';
import {
  AUDIT_DLQ,
  AUDIT_TASKS_QUEUE,
  PostgresAuditEventStore,
  requestAuditExport,
  runAuditCli,
  sampleAuditEvent,
  verifyExportFile,
} from '@portcullis/audit/core';
import { createPrismaClient } from '@portcullis/data/db';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { auditBatchJobId, encodeAuditEventBatchV2, jobIdFor, QUEUES, type AuditEventV1, type JobPayload } from '@portcullis/contracts/jobs';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { newId } from '@portcullis/shared/util-ids';
import { createTestTenant, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { Queue } from 'bullmq';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort, startBuiltApp, waitForExit, waitForReady, type AppProcess } from '../support/app-process';

// The real path: a BullMQ producer -> Redis -> the built audit-worker process -> Postgres (as the
// row-level-security role), then the stored chain is verified from the rows.
const prefix = `e2e-${randomBytes(4).toString('hex')}`;
let worker: AppProcess;
let healthPort: number;
let queue: Queue;
let db: SystemPrismaClient;
let tenant: TestTenant;
let retained: TestTenant;
const exportDir = mkdtempSync(path.join(os.tmpdir(), 'audit-exports-e2e-'));
/** The worker's signing key pair, made with the operator's command (`npm run audit:keygen`). */
const keyPrefix = path.join(exportDir, 'signing');

function event(overrides: Partial<JobPayload<'audit.event.ingest'>> = {}): JobPayload<'audit.event.ingest'> {
  return {
    v: 1,
    eventId: newId(),
    tenantId: tenant.id,
    occurredAt: new Date().toISOString(),
    kind: 'mcp',
    method: 'tools/call',
    actorUserId: null,
    agentClientId: null,
    apiKeyId: null,
    mcpSessionId: 'session-e2e',
    upstreamId: null,
    tool: 'tickets__create_ticket',
    targetType: null,
    targetId: null,
    decision: 'allow',
    reason: 'rule r1 allows',
    snapshotVersion: 1,
    approvalId: null,
    latencyMs: 12,
    outcome: 'ok',
    errorCode: null,
    arguments: { title: 'printer on fire' },
    traceId: null,
    traceparent: null,
    ...overrides,
  };
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: inject('systemDatabaseUrl') });
  tenant = await createTestTenant(db);
  // A tenant keeping 30 days, with 5 events older than that and 3 recent ones, before the worker starts: its
  // retention schedule runs once at start.
  retained = await createTestTenant(db);
  await db.tenant.update({
    where: { id: retained.id },
    data: { settings: { audit: { retentionDays: 30 } } },
  });
  const app = createPrismaClient({ url: inject('databaseUrl') });
  const old = new Date(Date.now() - 40 * 86_400_000).toISOString();
  await new PostgresAuditEventStore(app).insert([
    ...Array.from({ length: 5 }, () => sampleAuditEvent(retained.id, { occurredAt: old })),
    ...Array.from({ length: 3 }, () => sampleAuditEvent(retained.id)),
  ]);
  await app.$disconnect();
  const made = await runAuditCli(['keygen', '--out', keyPrefix], {}, { out: () => undefined, err: (line) => console.error(line) });
  if (made !== 0) throw new Error('audit keygen failed');
  const port = await freePort();
  healthPort = port;
  worker = startBuiltApp('audit-worker', {
    DATABASE_URL: inject('databaseUrl'),
    REDIS_URL: inject('redisUrl'),
    AUDIT_WORKER_HEALTH_PORT: String(port),
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: 'warn',
    DATABASE_SYSTEM_URL: inject('systemDatabaseUrl'),
    AUDIT_EXPORT_DIR: exportDir,
    AUDIT_MAX_ATTEMPTS: '3',
    AUDIT_RETRY_BASE_MS: '50',
    AUDIT_OUTBOX_EVERY_MS: '200',
    AUDIT_OUTBOX_GRACE_MS: '1000',
    AUDIT_SIGNING_KEY_FILE: `${keyPrefix}.key`,
    AUDIT_ANCHOR_EVERY_MS: '200',
  });
  await waitForReady(`http://127.0.0.1:${port}/readyz`, worker);
  queue = new Queue(QUEUES.audit, { connection: { url: inject('redisUrl') }, prefix });
});

afterAll(async () => {
  await worker?.stop();
  await queue?.obliterate({ force: true }).catch(() => undefined);
  await queue?.close();
  const dlq = new Queue(AUDIT_DLQ, { connection: { url: inject('redisUrl') }, prefix });
  await dlq.obliterate({ force: true }).catch(() => undefined);
  await dlq.close();
  const tasks = new Queue(AUDIT_TASKS_QUEUE, { connection: { url: inject('redisUrl') }, prefix });
  await tasks.obliterate({ force: true }).catch(() => undefined);
  await tasks.close();
  rmSync(exportDir, { recursive: true, force: true });
  await db?.$disconnect();
});

describe('audit worker (built process, real Redis and Postgres)', () => {
  it('stores every event once, chained, however often it is enqueued', async () => {
    const events = Array.from({ length: 20 }, (_, i) => event({ arguments: { n: i } }));
    for (const e of events)
      await queue.add('audit.event.ingest', e, { jobId: jobIdFor('audit.event.ingest', e) });
    // The same events again (a retry or a spool replay): same job ids, so nothing new.
    for (const e of events.slice(0, 5))
      await queue.add('audit.event.ingest', e, { jobId: jobIdFor('audit.event.ingest', e) });

    const rows = await waitFor(
      async () => {
        const stored = await db.auditEvent.findMany({
          where: { tenantId: tenant.id },
          orderBy: { seq: 'asc' },
        });
        return stored.length >= events.length ? stored : undefined;
      },
      { timeoutMs: 20_000, description: 'all audit events stored' },
    );
    expect(rows).toHaveLength(events.length);
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(events.map((e) => e.eventId)));

    const links: StoredChainLink[] = rows.map((r) => ({
      id: r.id,
      tenantId: r.tenantId,
      seq: r.seq.toString(),
      occurredAt: r.occurredAt.toISOString(),
      kind: r.kind,
      method: r.method,
      actorUserId: r.actorUserId,
      agentClientId: r.agentClientId,
      apiKeyId: r.apiKeyId,
      mcpSessionId: r.mcpSessionId,
      upstreamId: r.upstreamId,
      tool: r.tool,
      targetType: r.targetType,
      targetId: r.targetId,
      decision: r.decision,
      reason: r.reason,
      snapshotVersion: r.snapshotVersion,
      approvalId: r.approvalId,
      latencyMs: r.latencyMs,
      arguments: r.arguments,
      outcome: r.outcome,
      errorCode: r.errorCode,
      traceId: r.traceId,
      recordedAt: r.recordedAt.toISOString(),
      hashVersion: r.hashVersion as 1 | 2,
      prevHash: r.prevHash,
      hash: r.hash,
    }));
    expect(rows.every((r) => r.hashVersion === 2)).toBe(true);
    expect(verifyChain(links)).toMatchObject({ ok: true, checked: events.length });
  });

  it('stores batch jobs and single-event jobs side by side, each event once, one chain', async () => {
    const other = await createTestTenant(db);
    const batch = Array.from({ length: 40 }, (_, i) => event({ tenantId: other.id, arguments: { n: i } }));
    const single = Array.from({ length: 5 }, () => event({ tenantId: other.id }));
    const add = (events: typeof batch) =>
      queue.add('audit.events.ingest', { v: 1, events }, { jobId: jobIdFor('audit.events.ingest', { v: 1, events }) });
    await add(batch.slice(0, 20));
    await add(batch.slice(20));
    // A job enqueued the old way (before the upgrade, or by the control plane).
    for (const e of single) await queue.add('audit.event.ingest', e, { jobId: jobIdFor('audit.event.ingest', e) });
    // The same batch again (same id: no new job), and the same events cut differently (a new job: stored nothing).
    await add(batch.slice(0, 20));
    await add([...batch.slice(10, 30), ...single.slice(0, 2)]);
    const ids = await waitFor(
      async () => {
        const rows = await db.auditEvent.findMany({
          where: { tenantId: other.id },
          select: { id: true },
          orderBy: { seq: 'asc' },
        });
        return rows.length >= 45 ? rows.map((r) => r.id) : undefined;
      },
      { timeoutMs: 20_000, description: 'batch and single events stored' },
    );
    await new Promise((resolve) => setTimeout(resolve, 500)); // a late duplicate would show up by now
    expect(await db.auditEvent.count({ where: { tenantId: other.id } })).toBe(45);
    expect(new Set(ids)).toEqual(new Set([...batch, ...single].map((e) => e.eventId)));
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    const env = { DATABASE_SYSTEM_URL: inject('systemDatabaseUrl') };
    expect(await runAuditCli(['verify', '--tenant', other.slug], env, io)).toBe(0);
    expect(lines.join('\n')).toContain(`OK ${other.slug}: 45 event(s)`);
  });

  it('stores the rest of a (v2) batch at once, retries and dead-letters only its bad events, and replays them', async () => {
    const missingTenant = newId();
    const good = Array.from({ length: 6 }, () => event());
    const poison = event({ tenantId: missingTenant }); // foreign key: fails until the tenant exists
    const invalid = { ...event(), decision: 'maybe' }; // never valid
    const events = [good[0], good[1], poison, good[2], invalid, good[3], good[4], good[5]];
    const jobId = auditBatchJobId(events.map((e) => e?.eventId ?? ''));
    // Payload v2 (rows), as the gateway sends it: the retry narrows it to the missing events, kept as v1 objects.
    await queue.add('audit.events.ingest', encodeAuditEventBatchV2(events as AuditEventV1[]), { jobId });

    // The good events do not wait for the bad ones' retries.
    await waitFor(
      async () =>
        (await db.auditEvent.count({ where: { id: { in: good.map((e) => e.eventId) } } })) === good.length,
      { timeoutMs: 10_000, description: 'good events of the batch stored' },
    );

    const lines: string[] = [];
    const io = { out: (line: string) => lines.push(line), err: (line: string) => lines.push(line) };
    const env = { REDIS_URL: inject('redisUrl'), QUEUE_PREFIX: prefix };
    await waitFor(
      async () => {
        lines.length = 0;
        await runAuditCli(['dlq', 'list', '--json'], env, io);
        return lines.some((line) => line.includes(jobId));
      },
      { timeoutMs: 15_000, description: 'rest of the batch dead-lettered' },
    );
    const entry = JSON.parse(lines.find((line) => line.includes(jobId)) ?? '{}');
    expect(entry).toMatchObject({
      jobName: 'audit.events.ingest',
      jobId,
      dlqJobId: `dead-${jobId}`,
      attempts: 3,
      payload: { v: 1, events: [poison, invalid] },
      eventErrors: [
        { eventId: poison.eventId, error: expect.stringMatching(/foreign key/i) },
        { eventId: invalid.eventId, error: expect.stringContaining('invalid event: decision') },
      ],
    });
    expect(entry.error).toMatch(/^2 of 2 event\(s\) not stored/); // the job was narrowed to them after attempt 1

    // Fixed cause, replay: the poison event is stored, the invalid one stays in the DLQ (reported, exit 1).
    await db.tenant.create({ data: { id: missingTenant, slug: `late-${missingTenant.slice(-8)}`, name: 'late' } });
    lines.length = 0;
    expect(await runAuditCli(['dlq', 'replay', '--id', jobId], env, io)).toBe(1);
    expect(lines.join('\n')).toContain('replayed 1 job(s)');
    expect(lines.join('\n')).toContain('1 invalid event(s) left in the DLQ');
    const row = await waitFor(() => db.auditEvent.findFirst({ where: { id: poison.eventId } }), {
      timeoutMs: 15_000,
      description: 'replayed event stored',
    });
    expect(row.seq).toBe(1n);
    lines.length = 0;
    await runAuditCli(['dlq', 'list', '--json'], env, io);
    const left = JSON.parse(lines.find((line) => line.includes(jobId)) ?? '{}');
    expect(left.payload).toEqual({ v: 1, events: [invalid] });
    expect(left.eventErrors).toHaveLength(1);
  });

  it('fails a malformed job for good (no retry loop) and keeps running', async () => {
    const job = await queue.add('audit.event.ingest', { v: 1, tenantId: 'not-a-uuid' }, { attempts: 5 });
    const state = await waitFor(
      async () => {
        const current = await job.getState();
        return current === 'failed' ? current : undefined;
      },
      { timeoutMs: 10_000, description: 'malformed job failed' },
    );
    expect(state).toBe('failed');
    const failed = await queue.getJob(job.id ?? '');
    expect(failed?.attemptsMade).toBe(1);
    expect(worker.child.exitCode).toBeNull();
  });

  it('dead-letters a job BullMQ failed without running it (stalled too often), so its events can be replayed', async () => {
    const env = { REDIS_URL: inject('redisUrl'), QUEUE_PREFIX: prefix };
    const io = { out: () => undefined, err: () => undefined };
    const lost = event();
    const job = await queue.add('audit.event.ingest', lost, { jobId: `audit-${lost.eventId}`, delay: 1_500 });
    // What BullMQ's stalled-jobs check writes on a job whose workers died under it more than maxStalledCount times.
    const redis = createRedisClient({ url: inject('redisUrl'), connectionName: 'e2e-stalled' });
    await redis.hset(`${prefix}:${QUEUES.audit}:${job.id}`, 'defa', 'job stalled more than allowable limit');
    redis.disconnect();
    const entry = await waitFor(
      async () => {
        const lines: string[] = [];
        await runAuditCli(['dlq', 'list', '--json'], env, { out: (l) => lines.push(l), err: (l) => lines.push(l) });
        // One JSON line per entry.
        const entries = lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { dlqJobId: string; jobId: string | null; error: string });
        return entries.find((e) => e.jobId === job.id);
      },
      { timeoutMs: 15_000, description: 'the stalled-out job in the DLQ' },
    );
    expect(entry.error).toBe('job stalled more than allowable limit');
    expect(await runAuditCli(['dlq', 'replay', '--id', entry.dlqJobId], env, io)).toBe(0);
    await waitFor(async () => ((await db.auditEvent.count({ where: { id: lost.eventId } })) === 1 ? true : undefined), {
      timeoutMs: 15_000,
      description: 'the replayed event stored',
    });
  });

  it('retries an event that keeps failing with backoff, dead-letters it, and replays it from the CLI once fixable', async () => {
    // An event for a tenant that does not exist (yet): every insert fails on the foreign key.
    const missingTenant = newId();
    const dead = event({ tenantId: missingTenant });
    await queue.add('audit.event.ingest', dead, { jobId: jobIdFor('audit.event.ingest', dead) });

    const lines: string[] = [];
    const io = { out: (line: string) => lines.push(line), err: (line: string) => lines.push(line) };
    const env = { REDIS_URL: inject('redisUrl'), QUEUE_PREFIX: prefix };
    await waitFor(
      async () => {
        lines.length = 0;
        await runAuditCli(['dlq', 'list', '--json'], env, io);
        return lines.some((line) => line.includes(dead.eventId));
      },
      { timeoutMs: 15_000, description: 'event dead-lettered' },
    );
    const entry = JSON.parse(lines.find((line) => line.includes(dead.eventId)) ?? '{}');
    expect(entry).toMatchObject({
      jobId: `audit-${dead.eventId}`,
      attempts: 3,
      dlqJobId: `dead-audit-${dead.eventId}`,
    });
    expect(entry.error).toMatch(/foreign key|violates|Foreign/i);

    // The operator fixes the cause (here: the tenant now exists) and replays.
    await db.tenant.create({
      data: { id: missingTenant, slug: `late-${missingTenant.slice(-8)}`, name: 'late tenant' },
    });
    lines.length = 0;
    expect(await runAuditCli(['dlq', 'replay', '--id', entry.dlqJobId], env, io)).toBe(0);
    expect(lines.join('\n')).toContain('replayed 1 job(s)');
    const row = await waitFor(
      () => db.auditEvent.findFirst({ where: { tenantId: missingTenant, id: dead.eventId } }),
      {
        timeoutMs: 15_000,
        description: 'replayed event stored',
      },
    );
    expect(row.seq).toBe(1n);
    lines.length = 0;
    await runAuditCli(['dlq', 'list'], env, io);
    expect(lines.join('\n')).not.toContain(dead.eventId);
  });

  it('stores control-plane events left in the outbox (no Redis involved) and deletes their rows', async () => {
    const left = { ...event({ kind: 'control_plane', method: 'group.create', tool: null, decision: null, reason: null, mcpSessionId: null, latencyMs: null, targetType: 'group', targetId: newId() }), arguments: { before: null, after: { name: 'SRE' } } };
    // As a control plane that committed the change and then could not enqueue (or died) leaves it.
    await db.auditOutbox.create({ data: { id: left.eventId, tenantId: tenant.id, event: JSON.stringify(left), createdAt: new Date(Date.now() - 5_000) } });
    // The event commits in the store's own transaction, the row's delete a moment later in the drain's: wait for both.
    const stored = await waitFor(
      async () => ((await db.auditOutbox.count({ where: { id: left.eventId } })) === 0 ? db.auditEvent.findUnique({ where: { id: left.eventId } }) : null),
      { timeoutMs: 15_000, description: 'the outbox event stored and its row deleted' },
    );
    expect(stored).toMatchObject({ tenantId: tenant.id, kind: 'control_plane', method: 'group.create', targetId: left.targetId });
  });

  it('runs retention on its schedule: old events pruned, the rest verifies from the checkpoint', async () => {
    const head = await waitFor(
      async () => {
        const h = await db.auditChainHead.findUnique({ where: { tenantId: retained.id } });
        return h && h.prunedThroughSeq === 5n ? h : undefined;
      },
      { timeoutMs: 15_000, description: 'retention checkpoint' },
    );
    expect(head.prunedAt).not.toBeNull();
    expect(await db.auditEvent.count({ where: { tenantId: retained.id } })).toBe(3);
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    expect(
      await runAuditCli(
        ['verify', '--tenant', retained.slug],
        { DATABASE_SYSTEM_URL: inject('systemDatabaseUrl') },
        io,
      ),
    ).toBe(0);
    expect(lines.join('\n')).toContain(
      `OK ${retained.slug}: 3 event(s) (from retention checkpoint seq 5), last seq 8`,
    );
  });

  it('runs a requested export as a worker job: file, digest and manifest recorded, the export audited', async () => {
    const app = createPrismaClient({ url: inject('databaseUrl') });
    const tasks = new Queue(AUDIT_TASKS_QUEUE, { connection: { url: inject('redisUrl') }, prefix });
    try {
      const { exportId } = await requestAuditExport(
        app,
        tenant.id,
        { format: 'jsonl', filters: {}, requestedById: null },
        (name, data, opts) => tasks.add(name, data, opts),
      );
      const row = await waitFor(
        async () => {
          const r = await db.auditExport.findUnique({ where: { id: exportId } });
          return r && (r.status === 'completed' || r.status === 'failed') ? r : undefined;
        },
        { timeoutMs: 20_000, description: 'export completed' },
      );
      expect(row).toMatchObject({ status: 'completed', error: null });
      const manifestPath = path.join(exportDir, 'manifest.json');
      writeFileSync(manifestPath, JSON.stringify(row.manifest));
      expect(await verifyExportFile(row.filePath ?? '', manifestPath)).toMatchObject({
        ok: true,
        rows: row.rowCount,
      });
      const audited = await db.auditEvent.findFirst({
        where: { tenantId: tenant.id, method: 'audit.export', targetId: exportId },
      });
      expect(audited).toMatchObject({ kind: 'control_plane', outcome: 'ok' });
    } finally {
      await tasks.close();
      await app.$disconnect();
    }
  });

  it('signs chain heads with its key: the chain verifies as anchored with the public key, and an export carries the proof', async () => {
    const anchoredTenant = await createTestTenant(db);
    const app = createPrismaClient({ url: inject('databaseUrl') });
    try {
      await queue.addBulk(Array.from({ length: 4 }, () => {
        const e = event({ tenantId: anchoredTenant.id });
        return { name: 'audit.event.ingest', data: e, opts: { jobId: jobIdFor('audit.event.ingest', e) } };
      }));
      const anchor = await waitFor(
        async () => (await db.auditAnchor.findFirst({ where: { tenantId: anchoredTenant.id, seq: 4n } })) ?? undefined,
        { timeoutMs: 20_000, description: 'the head of 4 events signed' },
      );
      const head = await db.auditChainHead.findUniqueOrThrow({ where: { tenantId: anchoredTenant.id } });
      expect(anchor.hash).toBe(head.lastHash);

      const lines: string[] = [];
      const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
      const env = { DATABASE_SYSTEM_URL: inject('systemDatabaseUrl') };
      expect(await runAuditCli(['verify', '--tenant', anchoredTenant.slug, '--public-key', `${keyPrefix}.pub`], env, io)).toBe(0);
      expect(lines.join('\n')).toContain(`ANCHORED ${anchoredTenant.slug}: 1 signed anchor(s) match; proven through seq 4`);

      const tasks = new Queue(AUDIT_TASKS_QUEUE, { connection: { url: inject('redisUrl') }, prefix });
      try {
        const { exportId } = await requestAuditExport(app, anchoredTenant.id, { format: 'csv', filters: {}, requestedById: null }, (name, data, opts) => tasks.add(name, data, opts));
        const row = await waitFor(
          async () => {
            const r = await db.auditExport.findUnique({ where: { id: exportId } });
            return r?.status === 'completed' ? r : undefined;
          },
          { timeoutMs: 20_000, description: 'export completed' },
        );
        const manifestPath = path.join(exportDir, 'anchored-manifest.json');
        writeFileSync(manifestPath, JSON.stringify(row.manifest));
        lines.length = 0;
        expect(await runAuditCli(['verify', '--export', row.filePath ?? '', '--manifest', manifestPath, '--public-key', `${keyPrefix}.pub`], env, io)).toBe(0);
        expect(lines.join('\n')).toContain('NOTE rows through seq 4 proven by the anchor at seq 4');
      } finally {
        await tasks.close();
      }
    } finally {
      await app.$disconnect();
    }
  });

  it('refuses to start with a signing key file that is no Ed25519 key, naming the file and not its content', async () => {
    const badKey = path.join(exportDir, 'bad.key');
    writeFileSync(badKey, 'SUPER-SECRET-NOT-A-KEY', { mode: 0o600 });
    const broken = startBuiltApp('audit-worker', {
      DATABASE_URL: inject('databaseUrl'),
      REDIS_URL: inject('redisUrl'),
      AUDIT_WORKER_HEALTH_PORT: String(await freePort()),
      QUEUE_PREFIX: `${prefix}-bad`,
      DATABASE_SYSTEM_URL: inject('systemDatabaseUrl'),
      AUDIT_SIGNING_KEY_FILE: badKey,
    });
    expect(await waitForExit(broken, 20_000)).toBe(1);
    expect(broken.output()).toContain(`AUDIT_SIGNING_KEY_FILE ${badKey}: the audit signing key is not a PEM private key`);
    expect(broken.output()).not.toContain('SUPER-SECRET');
  });

  it('serves Prometheus metrics on its probe port: events stored, retries and dead letters since start, queue backlog', async () => {
    // After the tests above: events were stored, jobs retried and dead-lettered, and dead letters are left.
    const value = (text: string, series: string) => Number(text.split('\n').find((line) => line.startsWith(`${series} `))?.split(' ')[1]);
    const scrape = async () => {
      const response = await fetch(`http://127.0.0.1:${healthPort}/metrics`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toContain('text/plain');
      return response.text();
    };
    const text = await scrape();
    expect(value(text, 'portcullis_audit_worker_events_stored_total')).toBeGreaterThan(10);
    expect(value(text, 'portcullis_audit_worker_jobs_retried_total')).toBeGreaterThan(0);
    expect(value(text, 'portcullis_audit_worker_jobs_dead_lettered_total')).toBeGreaterThan(0);
    expect(value(text, 'portcullis_audit_worker_queue_jobs{queue="dead_letter",state="waiting"}')).toBeGreaterThan(0);
    expect(value(text, 'portcullis_audit_worker_process_resident_memory_bytes')).toBeGreaterThan(0);
    // The signing sweep (every 200 ms here) signed the heads of the tenants above, refused none, and ran lately.
    expect(value(text, 'portcullis_audit_worker_anchors_signed_total')).toBeGreaterThan(0);
    expect(text).toContain('portcullis_audit_worker_anchor_refusals_total{problem="signed_head_lost"} 0');
    expect(Date.now() / 1_000 - value(text, 'portcullis_audit_worker_anchor_sweep_timestamp_seconds')).toBeLessThan(30);

    // A backlog shows: jobs delayed far into the future wait in the queue, counted as delayed.
    const stored = value(text, 'portcullis_audit_worker_events_stored_total');
    await queue.add('audit.event.ingest', event(), { delay: 3_600_000, jobId: `metrics-delayed-${randomBytes(4).toString('hex')}` });
    const later = await scrape();
    expect(value(later, 'portcullis_audit_worker_queue_jobs{queue="audit",state="delayed"}')).toBeGreaterThanOrEqual(1);
    expect(value(later, 'portcullis_audit_worker_events_stored_total')).toBeGreaterThanOrEqual(stored);
  });
});
