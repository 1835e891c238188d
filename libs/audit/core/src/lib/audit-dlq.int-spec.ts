import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { AUDIT_JOB_RETRIES, QUEUES } from '@portcullis/contracts/jobs';
import { testContext } from '@portcullis/shared/util-testing';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { COULD_NOT_RUN, runAuditCli } from './audit-cli';
import { AUDIT_DEAD_JOB, AUDIT_DLQ, AuditDlq, deadLetterJobId, type DeadLetter } from './audit-dlq';
import { sampleAuditEvent } from './testing';

const ctx = testContext();
const connection = { url: ctx.redisUrl };
const prefix = `dlq-spec-${randomUUID()}`;
const tenantId = '019a0000-0000-7000-8000-0000000000aa';
const dlqQueue = new Queue(AUDIT_DLQ, { connection, prefix });
const auditQueue = new Queue(QUEUES.audit, { connection, prefix });

function letter(jobName: string, payload: unknown): DeadLetter {
  const jobId = jobName === 'audit.event.ingest' ? `audit-${(payload as { eventId: string }).eventId}` : null;
  return { jobName, jobId, payload, error: 'store down', attempts: 5, failedAt: new Date().toISOString() };
}

async function deadLetter(value: DeadLetter): Promise<string> {
  const id = deadLetterJobId(value);
  const job = await dlqQueue.add(AUDIT_DEAD_JOB, value, id ? { jobId: id } : {});
  return job.id as string;
}

async function dlqIds(): Promise<string[]> {
  return dlqQueue.getRanges(['wait'], 0, -1, true);
}

beforeAll(async () => {
  await Promise.all([dlqQueue.waitUntilReady(), auditQueue.waitUntilReady()]);
});

afterAll(async () => {
  await Promise.all([dlqQueue.obliterate({ force: true }), auditQueue.obliterate({ force: true })]);
  await Promise.all([dlqQueue.close(), auditQueue.close()]);
});

describe('AuditDlq.entries', () => {
  it('lists the first entries oldest first, fetching a page of ids and one entry at a time', async () => {
    await Promise.all([dlqQueue.obliterate({ force: true }), auditQueue.obliterate({ force: true })]);
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await deadLetter(letter('audit.event.ingest', sampleAuditEvent(tenantId, { arguments: { listed: i } }))));
    const dlq = new AuditDlq({ connection, prefix, pageSize: 3 });
    // Before, one getJobs call read every entry up to the limit (1,000 by default, each up to a mebibyte) at once.
    const read = vi.spyOn((dlq as unknown as { dlq: Queue }).dlq, 'getJobs');
    try {
      expect(await dlq.count()).toBe(7);
      const listed = [];
      for await (const entry of dlq.entries(5)) listed.push(entry.dlqJobId);
      expect(listed).toEqual(ids.slice(0, 5));
      const all = [];
      for await (const entry of dlq.entries()) all.push(entry.dlqJobId);
      expect(all).toEqual(ids);
      expect(read).not.toHaveBeenCalled();

      // The CLI says how many there are, and lists as many as asked.
      const lines: string[] = [];
      const code = await runAuditCli(['dlq', 'list', '--limit', '2'], { REDIS_URL: ctx.redisUrl, QUEUE_PREFIX: prefix }, { out: (line) => lines.push(line), err: (line) => lines.push(line) });
      expect({ code, head: lines[0], listed: lines.slice(1).map((line) => line.split('\t')[0]) }).toEqual({ code: 0, head: '7 dead-lettered audit job(s), the first 2 below', listed: ids.slice(0, 2) });
    } finally {
      await dlq.close();
      await dlqQueue.obliterate({ force: true });
    }
  });
});

