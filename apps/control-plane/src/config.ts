import { keyringSpecField } from '@portcullis/auth/secrets';
import { configFields as f } from '@portcullis/shared/util-config';
import { z } from 'zod';

/**
 * Development-only defaults for the two secrets, so `npm start` and the e2e tests run without set-up. They are in
 * this repository, so anyone could sign tokens with them: refused when NODE_ENV=production and whenever the API
 * listens beyond loopback (CONTROL_PLANE_HOST) — a deployment that forgot NODE_ENV must not fall back to them.
 */
const DEV_JWT_SECRET = 'development-only-control-plane-jwt-secret-not-for-production';
const DEV_KEYRING = `dev:${Buffer.alloc(32, 7).toString('base64')}`;

/** The token fields, shared by the server and the bootstrap command. */
const tokenFields = {
  NODE_ENV: f.nodeEnv,
  CONTROL_PLANE_JWT_SECRET: f.unsetIfEmpty(f.secret(32).optional()),
  CONTROL_PLANE_JWT_ISSUER: z.string().min(1).default('portcullis'),
  CONTROL_PLANE_JWT_AUDIENCE: z.string().min(1).default('portcullis-control-plane'),
  CONTROL_PLANE_JWT_TTL_SECONDS: z.coerce.number().int().min(30).max(900).default(900),
  CONTROL_PLANE_JWT_CLOCK_TOLERANCE_SECONDS: z.coerce.number().int().min(0).max(60).default(5),
};

type TokenEnv = z.output<z.ZodObject<typeof tokenFields>>;

const requireInProduction = (env: { NODE_ENV: string }, value: unknown, key: string, ctx: z.RefinementCtx) => {
  if (env.NODE_ENV === 'production' && value === undefined) {
    ctx.addIssue({ code: 'custom', path: [key], message: 'is required when NODE_ENV=production' });
  }
};

const isLoopbackHost = f.isLoopbackHost;

const tokenSettings = (env: TokenEnv) => ({
  secret: env.CONTROL_PLANE_JWT_SECRET ?? DEV_JWT_SECRET,
  issuer: env.CONTROL_PLANE_JWT_ISSUER,
  audience: env.CONTROL_PLANE_JWT_AUDIENCE,
  ttlSeconds: env.CONTROL_PLANE_JWT_TTL_SECONDS,
  clockToleranceSeconds: env.CONTROL_PLANE_JWT_CLOCK_TOLERANCE_SECONDS,
});

