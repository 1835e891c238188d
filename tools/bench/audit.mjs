#!/usr/bin/env node
// Audit pipeline benchmark: `npm run bench:audit` (builds the audit worker first).
//
// End to end as in production: the gateway's emitter (libs/gateway/audit-emitter, loaded with jiti) -> BullMQ on the
// local Redis (a private key prefix) -> the BUILT audit-worker process -> Postgres (a fresh database created for the
// run and dropped afterwards). Measures sustained events/s stored in Postgres (the chain heads' sequence numbers
// summed once a second), after a warm-up, while the producer keeps the queue backlog between bounds.
//
// Bounded: WARMUP_S + MEASURE_S seconds of load (default 5 + 20) and at most MAX_EVENTS events; 127.0.0.1 only.
// Options (environment): BENCH_TENANTS (default 20), BENCH_WORKERS (default 1), BENCH_MEASURE_S, BENCH_WARMUP_S,
// BENCH_BATCH_SIZE (events per job, default 500), BENCH_FLUSH_MS (default 5), BENCH_JOB_FORMAT (batch | event),
// plus the worker's AUDIT_WORKER_CONCURRENCY / AUDIT_BATCH_MAX / AUDIT_BATCH_LINGER_MS / AUDIT_BATCH_IN_FLIGHT.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { DEFAULT_ADMIN_URL, applyMigrations, dropDatabase, withDatabaseUrl } from '../db/index.mjs';
import { freePort, importSource, pollReady, startBuiltApp } from '../scripts/lib/harness.mjs';
import { repoRoot } from '../scripts/lib/run.mjs';

process.env.CHECKPOINT_DISABLE ??= '1';
const { createAuditEmitter, createAuditQueueProducer } = await importSource(
  'libs/gateway/audit-emitter/src/index.ts',
);
const { sampleAuditEvent, PostgresAuditEventStore } = await importSource('libs/audit/core/src/index.ts');
const { createPrismaClient } = await importSource('libs/data/db/src/index.ts');
const { QUEUES } = await importSource('libs/contracts/jobs/src/index.ts');
const { Queue } = await import('bullmq');

const TENANTS = Number(process.env.BENCH_TENANTS ?? 20);
const WARMUP_S = Number(process.env.BENCH_WARMUP_S ?? 5);
const MEASURE_S = Number(process.env.BENCH_MEASURE_S ?? 20);
const MAX_EVENTS = 1_000_000;
const BACKLOG_HIGH = 40_000; // pause producing above this many waiting events (jobs × events per job)
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
if (!existsSync(join(repoRoot, 'dist/apps/audit-worker/main.js'))) {
  console.error(
    'dist/apps/audit-worker/main.js missing: run `npx nx build audit-worker` (npm run bench:audit does).',
  );
  process.exit(1);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** CPU seconds (user + system) a process has used, from /proc (Linux); null elsewhere. */
function cpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return null;
  }
}

const baseAdmin = process.env.DATABASE_ADMIN_URL ?? DEFAULT_ADMIN_URL;
const database = `portcullis_bench_${Date.now()}_${randomBytes(3).toString('hex')}`;
const adminUrl = withDatabaseUrl(baseAdmin, { database });
const appUrl = withDatabaseUrl(adminUrl, { user: 'portcullis_app', password: null });
const prefix = `bench-${randomBytes(4).toString('hex')}`;
const spoolDir = mkdtempSync(join(os.tmpdir(), 'audit-bench-spool-'));