describe('AuditDlq.replay', () => {
  it('walks a DLQ larger than a page, leaving entries it cannot replay where they are and replaying every other one', async () => {
    const events = Array.from({ length: 11 }, (_, i) => sampleAuditEvent(tenantId, { arguments: { i } }));
    // Unreplayable entries among them (more than a page of 3 in all), at the start, inside and at the end of pages: an
    // unknown job, payloads that are not events, and a batch with one invalid event (its valid one is replayed, the
    // invalid one stays).
    const unknown = await deadLetter(letter('audit.unknown', { v: 1 }));
    const ids: string[] = [];
    for (const [i, event] of events.entries()) {
      ids.push(await deadLetter(letter('audit.event.ingest', event)));
      if (i === 3 || i === 7) ids.push(await deadLetter({ ...letter('audit.event.ingest', { v: 1, eventId: `x${i}` }), jobId: null }));
    }
    const mixed = sampleAuditEvent(tenantId, { arguments: { mixed: true } });
    const batch = await deadLetter(letter('audit.events.ingest', { v: 1, events: [mixed, { v: 1, eventId: 'not-an-event' }] }));
    const invalid = [ids[4], ids[9]] as string[];

    const dlq = new AuditDlq({ connection, prefix, pageSize: 3 });
    try {
      const { replayed, skipped } = await dlq.replay();
      const eventIds = events.map((event) => `dead-audit-${event.eventId}`);
      expect(replayed.sort()).toEqual([...eventIds, batch].sort());
      expect(skipped.map((s) => s.id).sort()).toEqual([unknown, ...invalid, batch].sort());
      // Left in the DLQ, in their order: what could not be replayed (the batch keeps only its invalid event).
      expect(await dlqIds()).toEqual([unknown, ...invalid, batch]);
      const rest = (await dlqQueue.getJob(batch))?.data as DeadLetter;
      expect((rest.payload as { events: unknown[] }).events).toEqual([{ v: 1, eventId: 'not-an-event' }]);
      // On the audit queue: each event once, under its deterministic job id, and the batch's valid event.
      const queued = await auditQueue.getJobs(['wait'], 0, -1, true);
      expect(queued.filter((job) => job.name === 'audit.event.ingest').map((job) => job.id).sort()).toEqual(events.map((event) => `audit-${event.eventId}`).sort());
      const replayedBatch = queued.find((job) => job.name === 'audit.events.ingest');
      expect((replayedBatch?.data as { events: { eventId: string }[] }).events.map((event) => event.eventId)).toEqual([mixed.eventId]);
      expect(queued).toHaveLength(events.length + 1);
      // Each with the retries every audit job carries (before, none: one Redis error in the worker's bookkeeping failed
      // a replayed job for good, outside the DLQ its entry had left).
      for (const job of queued) expect({ attempts: job.opts.attempts, backoff: job.opts.backoff }).toEqual(AUDIT_JOB_RETRIES);

      // A second replay finds only what stays, and changes nothing.
      const again = await dlq.replay();
      expect(again.replayed).toEqual([]);
      expect(again.skipped.map((s) => s.id).sort()).toEqual([unknown, ...invalid, batch].sort());
      expect(await dlqIds()).toEqual([unknown, ...invalid, batch]);
    } finally {
      await dlq.close();
    }
  });

  it('ends after the entries there when it began, though each replayed event is dead-lettered again at once', async () => {
    await Promise.all([dlqQueue.obliterate({ force: true }), auditQueue.obliterate({ force: true })]);
    for (let i = 0; i < 5; i++) await deadLetter(letter('audit.event.ingest', sampleAuditEvent(tenantId, { arguments: { again: i } })));
    const dlq = new AuditDlq({ connection, prefix, pageSize: 2 });
    // The worker failing every replayed event for good: a new dead letter joins the end of the list for each.
    const audit = (dlq as unknown as { audit: Queue }).audit;
    const add = audit.add.bind(audit);
    audit.add = (async (...args: Parameters<Queue['add']>) => {
      const job = await add(...args);
      await deadLetter({ ...letter('audit.event.ingest', args[1]), jobId: null });
      return job;
    }) as Queue['add'];
    try {
      const { replayed } = await dlq.replay();
      expect(replayed).toHaveLength(5);
      expect(await dlqIds()).toHaveLength(5);
    } finally {
      await dlq.close();
    }
  });

  it('replays named entries by DLQ id or original job id, each once, without walking the DLQ', async () => {
    const [first, second, third] = [0, 1, 2].map((i) => sampleAuditEvent(tenantId, { arguments: { named: i } }));
    const a = await deadLetter(letter('audit.event.ingest', first));
    await deadLetter(letter('audit.event.ingest', second));
    const c = await deadLetter(letter('audit.event.ingest', third));
    const dlq = new AuditDlq({ connection, prefix });
    try {
      const { replayed, skipped } = await dlq.replay([a, `audit-${third?.eventId}`, c, 'no-such-entry']);
      expect(replayed).toEqual([a, c]);
      expect(skipped).toEqual([]);
      expect(await dlqIds()).toContain(`dead-audit-${second?.eventId}`);
      expect(await dlqIds()).not.toContain(a);
      expect(await dlqIds()).not.toContain(c);
    } finally {
      await dlq.close();
    }
  });
});