export const controlPlaneConfigSchema = z
  .object({
    ...tokenFields,
    LOG_LEVEL: f.logLevel,
    CONTROL_PLANE_HOST: f.listenHost('127.0.0.1'),
    CONTROL_PLANE_PORT: f.port(3100),
    CONTROL_PLANE_BODY_LIMIT_BYTES: z.coerce.number().int().min(1_024).max(50 * 1024 * 1024).default(1024 * 1024),
    CONTROL_PLANE_TRUST_PROXY: f.trustedProxies,
    /**
     * Prometheus metrics (`GET /metrics`) on a listener of their own, never on the API's port: unset or empty = off;
     * 0 = any free port. The host defaults to loopback.
     */
    CONTROL_PLANE_METRICS_PORT: z.preprocess((value) => (value === '' ? undefined : value), z.coerce.number().int().min(0).max(65535).optional()),
    CONTROL_PLANE_METRICS_HOST: f.listenHost('127.0.0.1'),
    /**
     * Serve the OpenAPI description and its UI at /api/docs, to anyone (they describe the API, no data). Default: on
     * outside production, off in production unless set.
     */
    CONTROL_PLANE_OPENAPI: z.preprocess(
      (value) => (value === '' ? undefined : value),
      z
        .enum(['true', 'false', '1', '0'])
        .optional()
        .transform((value) => (value === undefined ? undefined : value === 'true' || value === '1')),
    ),
    /** `<key-id>:<base64 32 bytes>[,...]`; the first key seals new secrets, the others still open old ones. */
    CONTROL_PLANE_SECRETS_KEYRING: keyringSpecField,
    /** Exact commands stdio upstreams may run, comma-separated. Empty (default): no stdio upstreams. */
    CONTROL_PLANE_STDIO_COMMAND_ALLOWLIST: f.csv,
    /**
     * uid:gid the stdio servers of test connections run as (numbers): another user than the control plane's, so they
     * cannot read its environment (the secrets keyring, the database URL). As GATEWAY_STDIO_RUN_AS.
     */
    CONTROL_PLANE_STDIO_RUN_AS: f.runAsUser,
    /**
     * Instead of CONTROL_PLANE_STDIO_RUN_AS: `first-last` user ids (and groups of the same numbers), one of its own for
     * each test connection's stdio server, so that no server, nor a helper it leaves running, can read another test's
     * environment (another tenant's credentials). Ids no account uses, apart from the gateways' ranges. As
     * GATEWAY_STDIO_UID_RANGE.
     */
    CONTROL_PLANE_STDIO_UID_RANGE: f.uidRange,
    /** Test connection may reach loopback/private/link-local upstreams (set it like GATEWAY_UPSTREAM_ALLOW_PRIVATE). */
    CONTROL_PLANE_UPSTREAM_ALLOW_PRIVATE: f.booleanFlag(false),
    /** Host names or IP literals test connection may reach even when private, comma-separated. */
    CONTROL_PLANE_UPSTREAM_ALLOWED_HOSTS: f.csv,
    CONTROL_PLANE_UPSTREAM_TEST_TIMEOUT_MS: f.durationMs(10_000),
    /** Most tool, prompt and resource definitions stored per upstream, removed ones included. */
    CONTROL_PLANE_UPSTREAM_MAX_DEFINITIONS: z.coerce.number().int().min(100).max(1_000_000).default(25_000),
    /** How long a request waits for Redis to take an audit job or change notice before logging and moving on. */
    CONTROL_PLANE_REDIS_WRITE_TIMEOUT_MS: f.durationMs(1_000),
    QUEUE_PREFIX: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'lowercase letters, digits and hyphens, at most 40')
      .default('portcullis'),
    /** Where the audit worker writes export files (the same directory as the worker's AUDIT_EXPORT_DIR). */
    AUDIT_EXPORT_DIR: z.string().min(1).default('tmp/audit-exports'),
    /** Most rows a synchronous `GET .../audit/events.csv|.jsonl` may return; larger exports run as worker jobs. */
    AUDIT_SYNC_EXPORT_MAX_ROWS: z.coerce.number().int().min(1).max(1_000_000).default(50_000),
    /**
     * The audit worker's public key(s), a PEM file of PUBLIC KEY blocks (`<prefix>.pub` of `npm run audit:keygen`):
     * `GET .../audit/verify` then checks the signed anchors and the retention checkpoint too.
     */
    AUDIT_VERIFY_KEYS_FILE: z.string().trim().min(1).optional(),
    DATABASE_URL: f.postgresUrl,
    REDIS_URL: f.redisUrl,
    SHUTDOWN_GRACE_MS: f.durationMs(10_000),
  })
  .superRefine((env, ctx) => {
    if (env.CONTROL_PLANE_STDIO_RUN_AS !== undefined && env.CONTROL_PLANE_STDIO_UID_RANGE !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['CONTROL_PLANE_STDIO_UID_RANGE'], message: 'cannot be set together with CONTROL_PLANE_STDIO_RUN_AS (one user for all, or one each)' });
    }
    requireInProduction(env, env.CONTROL_PLANE_JWT_SECRET, 'CONTROL_PLANE_JWT_SECRET', ctx);
    requireInProduction(env, env.CONTROL_PLANE_SECRETS_KEYRING, 'CONTROL_PLANE_SECRETS_KEYRING', ctx);
    // Reachable beyond this host: listening beyond loopback, or behind a proxy (a loopback listener behind nginx or a
    // sidecar answers whoever the proxy serves; found by review).
    const reachable = !isLoopbackHost(env.CONTROL_PLANE_HOST) ? 'CONTROL_PLANE_HOST is not a loopback address' : env.CONTROL_PLANE_TRUST_PROXY !== false ? 'CONTROL_PLANE_TRUST_PROXY names a proxy in front' : null;
    if (env.NODE_ENV !== 'production' && reachable !== null) {
      for (const key of ['CONTROL_PLANE_JWT_SECRET', 'CONTROL_PLANE_SECRETS_KEYRING'] as const) {
        if (env[key] === undefined) {
          ctx.addIssue({ code: 'custom', path: [key], message: `is required when ${reachable} (the development default is public)` });
        }
      }
    }
  })
  .transform((env) => ({
    nodeEnv: env.NODE_ENV,
    log: { level: env.LOG_LEVEL },
    http: {
      host: env.CONTROL_PLANE_HOST,
      port: env.CONTROL_PLANE_PORT,
      bodyLimitBytes: env.CONTROL_PLANE_BODY_LIMIT_BYTES,
      trustProxy: env.CONTROL_PLANE_TRUST_PROXY,
      openApi: env.CONTROL_PLANE_OPENAPI ?? env.NODE_ENV !== 'production',
    },
    auth: {
      token: tokenSettings(env),
      usingDevelopmentSecret: env.CONTROL_PLANE_JWT_SECRET === undefined,
    },
    secrets: {
      keyringSpec: env.CONTROL_PLANE_SECRETS_KEYRING ?? DEV_KEYRING,
      usingDevelopmentKeyring: env.CONTROL_PLANE_SECRETS_KEYRING === undefined,
    },
    upstreams: {
      stdioCommandAllowlist: env.CONTROL_PLANE_STDIO_COMMAND_ALLOWLIST,
      stdioRunAs: env.CONTROL_PLANE_STDIO_RUN_AS,
      stdioUidRange: env.CONTROL_PLANE_STDIO_UID_RANGE,
      network: { allowPrivateNetworks: env.CONTROL_PLANE_UPSTREAM_ALLOW_PRIVATE, allowedHosts: env.CONTROL_PLANE_UPSTREAM_ALLOWED_HOSTS },
      testTimeoutMs: env.CONTROL_PLANE_UPSTREAM_TEST_TIMEOUT_MS,
      maxStoredDefinitions: env.CONTROL_PLANE_UPSTREAM_MAX_DEFINITIONS,
    },
    metrics: env.CONTROL_PLANE_METRICS_PORT === undefined ? null : { host: env.CONTROL_PLANE_METRICS_HOST, port: env.CONTROL_PLANE_METRICS_PORT },
    queue: { prefix: env.QUEUE_PREFIX },
    redisWriteTimeoutMs: env.CONTROL_PLANE_REDIS_WRITE_TIMEOUT_MS,
    audit: { exportDir: env.AUDIT_EXPORT_DIR, syncExportMaxRows: env.AUDIT_SYNC_EXPORT_MAX_ROWS, verifyKeysFile: env.AUDIT_VERIFY_KEYS_FILE ?? null },
    database: { url: env.DATABASE_URL },
    redis: { url: env.REDIS_URL },
    shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
  }));

export type ControlPlaneConfig = z.output<typeof controlPlaneConfigSchema>;

/** What the bootstrap command needs: the database and the token settings. */
export const bootstrapConfigSchema = z
  .object({ ...tokenFields, DATABASE_SYSTEM_URL: f.postgresUrl })
  .superRefine((env, ctx) => requireInProduction(env, env.CONTROL_PLANE_JWT_SECRET, 'CONTROL_PLANE_JWT_SECRET', ctx))
  .transform((env) => ({
    token: tokenSettings(env),
    usingDevelopmentSecret: env.CONTROL_PLANE_JWT_SECRET === undefined,
    database: { systemUrl: env.DATABASE_SYSTEM_URL },
  }));

export type BootstrapConfig = z.output<typeof bootstrapConfigSchema>;
