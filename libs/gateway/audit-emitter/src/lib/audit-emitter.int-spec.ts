import { auditBatchJobId, parseAuditEventBatch, QUEUES, type AuditEventV1 } from '@portcullis/contracts/jobs';
import { newId } from '@portcullis/shared/util-ids';
import { testContext, waitFor } from '@portcullis/shared/util-testing';
import { Queue, type Job } from 'bullmq';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createAuditEmitter } from './audit-emitter';
import { FileAuditSpool } from './audit-spool';
import { createAuditQueueProducer, type AuditQueueProducer } from './bullmq-producer';

const TENANT = '019a0000-0000-7000-8000-0000000000aa';
function event(): AuditEventV1 {
  return {
    v: 1,
    eventId: newId(),
    tenantId: TENANT,
    occurredAt: new Date().toISOString(),
    kind: 'mcp',
    method: 'tools/call',
    actorUserId: null,
    agentClientId: null,
    apiKeyId: null,
    mcpSessionId: null,
    upstreamId: null,
    tool: 'math__add',
    targetType: null,
    targetId: null,
    decision: 'allow',
    reason: null,
    snapshotVersion: 1,
    approvalId: null,
    latencyMs: 1,
    outcome: 'ok',
    errorCode: null,
    arguments: { a: 1, b: 2 },
    traceId: null,
    traceparent: null,
  };
}

/** The event ids a job carries, whatever its shape (batch or single event). */
function eventIdsOf(job: Job): string[] {
  return job.name === 'audit.events.ingest'
    ? parseAuditEventBatch(job.data).valid.map((e) => e.eventId)
    : [(job.data as AuditEventV1).eventId];
}

const logger = { info: () => undefined, warn: () => undefined, error: () => undefined };
const dirs: string[] = [];
function tmpDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'audit-spool-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** A redis-server of this test's own (never the shared one), killed and restarted on the same port. */
function privateRedis(port: number) {
  let child: ChildProcess | undefined;
  const reachable = () =>
    new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
  return {
    url: `redis://127.0.0.1:${port}`,
    async start() {
      child = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
        {
          stdio: 'ignore',
        },
      );
      await waitFor(reachable, { timeoutMs: 10_000, description: `redis-server on ${port}` });
    },
    async kill() {
      const current = child;
      child = undefined;
      if (!current || current.exitCode !== null) return;
      current.kill('SIGKILL');
      await once(current, 'exit');
    },
  };
}

describe('FileAuditSpool', () => {
  it('appends within its byte bound, survives a reopen, and replays oldest first, then removes the files', async () => {
    const dir = tmpDir();
    const events = Array.from({ length: 10 }, event);
    const one = Buffer.byteLength(`${JSON.stringify(events[0])}\n`);
    const spool = new FileAuditSpool(dir, one * 6 + 10);
    expect(spool.append(events.slice(0, 4))).toEqual({ written: 4, refused: 0 });
    expect(spool.append(events.slice(4))).toEqual({ written: 2, refused: 4 });
    await spool.close();

    // A restarted process finds what the previous one spooled, including a torn last line.
    appendFileSync(path.join(dir, 'audit-spool.jsonl'), '{"v":1,"eventId":"torn');
    const reopened = new FileAuditSpool(dir, one * 100);
    expect(reopened.hasPending()).toBe(true);
    const sent: string[] = [];
    const result = await reopened.replay(async (batch) => void sent.push(...batch.map((e) => e.eventId)), 4);
    expect(result).toEqual({ replayed: 6, corrupt: 1 });
    expect(sent).toEqual(events.slice(0, 6).map((e) => e.eventId));
    expect(reopened.bytes).toBe(0);
    expect(readdirSync(dir)).toEqual(['audit-spool.jsonl']);
    await reopened.close();
  });

  it('keeps a file whose replay failed (and events appended meanwhile) for the next replay', async () => {
    const dir = tmpDir();
    const spool = new FileAuditSpool(dir, 1_000_000);
    const first = Array.from({ length: 6 }, event);
    const later = Array.from({ length: 2 }, event);
    spool.append(first);
    let calls = 0;
    const sent: string[] = [];
    await expect(
      spool.replay(async (batch) => {
        calls += 1;
        if (calls === 2) {
          spool.append(later); // appended while a replay is running: goes to the fresh active file
          throw new Error('redis gone');
        }
        sent.push(...batch.map((e) => e.eventId));
      }, 3),
    ).rejects.toThrow('redis gone');
    expect(readdirSync(dir).filter((name) => name.endsWith('.replay.jsonl'))).toHaveLength(1);

    await spool.replay(async (batch) => void sent.push(...batch.map((e) => e.eventId)), 3);
    // The first three again (at-least-once; downstream is idempotent), then the rest, then the later ones.
    expect(new Set(sent)).toEqual(new Set([...first, ...later].map((e) => e.eventId)));
    expect(spool.hasPending()).toBe(false);
    await spool.close();
  });
});

