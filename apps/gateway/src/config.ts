import { keyringSpecField } from '@portcullis/auth/secrets';
import { configFields as f, type DeepReadonly } from '@portcullis/shared/util-config';
import { z } from 'zod';

const TOOL_NAME_CHARS = /^[A-Za-z0-9_.-]{1,8}$/;

/**
 * The gateway's Redis client (sessions, task routes, the bus's publishes) fails a command not answered in this long:
 * a Redis that stops answering (a partition) then answers an initialize 503 instead of holding it without end.
 */
export const REDIS_COMMAND_TIMEOUT_MS = 3_000;

export const gatewayConfigSchema = z
  .object({
    NODE_ENV: f.nodeEnv,
    LOG_LEVEL: f.logLevel,
    GATEWAY_HOST: f.listenHost('127.0.0.1'),
    GATEWAY_PORT: f.port(3200),
    /**
     * Prometheus metrics (`GET /metrics`) on a listener of their own, never on the agents' port: unset or empty = off;
     * 0 = any free port. The host defaults to loopback: metrics name tenants.
     */
    GATEWAY_METRICS_PORT: f.unsetIfEmpty(z.coerce.number().int().min(0).max(65535).optional()),
    GATEWAY_METRICS_HOST: f.listenHost('127.0.0.1'),
    GATEWAY_BODY_LIMIT_BYTES: z.coerce.number().int().min(1_024).max(50 * 1024 * 1024).default(4 * 1024 * 1024),
    /** Longest a client may take to send a whole request, headers and body (408 and the socket closed past it). */
    GATEWAY_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1_000).max(3_600_000).default(30_000),
    GATEWAY_TRUST_PROXY: f.trustedProxies,
    /** Host header values accepted on the MCP endpoints (`host` or `host:port`); empty accepts any. */
    GATEWAY_ALLOWED_HOSTS: f.hosts,
    /** Browser origins allowed to call the MCP endpoints (`*` for any); requests without Origin always pass. */
    GATEWAY_ALLOWED_ORIGINS: f.origins,
    /**
     * Between an upstream's tool prefix and the tool's own name. The control plane accepts prefixes of lowercase
     * letters, digits and single inner underscores: a separator of such characters (or one underscore) could occur in
     * a prefix it accepted, and that upstream would then be dropped here instead of refused when it was saved.
     */
    GATEWAY_TOOL_SEPARATOR: z
      .string()
      .regex(TOOL_NAME_CHARS, 'must be 1–8 characters of A-Z a-z 0-9 _ . -')
      .refine((separator) => !/[a-z0-9]/.test(separator) && separator !== '_', 'must not contain lowercase letters or digits, nor be a single "_" (tool prefixes may contain those)')
      .default('__'),
    /** Idle timeout of an MCP session (Redis TTL). */
    GATEWAY_SESSION_IDLE_MS: f.durationMs(30 * 60_000),
    /** Resumable SSE streams: a stream's replay log lives this long after its last message, within this many bytes. */
    GATEWAY_SSE_REPLAY_TTL_MS: f.durationMs(5 * 60_000),
    GATEWAY_SSE_REPLAY_MAX_BYTES: z.coerce.number().int().min(0).max(64 * 1024 * 1024).default(1024 * 1024),
    /**
     * Longest an agent's open response goes without a byte: SSE streams get a comment this often, and a POST whose
     * answer is this long in coming (a slow tool, a call held for approval) becomes a stream that gets them, so
     * proxies and load balancers that close idle connections (60 s is a common default) leave it open.
     */
    GATEWAY_SSE_KEEPALIVE_MS: z.coerce.number().int().min(50).max(300_000).default(15_000),
    /** Bound on each upstream's part of a merged listing. */
    GATEWAY_LIST_TIMEOUT_MS: f.durationMs(5_000),
    /**
     * An upstream a session lacks (down at its initialize, or added since) is tried again for it at most this often: on
     * its listings, and in the background while its agent listens on a standalone stream.
     */
    GATEWAY_UPSTREAM_JOIN_RETRY_MS: z.coerce.number().int().min(100).max(3_600_000).default(15_000),
    /**
     * How long an upstream session opened for an agent's session holds the upstream's stream for messages outside
     * requests (a Streamable HTTP upstream's GET) whether or not the agent listens; after that, only while the agent
     * listens on some replica. 0: only while it listens.
     */
    GATEWAY_UPSTREAM_FIRST_LISTEN_MS: z.coerce.number().int().min(0).max(600_000).default(30_000),
    /** Most sessions one agent client or user may hold at once (all replicas); 0: no bound. */
    GATEWAY_MAX_SESSIONS_PER_PRINCIPAL: z.coerce.number().int().min(0).max(1_000_000).default(1_000),
    /** Longest initialize waits for upstreams to connect; a slower one joins the session once connected. */
    GATEWAY_INITIALIZE_WAIT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
    /**
     * Longest an upstream's request to the agent (sampling, elicitation, roots) waits for the answer when no call of the
     * agent's bounds it: sent on the standalone stream, or about a task. One made during a call ends with the call.
     */
    GATEWAY_RELAY_TIMEOUT_MS: z.coerce.number().int().min(1_000).max(3_600_000).default(300_000),
    /**
     * A session reuses an upstream's listing page this long before asking again; the upstream's list_changed
     * notification drops it at once. 0: every listing asks the upstreams.
     */
    GATEWAY_LIST_CACHE_MS: z.coerce.number().int().min(0).max(600_000).default(15_000),
    /** Bound on the listing pages cached for all sessions of a replica (memory): past it the oldest page goes. */
    GATEWAY_LIST_CACHE_MAX_PAGES: z.coerce.number().int().min(1).max(1_000_000).default(2_000),
    /** Bound on the cached listing pages' approximate size for the replica, in MiB (a page over 1/16 of it is not cached). */
    GATEWAY_LIST_CACHE_MAX_MB: z.coerce.number().int().min(1).max(65_536).default(256),
    /**
     * Bound on the bytes of upstream answers a replica holds while they arrive, in MiB, counted past each call's first
     * 256 KiB: a call whose answer would pass it fails as `overloaded` (see HeldAnswers).
     */
    GATEWAY_HELD_ANSWERS_MAX_MB: z.coerce.number().int().min(1).max(65_536).default(256),
    /** The same bound for one tenant's calls (at most GATEWAY_HELD_ANSWERS_MAX_MB); unset: a quarter of it. */
    GATEWAY_HELD_ANSWERS_TENANT_MAX_MB: f.unsetIfEmpty(z.coerce.number().int().min(1).max(65_536).optional()),
    /** Periodic reload of the tenant, API key and upstream snapshots (pub/sub notices reload at once). */
    GATEWAY_SNAPSHOT_REFRESH_MS: f.durationMs(30_000),
    /**
     * API keys and tenants older than this (no reload has succeeded for so long: the database is out of reach) are no
     * longer trusted: API-key requests get 503 until a reload succeeds, so a key revoked or a tenant suspended meanwhile
     * is not accepted indefinitely. 0 keeps serving from the last copy however old.
     */
    GATEWAY_CREDENTIALS_MAX_AGE_MS: z.coerce.number().int().min(0).max(7 * 24 * 3_600_000).default(10 * 60_000),
    /** Policy snapshots: compare (version, checksum) with the database this often, so a missed notice heals. */
    GATEWAY_POLICY_RECONCILE_MS: f.durationMs(5_000),
    /** Policy snapshots: poll this often while Redis notices are unavailable (or the database is failing). */
    GATEWAY_POLICY_POLL_MS: f.durationMs(1_000),
    /** A call the policy holds for approval fails after this long without a decision (its approval expires). */
    GATEWAY_APPROVAL_TIMEOUT_MS: f.durationMs(10 * 60_000),
    /** Held calls: check their approvals in the database this often (Redis notices are the fast path). */
    GATEWAY_APPROVAL_POLL_MS: f.durationMs(5_000),
    /** Held calls: progress notifications this often to an agent that sent a progress token. */
    GATEWAY_APPROVAL_PROGRESS_MS: f.durationMs(10_000),
    /** Let URL upstreams reach loopback/private addresses (development and tests). */
    GATEWAY_UPSTREAM_ALLOW_PRIVATE: f.booleanFlag(false),
    /**
     * Host names (or addresses) of upstreams that may be private without opening every private address to every tenant:
     * the gateway's counterpart of CONTROL_PLANE_UPSTREAM_ALLOWED_HOSTS (give both the same list).
     */
    GATEWAY_UPSTREAM_ALLOWED_HOSTS: f.csv,
    /**
     * The exact commands stdio upstreams may run on this gateway: the gateway's counterpart of
     * CONTROL_PLANE_STDIO_COMMAND_ALLOWLIST (give both the same list), so a command taken off the list stops being run
     * here too, and a row written past the control plane runs nothing else. Unset or empty: what the control plane
     * allowed when it was saved.
     */
    GATEWAY_STDIO_COMMAND_ALLOWLIST: f.csv,
    GATEWAY_STDIO_MAX_PROCESSES: z.coerce.number().int().min(1).max(64).default(4),
    GATEWAY_STDIO_IDLE_MS: f.durationMs(5 * 60_000),
    // uid:gid for stdio servers (numbers): another user than the gateway's, so they cannot read its environment.
    GATEWAY_STDIO_RUN_AS: f.runAsUser,
    /**
     * Instead of GATEWAY_STDIO_RUN_AS: `first-last` user ids (and groups of the same numbers), one of its own for each
     * running stdio server, so that servers cannot read each other's environment (another tenant's credentials).
     * Ids no account uses; they need not exist in /etc/passwd.
     */
    GATEWAY_STDIO_UID_RANGE: f.uidRange,
    /** Rate limits (tenant settings and policy rules): off only for benchmarks and debugging. */
    GATEWAY_RATE_LIMITS_ENABLED: f.booleanFlag(true),
    /** Redis of the shared rate-limit counters; defaults to REDIS_URL. */
    GATEWAY_RATE_LIMIT_REDIS_URL: f.unsetIfEmpty(f.redisUrl.optional()),
    /** A counter check slower than this counts as Redis being unavailable (the tenant's fail mode applies). */
    GATEWAY_RATE_LIMIT_TIMEOUT_MS: f.durationMs(250),
    /**
     * Longest a call holds a concurrency slot if its replica dies mid-call: longer than the approval timeout plus the
     * longest call timeout (a call needing approval takes its slot before the wait).
     */
    GATEWAY_RATE_LIMIT_LEASE_MS: f.durationMs(15 * 60_000),
    /**
     * Largest block of calls one replica counts in Redis at once and then admits from memory (request-rate limits;
     * never more than the limit in total). 1 = every call asks Redis.
     */
    GATEWAY_RATE_LIMIT_MAX_QUOTA_LEASE: z.coerce.number().int().min(1).max(100_000).default(1_000),
    /** Audit events for every MCP request: off only for benchmarks and debugging. */
    GATEWAY_AUDIT_ENABLED: f.booleanFlag(true),
    /** Redis of the audit queue; defaults to REDIS_URL. */
    GATEWAY_AUDIT_REDIS_URL: f.unsetIfEmpty(f.redisUrl.optional()),
    /** Events held in memory before they spill to the spool. */
    GATEWAY_AUDIT_BUFFER_MAX: z.coerce.number().int().min(100).max(1_000_000).default(20_000),
    GATEWAY_AUDIT_FLUSH_MS: f.durationMs(100),
    GATEWAY_AUDIT_BATCH_SIZE: z.coerce.number().int().min(1).max(5_000).default(500),
    /**
     * Shape of the jobs sent to the audit queue: `batch` (rows, the default), or for gateways upgraded before their
     * audit workers `batch-v1` (event objects) or `event` (one job per event). ADR 0010.
     */
    GATEWAY_AUDIT_JOB_FORMAT: z.enum(['batch', 'batch-v1', 'event']).default('batch'),
    /**
     * This replica's own directory for the local audit spool (events kept while Redis is away). Unset: an in-memory
     * spool, lost on a crash, and fail-closed tenants are refused while the queue is down (a warning at boot).
     */
    GATEWAY_AUDIT_SPOOL_DIR: f.unsetIfEmpty(z.string().trim().min(1).optional()),
    GATEWAY_AUDIT_SPOOL_MAX_BYTES: z.coerce.number().int().min(1_024).default(256 * 1024 * 1024),
    /** BullMQ key prefix; the audit worker's QUEUE_PREFIX must be the same. */
    QUEUE_PREFIX: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'lowercase letters, digits and hyphens, at most 40')
      .default('portcullis'),
    /**
     * `<key-id>:<base64 32 bytes>[,...]` (checked with parseKeyring, as the control plane's keyring) opening upstream
     * headers/env sealed by the control plane. Required in production.
     */
    GATEWAY_SECRETS_KEYRING: keyringSpecField,
    DATABASE_URL: f.postgresUrl,
    /**
     * `portcullis_system` (BYPASSRLS): the snapshot loaders read every tenant's keys and upstreams. Required in
     * production; without it (development, tests of the app shell) the MCP endpoints know no tenants.
     */
    DATABASE_SYSTEM_URL: f.postgresUrl.optional(),
    REDIS_URL: f.redisUrl,
    SHUTDOWN_GRACE_MS: f.durationMs(10_000),
  })
  .superRefine((env, ctx) => {
    if (env.GATEWAY_STDIO_RUN_AS !== undefined && env.GATEWAY_STDIO_UID_RANGE !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['GATEWAY_STDIO_UID_RANGE'], message: 'cannot be set together with GATEWAY_STDIO_RUN_AS (one user for all, or one each)' });
    }
    if (env.GATEWAY_HELD_ANSWERS_TENANT_MAX_MB !== undefined && env.GATEWAY_HELD_ANSWERS_TENANT_MAX_MB > env.GATEWAY_HELD_ANSWERS_MAX_MB) {
      ctx.addIssue({ code: 'custom', path: ['GATEWAY_HELD_ANSWERS_TENANT_MAX_MB'], message: 'must not be more than GATEWAY_HELD_ANSWERS_MAX_MB (the bound for all tenants together)' });
    }
    const maxAge = env.GATEWAY_CREDENTIALS_MAX_AGE_MS;
    if (maxAge > 0 && maxAge < 2 * env.GATEWAY_SNAPSHOT_REFRESH_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['GATEWAY_CREDENTIALS_MAX_AGE_MS'],
        message: 'must be 0 (off) or at least twice GATEWAY_SNAPSHOT_REFRESH_MS (one failed reload must not stop the gateway)',
      });
    }
    // A call holds its concurrency slot from before an approval wait until it ends: a lease shorter than the wait
    // would expire under held calls and let more in than the limit allows.
    if (env.GATEWAY_RATE_LIMIT_LEASE_MS <= env.GATEWAY_APPROVAL_TIMEOUT_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['GATEWAY_RATE_LIMIT_LEASE_MS'],
        message: 'must be longer than GATEWAY_APPROVAL_TIMEOUT_MS (a held call keeps its concurrency slot while it waits; each call adds its upstream\'s call timeout)',
      });
    }
    // A stream waiting for its answer renews its replay log once per keep-alive interval: a shorter lifetime would let
    // the log lapse between renewals, and an agent resuming then would never get the answer.
    if (env.GATEWAY_SSE_REPLAY_MAX_BYTES > 0 && env.GATEWAY_SSE_REPLAY_TTL_MS <= 2 * env.GATEWAY_SSE_KEEPALIVE_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['GATEWAY_SSE_REPLAY_TTL_MS'],
        message: 'must be more than twice GATEWAY_SSE_KEEPALIVE_MS (a stream waiting for its answer renews its replay log once per keep-alive interval)',
      });
    }
    if (env.NODE_ENV !== 'production') return;
    if (env.GATEWAY_SECRETS_KEYRING === undefined) {
      ctx.addIssue({ code: 'custom', path: ['GATEWAY_SECRETS_KEYRING'], message: 'is required in production' });
    }
    if (env.DATABASE_SYSTEM_URL === undefined) {
      ctx.addIssue({ code: 'custom', path: ['DATABASE_SYSTEM_URL'], message: 'is required in production' });
    }
  })
  .transform((env) => ({
    nodeEnv: env.NODE_ENV,
    log: { level: env.LOG_LEVEL },
    http: {
      host: env.GATEWAY_HOST,
      port: env.GATEWAY_PORT,
      bodyLimitBytes: env.GATEWAY_BODY_LIMIT_BYTES,
      requestTimeoutMs: env.GATEWAY_REQUEST_TIMEOUT_MS,
      trustProxy: env.GATEWAY_TRUST_PROXY,
      // Clients leave a scheme's default port out of Host (`https://gw.example.com:443/` sends `gw.example.com`): an
      // entry naming port 80 or 443 also allows the bare host, else it could never match and every request got 403.
      allowedHosts: [...new Set(env.GATEWAY_ALLOWED_HOSTS.flatMap((entry) => {
        const host = entry.toLowerCase();
        const bare = /^(.*):(?:80|443)$/.exec(host)?.[1];
        return bare === undefined ? [host] : [host, bare];
      }))],
      allowedOrigins: env.GATEWAY_ALLOWED_ORIGINS.map((origin) => origin.toLowerCase()),
    },
    mcp: {
      toolSeparator: env.GATEWAY_TOOL_SEPARATOR,
      sessionIdleMs: env.GATEWAY_SESSION_IDLE_MS,
      sseReplay: {
        ttlMs: env.GATEWAY_SSE_REPLAY_TTL_MS,
        maxBytes: env.GATEWAY_SSE_REPLAY_MAX_BYTES,
        // A running stream's writer renews its lease about once a keep-alive interval: two and a half intervals, and
        // never less than one interval and 10 s, leave room for a late timer, a long GC pause or a Redis reconnect. A
        // replica that dies is found out about that soon (ADR 0007).
        leaseMs: Math.max(Math.ceil(2.5 * env.GATEWAY_SSE_KEEPALIVE_MS), env.GATEWAY_SSE_KEEPALIVE_MS + 10_000),
      },
      sseKeepAliveMs: env.GATEWAY_SSE_KEEPALIVE_MS,
      listTimeoutMs: env.GATEWAY_LIST_TIMEOUT_MS,
      joinRetryMs: env.GATEWAY_UPSTREAM_JOIN_RETRY_MS,
      firstListenMs: env.GATEWAY_UPSTREAM_FIRST_LISTEN_MS,
      initializeWaitMs: env.GATEWAY_INITIALIZE_WAIT_MS,
      relayTimeoutMs: env.GATEWAY_RELAY_TIMEOUT_MS,
      maxSessionsPerPrincipal: env.GATEWAY_MAX_SESSIONS_PER_PRINCIPAL,
      listCacheMs: env.GATEWAY_LIST_CACHE_MS,
      listCacheMaxPages: env.GATEWAY_LIST_CACHE_MAX_PAGES,
      listCacheMaxBytes: env.GATEWAY_LIST_CACHE_MAX_MB * 1024 * 1024,
      snapshotRefreshMs: env.GATEWAY_SNAPSHOT_REFRESH_MS,
      credentialsMaxAgeMs: env.GATEWAY_CREDENTIALS_MAX_AGE_MS,
    },
    policy: { reconcileMs: env.GATEWAY_POLICY_RECONCILE_MS, pollMs: env.GATEWAY_POLICY_POLL_MS },
    approvals: { timeoutMs: env.GATEWAY_APPROVAL_TIMEOUT_MS, pollMs: env.GATEWAY_APPROVAL_POLL_MS, progressMs: env.GATEWAY_APPROVAL_PROGRESS_MS },
    upstreams: {
      allowPrivateNetworks: env.GATEWAY_UPSTREAM_ALLOW_PRIVATE,
      allowedHosts: env.GATEWAY_UPSTREAM_ALLOWED_HOSTS.map((host) => host.toLowerCase()),
      stdioCommandAllowlist: env.GATEWAY_STDIO_COMMAND_ALLOWLIST.length > 0 ? env.GATEWAY_STDIO_COMMAND_ALLOWLIST : null,
      stdioMaxProcesses: env.GATEWAY_STDIO_MAX_PROCESSES,
      stdioIdleMs: env.GATEWAY_STDIO_IDLE_MS,
      stdioRunAs: env.GATEWAY_STDIO_RUN_AS,
      stdioUidRange: env.GATEWAY_STDIO_UID_RANGE,
      heldAnswersMaxBytes: env.GATEWAY_HELD_ANSWERS_MAX_MB * 1024 * 1024,
      heldAnswersTenantMaxBytes: (env.GATEWAY_HELD_ANSWERS_TENANT_MAX_MB ?? env.GATEWAY_HELD_ANSWERS_MAX_MB / 4) * 1024 * 1024,
    },
    rateLimits: {
      enabled: env.GATEWAY_RATE_LIMITS_ENABLED,
      redisUrl: env.GATEWAY_RATE_LIMIT_REDIS_URL ?? env.REDIS_URL,
      timeoutMs: env.GATEWAY_RATE_LIMIT_TIMEOUT_MS,
      leaseMs: env.GATEWAY_RATE_LIMIT_LEASE_MS,
      maxQuotaLease: env.GATEWAY_RATE_LIMIT_MAX_QUOTA_LEASE,
    },
    audit: {
      enabled: env.GATEWAY_AUDIT_ENABLED,
      redisUrl: env.GATEWAY_AUDIT_REDIS_URL ?? env.REDIS_URL,
      queuePrefix: env.QUEUE_PREFIX,
      bufferMax: env.GATEWAY_AUDIT_BUFFER_MAX,
      flushMs: env.GATEWAY_AUDIT_FLUSH_MS,
      batchSize: env.GATEWAY_AUDIT_BATCH_SIZE,
      jobFormat: env.GATEWAY_AUDIT_JOB_FORMAT,
      spoolDir: env.GATEWAY_AUDIT_SPOOL_DIR ?? null,
      spoolMaxBytes: env.GATEWAY_AUDIT_SPOOL_MAX_BYTES,
    },
    secrets: { keyring: env.GATEWAY_SECRETS_KEYRING ?? null },
    metrics: env.GATEWAY_METRICS_PORT === undefined ? null : { host: env.GATEWAY_METRICS_HOST, port: env.GATEWAY_METRICS_PORT },
    database: { url: env.DATABASE_URL, systemUrl: env.DATABASE_SYSTEM_URL ?? null },
    redis: { url: env.REDIS_URL },
    shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
  }));

export type GatewayConfig = DeepReadonly<z.output<typeof gatewayConfigSchema>>;
