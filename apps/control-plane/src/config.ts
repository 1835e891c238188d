import { configFields as f } from '@portcullis/shared/util-config';
import { z } from 'zod';

export const controlPlaneConfigSchema = z
  .object({
    NODE_ENV: f.nodeEnv,
    LOG_LEVEL: f.logLevel,
    CONTROL_PLANE_HOST: z.string().min(1).default('127.0.0.1'),
    CONTROL_PLANE_PORT: f.port(3100),
    CONTROL_PLANE_BODY_LIMIT_BYTES: z.coerce.number().int().min(1_024).max(50 * 1024 * 1024).default(1024 * 1024),
    CONTROL_PLANE_TRUST_PROXY: f.booleanFlag(false),
    DATABASE_URL: f.postgresUrl,
    REDIS_URL: f.redisUrl,
    SHUTDOWN_GRACE_MS: f.durationMs(10_000),
  })
  .transform((env) => ({
    nodeEnv: env.NODE_ENV,
    log: { level: env.LOG_LEVEL },
    http: {
      host: env.CONTROL_PLANE_HOST,
      port: env.CONTROL_PLANE_PORT,
      bodyLimitBytes: env.CONTROL_PLANE_BODY_LIMIT_BYTES,
      trustProxy: env.CONTROL_PLANE_TRUST_PROXY,
    },
    database: { url: env.DATABASE_URL },
    redis: { url: env.REDIS_URL },
    shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
  }));

export type ControlPlaneConfig = z.output<typeof controlPlaneConfigSchema>;