describe('audit emitter against real Redis', () => {
  const producers: AuditQueueProducer[] = [];
  const queues: Queue[] = [];
  afterEach(async () => {
    await Promise.all(
      queues.splice(0).map(async (q) =>
        q
          .obliterate({ force: true })
          .catch(() => undefined)
          .then(() => q.close()),
      ),
    );
    await Promise.all(producers.splice(0).map((p) => p.close()));
  });

  it('enqueues every event once, in batch jobs under deterministic ids; a resent batch adds nothing', async () => {
    const prefix = `int-${newId().slice(-8)}`;
    const { redisUrl } = testContext();
    const producer = createAuditQueueProducer({ redisUrl, prefix });
    producers.push(producer);
    const queue = new Queue(QUEUES.audit, { connection: { url: redisUrl }, prefix });
    queues.push(queue);
    const options = {
      producer,
      maxBuffer: 10_000,
      flushEveryMs: 5,
      batchSize: 100,
      spoolMaxBytes: 10_000_000,
      logger,
    };
    const emitter = createAuditEmitter({ ...options, spoolDir: tmpDir() });
    const events = Array.from({ length: 1_000 }, event);
    for (const e of events) expect(emitter.emit(e)).toBe('buffered');
    await emitter.close();
    const jobs = await queue.getJobs(['waiting'], 0, -1);
    expect(jobs.every((j) => j.name === 'audit.events.ingest')).toBe(true);
    expect(jobs.length).toBeGreaterThanOrEqual(10);
    expect(jobs.flatMap(eventIdsOf).sort()).toEqual(events.map((e) => e.eventId).sort());
    for (const job of jobs) expect(job.id).toBe(auditBatchJobId(eventIdsOf(job)));

    // One of those batches again, cut the same way (a retried flush, a spool replay): the same job id, no new job.
    const again = jobs[0] as Job;
    const resend = createAuditEmitter({ ...options, spoolDir: tmpDir() });
    const byId = new Map(events.map((e) => [e.eventId, e]));
    for (const id of eventIdsOf(again)) resend.emit(byId.get(id) as AuditEventV1);
    await resend.close();
    expect(resend.stats()).toMatchObject({ sent: eventIdsOf(again).length, jobs: 1 });
    expect(await queue.getJobCountByTypes('waiting', 'prioritized', 'delayed')).toBe(jobs.length);
  });

  it('keeps every event through a Redis outage: spools while it is down, replays when it returns', async () => {
    const redis = privateRedis(await freePort());
    await redis.start();
    const prefix = 'outage';
    const producer = createAuditQueueProducer({ redisUrl: redis.url, prefix });
    producers.push(producer);
    const spoolDir = tmpDir();
    const emitter = createAuditEmitter({
      producer,
      maxBuffer: 1_000,
      flushEveryMs: 10,
      batchSize: 50,
      spoolDir,
      spoolMaxBytes: 10_000_000,
      logger,
      sendTimeoutMs: 500,
      probeEveryMs: 200,
    });
    const queueAt = () => {
      const q = new Queue(QUEUES.audit, { connection: { url: redis.url }, prefix });
      q.on('error', () => undefined);
      return q;
    };
    try {
      const before = Array.from({ length: 200 }, event);
      for (const e of before) emitter.emit(e);
      await emitter.flush();
      let queue = queueAt();
      const enqueuedBefore = await queue.getJobCountByTypes('waiting');
      const idsBefore = (await queue.getJobs(['waiting'], 0, -1)).flatMap(eventIdsOf);
      await queue.close();
      expect(new Set(idsBefore)).toEqual(new Set(before.map((e) => e.eventId)));
      expect(enqueuedBefore).toBeGreaterThanOrEqual(4); // 200 events in jobs of at most 50

      await redis.kill();
      const during = Array.from({ length: 500 }, event);
      const started = Date.now();
      for (const e of during) expect(emitter.emit(e)).not.toBe('dropped');
      expect(Date.now() - started).toBeLessThan(2_000); // emit never waits for the dead Redis
      await waitFor(() => emitter.stats().spooled === 500, {
        timeoutMs: 10_000,
        description: 'events spooled',
      });
      expect(emitter.stats().redis).toBe('down');
      expect(emitter.canAcceptFailClosed()).toBe(true);

      // Same port, empty data set (this Redis persists nothing): only the spooled events can arrive.
      await redis.start();
      await waitFor(() => emitter.stats().replayed === 500 && emitter.stats().spoolBytes === 0, {
        timeoutMs: 15_000,
        description: 'spool replayed',
      });
      queue = queueAt();
      const jobs = await queue.getJobs(['waiting'], 0, -1);
      await queue.close();
      expect(new Set(jobs.flatMap(eventIdsOf))).toEqual(new Set(during.map((e) => e.eventId)));
      expect(emitter.stats()).toMatchObject({ redis: 'up', dropped: 0 });
      expect(readdirSync(spoolDir)).toEqual(['audit-spool.jsonl']);
    } finally {
      await emitter.close();
      await redis.kill();
    }
  });
});
