import { configFields as f } from '@portcullis/shared/util-config';
import { z } from 'zod';

export const auditWorkerConfigSchema = z
  .object({
    NODE_ENV: f.nodeEnv,
    LOG_LEVEL: f.logLevel,
    AUDIT_WORKER_HEALTH_HOST: f.listenHost('127.0.0.1'),
    AUDIT_WORKER_HEALTH_PORT: f.port(3300),
    /**
     * Jobs in progress at once. A gateway job carries a batch of events (up to its emitter's batch size), so this
     * bounds the events in memory (jobs × events per job); single-event jobs (control plane, jobs from before batch
     * jobs) are stored at most this many per batch.
     */
    AUDIT_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(5_000).default(64),
    /** A batch is written when it holds this many events or its first has waited AUDIT_BATCH_LINGER_MS. */
    AUDIT_BATCH_MAX: z.coerce.number().int().min(1).max(5_000).default(2_000),
    AUDIT_BATCH_LINGER_MS: z.coerce.number().int().min(0).max(1_000).default(20),
    AUDIT_BATCH_IN_FLIGHT: z.coerce.number().int().min(1).max(16).default(2),
    /** Attempts before an event goes to the dead-letter queue; backoff base doubles each attempt (max 60 s). */
    AUDIT_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(50).default(8),
    AUDIT_RETRY_BASE_MS: z.coerce.number().int().min(10).max(60_000).default(1_000),
    /** How long after a worker dies its in-progress jobs are given to another (BullMQ lock and stalled check). */
    AUDIT_LOCK_DURATION_MS: z.coerce.number().int().min(1_000).max(300_000).default(30_000),
    AUDIT_STALLED_INTERVAL_MS: z.coerce.number().int().min(1_000).max(300_000).default(30_000),
    QUEUE_PREFIX: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'lowercase letters, digits and hyphens, at most 40')
      .default('portcullis'),
    DATABASE_URL: f.postgresUrl,
    /**
     * portcullis_system (BYPASSRLS), for the cross-tenant tasks: retention, and storing control-plane events left in
     * the outbox. Without it neither runs (logged at start).
     */
    DATABASE_SYSTEM_URL: f.postgresUrl.optional(),
    /** Where export files are written (a volume shared with whatever serves downloads). */
    AUDIT_EXPORT_DIR: z.string().min(1).default('tmp/audit-exports'),
    /** Days an export's file stays downloadable; the retention job then removes it (the row stays, `expired`). */
    AUDIT_EXPORT_TTL_DAYS: z.coerce.number().int().min(1).max(3_650).default(7),
    AUDIT_RETENTION_EVERY_MS: z.coerce
      .number()
      .int()
      .min(60_000)
      .max(7 * 86_400_000)
      .default(3_600_000),
    /** How often control-plane events left in the outbox are looked for, and how old one must be to be taken. */
    AUDIT_OUTBOX_EVERY_MS: z.coerce.number().int().min(100).max(3_600_000).default(10_000),
    AUDIT_OUTBOX_GRACE_MS: z.coerce.number().int().min(0).max(3_600_000).default(30_000),
    /**
     * An Ed25519 private key (PKCS#8 PEM) the worker signs tenant chain heads with (`npm run audit:keygen` makes one).
     * Keep it out of the database's reach: the signatures prove the trail to whoever holds the public key, even against
     * someone who can rewrite the database. Without it heads are not signed (logged at start).
     */
    AUDIT_SIGNING_KEY_FILE: z.string().trim().min(1).optional(),
    /** How often chain heads that moved are signed: what is newer than the last anchor rests on the chain alone. */
    AUDIT_ANCHOR_EVERY_MS: z.coerce.number().int().min(100).max(86_400_000).default(60_000),
    REDIS_URL: f.redisUrl,
    SHUTDOWN_GRACE_MS: f.durationMs(15_000),
  })
  .superRefine((env, ctx) => {
    // In production the control plane hands audit data out (downloads, exports) once their events are in the outbox:
    // a worker that never drains it would leave them out of the trail whenever Redis is away. Retention needs it too.
    if (env.NODE_ENV === 'production' && env.DATABASE_SYSTEM_URL === undefined) {
      ctx.addIssue({ code: 'custom', path: ['DATABASE_SYSTEM_URL'], message: 'is required when NODE_ENV=production (the outbox drain and retention)' });
    }
  })
  .transform((env) => ({
    nodeEnv: env.NODE_ENV,
    log: { level: env.LOG_LEVEL },
    health: { host: env.AUDIT_WORKER_HEALTH_HOST, port: env.AUDIT_WORKER_HEALTH_PORT },
    concurrency: env.AUDIT_WORKER_CONCURRENCY,
    batch: {
      maxBatch: env.AUDIT_BATCH_MAX,
      lingerMs: env.AUDIT_BATCH_LINGER_MS,
      maxInFlight: env.AUDIT_BATCH_IN_FLIGHT,
    },
    retry: { maxAttempts: env.AUDIT_MAX_ATTEMPTS, baseMs: env.AUDIT_RETRY_BASE_MS },
    lock: { durationMs: env.AUDIT_LOCK_DURATION_MS, stalledIntervalMs: env.AUDIT_STALLED_INTERVAL_MS },
    queuePrefix: env.QUEUE_PREFIX,
    database: { url: env.DATABASE_URL, systemUrl: env.DATABASE_SYSTEM_URL ?? null },
    exports: { dir: env.AUDIT_EXPORT_DIR, ttlMs: env.AUDIT_EXPORT_TTL_DAYS * 86_400_000 },
    retention: { everyMs: env.AUDIT_RETENTION_EVERY_MS },
    outbox: { everyMs: env.AUDIT_OUTBOX_EVERY_MS, graceMs: env.AUDIT_OUTBOX_GRACE_MS },
    anchors: { signingKeyFile: env.AUDIT_SIGNING_KEY_FILE ?? null, everyMs: env.AUDIT_ANCHOR_EVERY_MS },
    redis: { url: env.REDIS_URL },
    shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
  }));

export type AuditWorkerConfig = z.output<typeof auditWorkerConfigSchema>;