const WORKERS = Number(process.env.BENCH_WORKERS ?? 1);
// The emitter: events per job (and per flush), flush interval, and the job shape ('event' = one job per event, the
// shape before batch jobs, for comparison).
const BATCH_SIZE = Number(process.env.BENCH_BATCH_SIZE ?? 500);
const FLUSH_MS = Number(process.env.BENCH_FLUSH_MS ?? 5);
const JOB_FORMAT = process.env.BENCH_JOB_FORMAT ?? 'batch';
// BENCH_MODE=store: only the Postgres stage (PostgresAuditEventStore, batches of 500 rotating over the tenants,
// 2 in flight, in this process): the ceiling of the storage side without Redis and BullMQ.
const STORE_ONLY = process.env.BENCH_MODE === 'store';
const children = [];
// BENCH_WORKER_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=tmp/prof", to profile the worker.
const nodeArgs = (process.env.BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean);
let admin;
let producer;
let emitter;
let queue;
try {
  console.log(
    `bench:audit — database ${database}, queue prefix ${prefix}, ${TENANTS} tenant(s), ${WORKERS} worker process(es), ` +
      `${JOB_FORMAT} jobs of ≤ ${BATCH_SIZE} events, flush every ${FLUSH_MS} ms`,
  );
  await applyMigrations({ adminUrl });
  admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  const tenantIds = [];
  for (let i = 0; i < TENANTS; i += 1) {
    const { rows } = await admin.query(
      `INSERT INTO tenants (id, slug, name, updated_at) VALUES (gen_random_uuid(), $1, $1, now()) RETURNING id`,
      [`bench-${i}`],
    );
    tenantIds.push(rows[0].id);
  }

  for (let w = 0; w < (STORE_ONLY ? 0 : WORKERS); w += 1) {
    const port = await freePort();
    const child = startBuiltApp('audit-worker', {
      nodeArgs,
      stdio: ['ignore', 'inherit', 'inherit'],
      env: {
        DATABASE_URL: appUrl,
        REDIS_URL: redisUrl,
        QUEUE_PREFIX: prefix,
        AUDIT_WORKER_HEALTH_PORT: String(port),
        ...Object.fromEntries(
          ['AUDIT_WORKER_CONCURRENCY', 'AUDIT_BATCH_MAX', 'AUDIT_BATCH_LINGER_MS', 'AUDIT_BATCH_IN_FLIGHT']
            .filter((k) => process.env[k])
            .map((k) => [k, process.env[k]]),
        ),
      },
    });
    children.push(child);
    const state = await pollReady(`http://127.0.0.1:${port}/readyz`, {
      child,
      timeoutMs: 30_000,
      intervalMs: 150,
      requestTimeoutMs: null,
    });
    if (state === 'exited') throw new Error(`audit worker exited (${child.exitCode})`);
    if (state !== 'ready') throw new Error('audit worker not ready after 30 s');
  }

  producer = createAuditQueueProducer({ redisUrl, prefix, connectionName: 'bench-emitter' });
  const quiet = {
    info: () => undefined,
    warn: (o, m) => console.warn(m, o),
    error: (o, m) => console.error(m, o),
  };
  emitter = createAuditEmitter({
    producer,
    maxBuffer: 20_000,
    flushEveryMs: FLUSH_MS,
    batchSize: BATCH_SIZE,
    jobFormat: JOB_FORMAT,
    spoolDir,
    spoolMaxBytes: 256 * 1024 * 1024,
    logger: quiet,
  });
  queue = new Queue(QUEUES.audit, { connection: { url: redisUrl }, prefix });

  const stored = async () => {
    const { rows } = await admin.query(
      'SELECT coalesce(sum(last_seq), 0)::bigint AS n FROM audit_chain_heads',
    );
    return Number(rows[0].n);
  };

  let emitted = 0;
  let producing = true;
  const storeDb = STORE_ONLY ? createPrismaClient({ url: appUrl }) : undefined;
  const produce = STORE_ONLY
    ? Promise.all(
        [0, 1].map(async (lane) => {
          const store = new PostgresAuditEventStore(storeDb);
          for (let b = lane; producing && emitted < MAX_EVENTS; b += 2) {
            const tenant = tenantIds[b % TENANTS];
            const batch = Array.from({ length: 500 }, () =>
              sampleAuditEvent(tenant, { arguments: { n: emitted, path: '/tickets/42' } }),
            );
            emitted += batch.length;
            await store.insert(batch);
          }
        }),
      ).finally(() => storeDb.$disconnect())
    : (async () => {
        while (producing && emitted < MAX_EVENTS) {
          const { sent, jobs } = emitter.stats();
          const waiting = (await queue.getWaitingCount()) * (jobs > 0 ? sent / jobs : 1);
          if (waiting > BACKLOG_HIGH) {
            await sleep(20);
            continue;
          }
          for (let i = 0; i < 2_000 && emitted < MAX_EVENTS; i += 1) {
            emitter.emit(
              sampleAuditEvent(tenantIds[emitted % TENANTS], {
                arguments: { n: emitted, path: '/tickets/42' },
              }),
            );
            emitted += 1;
          }
          await emitter.flush();
        }
      })();

  const started = Date.now();
  await sleep(WARMUP_S * 1000);
  const t0 = Date.now();
  const n0 = await stored();
  // Postgres backends serving this database (the worker's pool; the bench's own connection is excluded).
  const backendCpu = async () => {
    const { rows } = await admin.query(
      'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    return new Map(rows.map((r) => [r.pid, cpuSeconds(r.pid)]));
  };
  const pg0 = await backendCpu();
  const cpu0 = { bench: cpuSeconds(process.pid), workers: children.map((c) => cpuSeconds(c.pid)) };
  const perSecond = [];
  let last = n0;
  for (let s = 0; s < MEASURE_S; s += 1) {
    await sleep(1000);
    const n = await stored();
    perSecond.push(n - last);
    last = n;
  }
  const t1 = Date.now();
  const n1 = last;
  const cpu1 = { bench: cpuSeconds(process.pid), workers: children.map((c) => cpuSeconds(c.pid)) };
  const pg1 = await backendCpu();
  // Backends present at both ends (a backend that came or went in between is left out: an underestimate).
  let pgCpu = 0;
  for (const [pid, end] of pg1) {
    const start = pg0.get(pid);
    if (start !== undefined && start !== null && end !== null) pgCpu += end - start;
  }
  producing = false;
  await produce;
  const backlogJobs = await queue.getWaitingCount();

  const rate = ((n1 - n0) * 1000) / (t1 - t0);
  const sorted = [...perSecond].sort((a, b) => a - b);
  const pct = (p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  const { rows: ver } = await admin.query(
    `SELECT count(*)::int AS n FROM audit_events e JOIN audit_chain_heads h USING (tenant_id) WHERE e.seq > h.last_seq`,
  );
  console.log('');
  console.log(`events emitted                 ${emitted.toLocaleString('en')}`);
  console.log(
    `events stored (measured window) ${(n1 - n0).toLocaleString('en')} in ${((t1 - t0) / 1000).toFixed(1)} s`,
  );
  console.log(`sustained events/s into Postgres ${Math.round(rate).toLocaleString('en')}`);
  console.log(`per-second min / median / max    ${pct(0)} / ${pct(50)} / ${pct(100)}`);
  const { sent, jobs } = emitter.stats();
  console.log(
    `queue backlog at end            ${backlogJobs.toLocaleString('en')} job(s) waiting, ≈ ${Math.round(backlogJobs * (jobs ? sent / jobs : 1)).toLocaleString('en')} events (producer throttled above ${BACKLOG_HIGH.toLocaleString('en')})`,
  );
  console.log(`events per job (emitter)        ${jobs ? (sent / jobs).toFixed(1) : '-'}`);
  console.log(`emitter                         ${JSON.stringify(emitter.stats())}`);
  // CPU per stored event: less sensitive to other load on the machine than the rate is.
  const perK = (a, b) => (a === null || b === null || n1 === n0 ? '-' : `${(((b - a) * 1e6) / (n1 - n0)).toFixed(0)} µs`);
  console.log(
    `CPU per event stored            worker ${children.map((_, i) => perK(cpu0.workers[i], cpu1.workers[i])).join(' + ') || '-'}, ` +
      `bench process (emitter/producer) ${perK(cpu0.bench, cpu1.bench)}, Postgres backends ${perK(0, pgCpu)}`,
  );
  console.log(`load average at end             ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`rows beyond their chain head    ${ver[0].n} (must be 0)`);
  console.log(`total wall time                 ${((Date.now() - started) / 1000).toFixed(1)} s`);
} finally {
  await emitter?.close().catch(() => undefined);
  await producer?.close().catch(() => undefined);
  for (const child of children) {
    if (child.exitCode !== null) continue;
    child.kill('SIGTERM');
    // A profiled worker writes its profile only if it exits by itself (after draining its jobs).
    await Promise.race([new Promise((r) => child.once('exit', r)), sleep(nodeArgs.length > 0 ? 120_000 : 10_000)]);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  await queue?.obliterate({ force: true }).catch(() => undefined);
  await queue?.close().catch(() => undefined);
  for (const name of ['portcullis-audit-dlq', 'portcullis-audit-tasks']) {
    const other = new Queue(name, { connection: { url: redisUrl }, prefix });
    await other.obliterate({ force: true }).catch(() => undefined);
    await other.close().catch(() => undefined);
  }
  await admin?.end().catch(() => undefined);
  await dropDatabase(adminUrl).catch((e) => console.error(`could not drop ${database}: ${e.message}`));
  rmSync(spoolDir, { recursive: true, force: true });
}
