import { configFields } from '@portcullis/shared/util-config';
import { DEMO_SERVER_NAMES } from '@portcullis/demo/mcp-servers';
import { z } from 'zod';

/** Servers mounted at `/<name>/mcp` unless DEMO_UPSTREAMS_SERVERS says otherwise (tickets is also at `/mcp`). */
const DEFAULT_MOUNTED = DEMO_SERVER_NAMES.join(',');

export const demoUpstreamsConfigSchema = z
  .object({
    NODE_ENV: configFields.nodeEnv,
    LOG_LEVEL: configFields.logLevel,
    DEMO_UPSTREAMS_HOST: configFields.listenHost('127.0.0.1'),
    DEMO_UPSTREAMS_PORT: configFields.port(3500),
    // Unset (or empty, as every variable) mounts every server; `none` mounts none (tickets stays at /mcp).
    DEMO_UPSTREAMS_SERVERS: z.preprocess(
      (value) => (typeof value === 'string' && value.trim() === 'none' ? [] : configFields.csv.parse(value ?? DEFAULT_MOUNTED)),
      z.array(z.enum(DEMO_SERVER_NAMES, { error: `must list only ${DEMO_SERVER_NAMES.join(', ')}` })),
    ),
    DEMO_UPSTREAMS_SESSION_IDLE_MS: configFields.durationMs(30 * 60_000),
    DEMO_UPSTREAMS_SHUTDOWN_GRACE_MS: configFields.durationMs(5_000),
  })
  .transform((env) => ({
    nodeEnv: env.NODE_ENV,
    log: { level: env.LOG_LEVEL },
    http: {
      host: env.DEMO_UPSTREAMS_HOST,
      port: env.DEMO_UPSTREAMS_PORT,
      mountedServers: [...new Set(env.DEMO_UPSTREAMS_SERVERS)],
      sessionIdleTimeoutMs: env.DEMO_UPSTREAMS_SESSION_IDLE_MS,
      shutdownGraceMs: env.DEMO_UPSTREAMS_SHUTDOWN_GRACE_MS,
    },
  }));

export type DemoUpstreamsConfig = z.output<typeof demoUpstreamsConfigSchema>;

/** The stdio entry point only needs a log level (its logs go to stderr). */
export const demoStdioConfigSchema = z
  .object({ LOG_LEVEL: configFields.logLevel })
  .transform((env) => ({ log: { level: env.LOG_LEVEL } }));