// ops review: a Redis reply error at connect time (`SELECT 99` on a 16-database server) is emitted as an 'error' event
// on each BullMQ queue. With no listener BullMQ prints it as a raw stack trace on stderr (an EventEmitter without an
// 'error' listener would throw it: an uncaught exception); the CLI reports failures from the commands it awaits.
describe('AuditDlq connection errors', () => {
  it('listens for its queues\' errors: neither an uncaught exception nor a stack trace on stderr', async () => {
    const url = `${ctx.redisUrl.replace(/\/\d*$/, '')}/99`;
    const uncaught: unknown[] = [];
    const record = (error: unknown): void => void uncaught.push(error);
    process.on('uncaughtException', record);
    const printed = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const dlq = new AuditDlq({ connection: { url, maxRetriesPerRequest: 1 }, prefix: `dlq-spec-${randomUUID()}` });
    let printedCalls: string[];
    try {
      await dlq.count().catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      await dlq.close();
      process.off('uncaughtException', record);
      printedCalls = printed.mock.calls.map(String);
      printed.mockRestore();
    }
    expect({ uncaught: uncaught.map(String), printed: printedCalls }).toEqual({ uncaught: [], printed: [] });
  });
});

// A Redis of its own that answers reads and refuses writes (full: maxmemory with noeviction, the policy BullMQ
// requires): `audit dlq replay` cannot do its work. Before, the refusal escaped the CLI (exit 1 and a stack trace from
// audit.mjs, as for a broken chain); it is one line and exit 3, "could not run" (found in review).
describe('audit dlq replay while Redis refuses writes', () => {
  let redis: ChildProcess | undefined;
  let url = '';

  beforeAll(async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = probe.address() as AddressInfo;
        probe.close(() => resolve(free));
      });
    });
    redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    url = `redis://127.0.0.1:${port}`;
    const admin = new Redis(url, { retryStrategy: (attempt) => (attempt > 50 ? null : 50) });
    admin.on('error', () => undefined); // refused until redis-server listens
    await admin.ping();
    const full = new Queue(AUDIT_DLQ, { connection: { url }, prefix: 'portcullis' });
    await full.add(AUDIT_DEAD_JOB, letter('audit.event.ingest', sampleAuditEvent(tenantId)));
    await full.close();
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    await admin.config('SET', 'maxmemory', '1');
    admin.disconnect();
  }, 30_000);

  afterAll(() => {
    redis?.kill('SIGKILL');
  });

  it(`exits ${COULD_NOT_RUN} with one line naming Redis's refusal`, async () => {
    const lines: string[] = [];
    const outcome = await runAuditCli(['dlq', 'replay'], { REDIS_URL: url }, { out: (line) => lines.push(line), err: (line) => lines.push(line) }).then(
      (code) => ({ code, thrown: null as string | null }),
      (error: Error) => ({ code: null, thrown: `${error.name}: ${error.message}` }),
    );
    expect(outcome).toEqual({ code: COULD_NOT_RUN, thrown: null });
    expect(lines).toEqual([expect.stringMatching(/^audit dlq: Redis at 127\.0\.0\.1:\d+ failed a command: OOM command not allowed/)]);
    expect(lines[0]).not.toMatch(/script:|\n/);
  }, 30_000);
});
