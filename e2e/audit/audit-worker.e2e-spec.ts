import { verifyChain, type StoredChainLink } from '@portcullis/audit/chain';
import { AUDIT_DLQ, runAuditCli } from '@portcullis/audit/core';
import { jobIdFor, QUEUES, type JobPayload } from '@portcullis/contracts/jobs';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { newId } from '@portcullis/shared/util-ids';
import { createTestTenant, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { Queue } from 'bullmq';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort, startBuiltApp, waitForReady, type AppProcess } from '../support/app-process';

// The real path: a BullMQ producer -> Redis -> the built audit-worker process -> Postgres (as the
// row-level-security role), then the stored chain is verified from the rows.
const prefix = `e2e-${randomBytes(4).toString('hex')}`;
let worker: AppProcess;
let queue: Queue;
let db: SystemPrismaClient;
let tenant: TestTenant;

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
  const port = await freePort();
  worker = startBuiltApp('audit-worker', {
    DATABASE_URL: inject('databaseUrl'),
    REDIS_URL: inject('redisUrl'),
    AUDIT_WORKER_HEALTH_PORT: String(port),
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: 'warn',
    AUDIT_MAX_ATTEMPTS: '3',
    AUDIT_RETRY_BASE_MS: '50',
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
  await db?.$disconnect();
});

describe('audit worker (built process, real Redis and Postgres)', () => {
  it('stores every event once, chained, however often it is enqueued', async () => {
    const events = Array.from({ length: 20 }, (_, i) => event({ arguments: { n: i } }));
    for (const e of events) await queue.add('audit.event.ingest', e, { jobId: jobIdFor('audit.event.ingest', e) });
    // The same events again (a retry or a spool replay): same job ids, so nothing new.
    for (const e of events.slice(0, 5)) await queue.add('audit.event.ingest', e, { jobId: jobIdFor('audit.event.ingest', e) });

    const rows = await waitFor(
      async () => {
        const stored = await db.auditEvent.findMany({ where: { tenantId: tenant.id }, orderBy: { seq: 'asc' } });
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
      prevHash: r.prevHash,
      hash: r.hash,
    }));
    expect(verifyChain(links)).toMatchObject({ ok: true, checked: events.length });
  });

  it('fails a malformed job for good (no retry loop) and keeps running', async () => {
    const job = await queue.add('audit.event.ingest', { v: 1, tenantId: 'not-a-uuid' }, { attempts: 5 });
    const state = await waitFor(async () => {
      const current = await job.getState();
      return current === 'failed' ? current : undefined;
    }, { timeoutMs: 10_000, description: 'malformed job failed' });
    expect(state).toBe('failed');
    const failed = await queue.getJob(job.id ?? '');
    expect(failed?.attemptsMade).toBe(1);
    expect(worker.child.exitCode).toBeNull();
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
    expect(entry).toMatchObject({ jobId: `audit-${dead.eventId}`, attempts: 3, dlqJobId: `dead-audit-${dead.eventId}` });
    expect(entry.error).toMatch(/foreign key|violates|Foreign/i);

    // The operator fixes the cause (here: the tenant now exists) and replays.
    await db.tenant.create({ data: { id: missingTenant, slug: `late-${missingTenant.slice(-8)}`, name: 'late tenant' } });
    lines.length = 0;
    expect(await runAuditCli(['dlq', 'replay', '--id', entry.dlqJobId], env, io)).toBe(0);
    expect(lines.join('\n')).toContain('replayed 1 job(s)');
    const row = await waitFor(() => db.auditEvent.findFirst({ where: { tenantId: missingTenant, id: dead.eventId } }), {
      timeoutMs: 15_000,
      description: 'replayed event stored',
    });
    expect(row.seq).toBe(1n);
    lines.length = 0;
    await runAuditCli(['dlq', 'list'], env, io);
    expect(lines.join('\n')).not.toContain(dead.eventId);
  });
});
