import { configFields as f } from '@portcullis/shared/util-config';
import { z } from 'zod';

export const gatewayConfigSchema = z
  .object({
    NODE_ENV: f.nodeEnv,
    LOG_LEVEL: f.logLevel,
    GATEWAY_HOST: z.string().min(1).default('127.0.0.1'),
    GATEWAY_PORT: f.port(3200),
    GATEWAY_BODY_LIMIT_BYTES: z.coerce.number().int().min(1_024).max(50 * 1024 * 1024).default(4 * 1024 * 1024),
    GATEWAY_TRUST_PROXY: f.booleanFlag(false),
    DATABASE_URL: f.postgresUrl,
    REDIS_URL: f.redisUrl,
    SHUTDOWN_GRACE_MS: f.durationMs(10_000),
  })
  .transform((env) => ({
    nodeEnv: env.NODE_ENV,
    log: { level: env.LOG_LEVEL },
    http: {
      host: env.GATEWAY_HOST,
      port: env.GATEWAY_PORT,
      bodyLimitBytes: env.GATEWAY_BODY_LIMIT_BYTES,
      trustProxy: env.GATEWAY_TRUST_PROXY,
    },
    database: { url: env.DATABASE_URL },
    redis: { url: env.REDIS_URL },
    shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
  }));

export type GatewayConfig = z.output<typeof gatewayConfigSchema>;
