import { configFields as f } from '@portcullis/shared/util-config';
import { z } from 'zod';

export const auditWorkerConfigSchema = z
  .object({
    NODE_ENV: f.nodeEnv,
    LOG_LEVEL: f.logLevel,
    AUDIT_WORKER_HEALTH_HOST: z.string().min(1).default('127.0.0.1'),
    AUDIT_WORKER_HEALTH_PORT: f.port(3300),
    AUDIT_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(4),
    QUEUE_PREFIX: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'lowercase letters, digits and hyphens, at most 40')
      .default('portcullis'),
    DATABASE_URL: f.postgresUrl,
    REDIS_URL: f.redisUrl,
    SHUTDOWN_GRACE_MS: f.durationMs(15_000),
  })
  .transform((env) => ({
    nodeEnv: env.NODE_ENV,
    log: { level: env.LOG_LEVEL },
    health: { host: env.AUDIT_WORKER_HEALTH_HOST, port: env.AUDIT_WORKER_HEALTH_PORT },
    concurrency: env.AUDIT_WORKER_CONCURRENCY,
    queuePrefix: env.QUEUE_PREFIX,
    database: { url: env.DATABASE_URL },
    redis: { url: env.REDIS_URL },
    shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
  }));

export type AuditWorkerConfig = z.output<typeof auditWorkerConfigSchema>;
