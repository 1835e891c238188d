import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import { parseKeyring, type Keyring } from '@portcullis/auth/secrets';
import type { Redis } from '@portcullis/data/redis';
import type { PortcullisPrismaClient, SystemPrismaClient } from '@portcullis/data/db';
import {
  ApiKeyAuthenticator,
  credentialsAfterApproval,
  ApiKeyIndex,
  assertValidSeparator,
  composeHooks,
  createRedisReplicaBus,
  createRefresher,
  RedisReplayLog,
  registerMcpRoutes,
  SessionEngine,
  TenantIndex,
  UpstreamRegistry,
  type ApiKeyEntry,
  type BusMessage,
  type ReplicaBus,
  type RequestHooks,
} from '@portcullis/gateway/core';
import { policyHooks, SnapshotCache } from '@portcullis/gateway/policy-cache';
import { HeldCallGate, PrismaApprovalStore } from '@portcullis/gateway/approvals';
import { RedisSessionStore, RedisTaskRouteStore, type SessionOwner, type UpstreamConnector } from '@portcullis/gateway/mcp';
import { pinningAfterApproval, pinningAroundPolicy, ToolPinIndex, toolPinningHooks } from '@portcullis/gateway/tool-pinning';
import { auditHooks, createAuditEmitter, createAuditQueueProducer, type AuditEmitter } from '@portcullis/gateway/audit-emitter';
import { createRateLimitRedis, DEFAULT_LEASE_OPTIONS, rateLimitHooks, RateLimitService } from '@portcullis/gateway/rate-limit';
import type { TenantSettings } from '@portcullis/contracts/api';
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import type { Logger } from '@portcullis/shared/util-logger';
import { ChannelSubscription } from './channel-subscription';
import { createGatewayMetrics } from './metrics';
import type { GatewayConfig } from './config';
import { loadApiKeys, loadTenantSettings, loadTenants, loadToolPins, loadUpstreams, policySnapshotSource } from './snapshot-loaders';

export interface DataPlaneDeps {
  readonly config: GatewayConfig;
  readonly logger: Logger;
  /** Null: no DATABASE_SYSTEM_URL (development only): the endpoints know no tenants. */
  readonly systemDb: SystemPrismaClient | null;
  /** The application role (RLS applies): held calls write their approvals here. Null: require_approval calls fail. */
  readonly appDb?: PortcullisPrismaClient | null;
  /** Commands (session records, publishes). */
  readonly redis: Redis;
  /** A dedicated connection for SUBSCRIBE. */
  readonly subscriber: Redis;
  readonly connector: UpstreamConnector;
  readonly replicaId?: string;
}

export interface DataPlane {
  readonly replicaId: string;
  /** Every tenant's compiled policy snapshot in force on this replica. */
  readonly policies: SnapshotCache;
  /** Calls held for approval on this replica (undefined without `appDb`). */
  readonly approvals: HeldCallGate | undefined;
  /** The audit emitter (null when GATEWAY_AUDIT_ENABLED is false): tests flush it; close() flushes it. */
  readonly audit: AuditEmitter | null;
  /** The port `GET /metrics` is served on (undefined: GATEWAY_METRICS_PORT unset). */
  readonly metricsPort: number | undefined;
  /** Reloads every snapshot now (tests; the periodic and pub/sub refreshes do this in production). */
  refreshAll(): Promise<void>;
  /** Whether the upstreams and tool pins have loaded once: until then every MCP request is answered 503 (readiness). */
  configurationLoaded(): boolean;
  /**
   * Stops serving: new requests get 503 at once, those under way get up to `drainMs` (default 0) to finish, then
   * streams close and what is left is cancelled.
   */
  close(drainMs?: number): Promise<void>;
}

/**
 * Builds the MCP request path around plain functions from libs/gateway/core and registers it on the
 * Fastify instance (before it listens): in-memory snapshots of tenants, API keys and upstreams kept fresh
 * from the database, sessions in Redis, cross-replica messages over pub/sub.
 */
export async function startDataPlane(app: FastifyInstance, deps: DataPlaneDeps): Promise<DataPlane> {
  const { config, logger, systemDb } = deps;
  assertValidSeparator(config.mcp.toolSeparator);
  const replicaId = deps.replicaId ?? randomBytes(6).toString('base64url');
  const keyring: Keyring | null = config.secrets.keyring === null ? null : parseKeyring(config.secrets.keyring);
  // GATEWAY_STDIO_COMMAND_ALLOWLIST: stdio upstreams running anything else are left out of the registry (logged).
  const stdioCommands = config.upstreams.stdioCommandAllowlist === null ? null : new Set(config.upstreams.stdioCommandAllowlist);
  if (systemDb === null) logger.warn('DATABASE_SYSTEM_URL is not set: the MCP endpoints know no tenants');
  if (keyring === null) logger.warn('GATEWAY_SECRETS_KEYRING is not set: upstreams with sealed secrets are skipped');

  const tenants = new TenantIndex();
  const apiKeys = new ApiKeyIndex();
  const registry = new UpstreamRegistry(config.mcp.toolSeparator);
  const toolPins = new ToolPinIndex();
  // Tenant settings (rate-limit and audit choices), reloaded with the tenants.
  let settings: ReadonlyMap<string, TenantSettings> = new Map();
  const settingsFor = (tenantId: string): TenantSettings | undefined => settings.get(tenantId);
  // Open SSE streams were authenticated when they opened: once the routes exist, every reload of the keys or tenants
  // ends those whose credential is no longer accepted.
  let credentialsChanged = (): void => undefined;
  // Set once the engine exists: the bus and the refreshers, made before it, reach it through this.
  const engineRef: { current?: SessionEngine } = {};
  // Tenants whose upstreams the last registry load changed (announced to their agents once the load is in force).
  const upstreamsChangedFor = new Set<string>();
  // Tenants whose tool pins the last loads changed (an approval, a block, a definition seen anew). Their agents are told
  // their lists changed once the pins are in force: an approved tool was otherwise announced only by the policy
  // snapshot's reload, which may come before the pins' (found by review: the agent listed, saw nothing, and was never
  // told again).
  const pinsChangedFor = new Set<string>();
  // Both refreshers load the pins, at once on every upstreams notice: a load that began before the pins in force were
  // read is not swapped in over them (it put an older state back for a moment, now told to agents as a change; found
  // by re-review).
  let pinLoadsStarted = 0;
  let pinLoadInForce = 0;
  const replacePins = (load: number, pins: Awaited<ReturnType<typeof loadToolPins>>): ReadonlySet<string> => {
    if (load < pinLoadInForce) return new Set();
    pinLoadInForce = load;
    return toolPins.replace(pins.rows, pins.requireApproval, pins.known);
  };
  const tenantsOf = (upstreamIds: Iterable<string>): Set<string> => {
    const tenants = new Set<string>();
    for (const upstreamId of upstreamIds) {
      const tenantId = registry.tenantOf(upstreamId);
      if (tenantId !== undefined) tenants.add(tenantId);
    }
    return tenants;
  };
  /** Tells the tenants whose pins changed (`told`: those told already by this load) that their lists changed. */
  const announcePinChanges = (told: ReadonlySet<string>): void => {
    const tenants = [...pinsChangedFor];
    pinsChangedFor.clear();
    const engine = engineRef.current;
    if (engine === undefined) return;
    for (const tenantId of tenants) if (!told.has(tenantId)) engine.listsChangedFor(tenantId);
  };
  const refused = sessionsOfRefused(engineRef, logger);
  // What the last loads found: the active tenants, the principals with a usable key.
  let activeTenants: ReadonlySet<string> = new Set();
  let knownTenants: ReadonlySet<string> = new Set();
  let withKeys: ReadonlySet<string> = new Set();
  // When each load began, and when what it found took effect here (requests authenticated against it).
  let tenantsLoadStarted = 0;
  let tenantsInEffect = 0;
  let keysLoadStarted = 0;
  let keysInEffect = 0;
  const refreshers = {
    tenants: createRefresher({
      name: 'tenants',
      intervalMs: config.mcp.snapshotRefreshMs,
      logger,
      now: monotonicNow,
      load: async () => {
        tenantsLoadStarted = Date.now();
        const loaded = systemDb ? await loadTenants(systemDb) : [];
        tenants.replace(loaded);
        tenantsInEffect = Date.now();
        settings = systemDb ? await loadTenantSettings(systemDb, logger, settings) : new Map();
        activeTenants = new Set(loaded.filter((tenant) => tenant.active).map((tenant) => tenant.id));
        knownTenants = new Set(loaded.map((tenant) => tenant.id));
      },
      // After loadedAt moved: streams are judged against the fresh copy, not as unverifiable. Then the sessions of
      // tenants no longer active end (their streams have just been told why).
      loaded: () => {
        credentialsChanged();
        refused.tenants({ known: knownTenants, active: activeTenants }, { began: tenantsLoadStarted, inEffect: tenantsInEffect });
      },
    }),
    apiKeys: createRefresher({
      name: 'api-keys',
      intervalMs: config.mcp.snapshotRefreshMs,
      logger,
      now: monotonicNow,
      load: async () => {
        keysLoadStarted = Date.now();
        const loaded = systemDb ? await loadApiKeys(systemDb) : [];
        apiKeys.replace(loaded);
        keysInEffect = Date.now();
        withKeys = usablePrincipals(loaded.map(([, entry]) => entry));
      },
      loaded: () => {
        credentialsChanged();
        refused.principals(withKeys, { began: keysLoadStarted, inEffect: keysInEffect });
      },
    }),
    upstreams: createRefresher({
      name: 'upstreams',
      intervalMs: config.mcp.snapshotRefreshMs,
      logger,
      load: async () => {
        // The pins first, in the same refresh: an upstream must never be in the registry before its pins are known (the
        // pinning hooks hold an upstream they do not know of, so a pin load that lags only hides it for a moment).
        const pinLoad = ++pinLoadsStarted;
        const [upstreams, pinned] = systemDb ? await Promise.all([loadUpstreams(systemDb, keyring, logger, { stdioCommands }), loadToolPins(systemDb)]) : [[], EMPTY_PINS];
        const pinsChanged = replacePins(pinLoad, pinned);
        const changed = registry.replace(upstreams, (upstream, reason) =>
          logger.error({ upstream: upstream.name, upstreamId: upstream.id, tenantId: upstream.tenantId, reason }, 'upstream rejected'),
        );
        for (const tenantId of changed) upstreamsChangedFor.add(tenantId);
        for (const tenantId of tenantsOf(pinsChanged)) pinsChangedFor.add(tenantId);
      },
      // Upstream sessions of upstreams gone from a tenant (or now connecting elsewhere) end here; agents listening here
      // hear that their lists changed, and an upstream added to a tenant joins their sessions.
      loaded: () => {
        const tenants = [...upstreamsChangedFor];
        upstreamsChangedFor.clear();
        const engine = engineRef.current;
        if (engine === undefined) return;
        for (const tenantId of tenants) {
          engine.retireDeparted(tenantId);
          engine.listsChangedFor(tenantId);
        }
        announcePinChanges(new Set(tenants));
        engine.joinMissingUpstreams();
      },
    }),
    toolPins: createRefresher({
      name: 'tool-pins',
      intervalMs: config.mcp.snapshotRefreshMs,
      logger,
      load: async () => {
        const pinLoad = ++pinLoadsStarted;
        const loaded = systemDb ? await loadToolPins(systemDb) : EMPTY_PINS;
        for (const tenantId of tenantsOf(replacePins(pinLoad, loaded))) pinsChangedFor.add(tenantId);
      },
      loaded: () => announcePinChanges(new Set()),
    }),
  };
  // Keys and tenants are trusted for credentialsMaxAgeMs after the last reload that began then succeeded: past that (the
  // database out of reach), a key revoked or a tenant suspended meanwhile could still be accepted, so API-key requests
  // get 503 until a reload succeeds. Logged when it changes. Upstreams and tool pins are served however old, but not
  // before they have loaded once: a replica that booted while their query failed served an empty configuration, and an
  // agent initializing then was given a session with no tools capability (nor listChanged), so it never asked for the
  // tools that loaded a moment later (found by a review).
  const maxAgeMs = config.mcp.credentialsMaxAgeMs;
  let credentialsWereCurrent = true;
  let configurationLoaded = false;
  const configurationIsLoaded = (): boolean =>
    (configurationLoaded ||= refreshers.upstreams.loadedAt() !== undefined && refreshers.toolPins.loadedAt() !== undefined);
  const credentialsCurrent = (): boolean => {
    if (!configurationIsLoaded()) return false;
    if (maxAgeMs === 0) return true;
    const oldest = Math.min(refreshers.apiKeys.loadedAt() ?? Number.NEGATIVE_INFINITY, refreshers.tenants.loadedAt() ?? Number.NEGATIVE_INFINITY);
    const current = monotonicNow() - oldest <= maxAgeMs;
    if (current !== credentialsWereCurrent) {
      credentialsWereCurrent = current;
      if (current) logger.info('API keys and tenants reloaded: requests are authenticated again');
      else logger.error({ maxAgeMs }, 'API keys and tenants could not be reloaded for too long: API-key requests are refused (503) until they are');
    }
    return current;
  };
  // Policy snapshots: loaded at boot, swapped on a notice, reconciled by (version, checksum) so none is missed.
  const policies = new SnapshotCache({
    source: systemDb ? policySnapshotSource(systemDb) : { listActive: async () => [], loadActive: async () => [] },
    logger,
    reconcileMs: config.policy.reconcileMs,
    pollMs: config.policy.pollMs,
    // What the tenant's principals may see changed: its agents listening here are told, after the load that changed it
    // (a failure there must not stop the load of other tenants' snapshots).
    changed: (tenantId) =>
      queueMicrotask(() => {
        try {
          engineRef.current?.listsChangedFor(tenantId);
        } catch (error) {
          logger.warn({ tenantId, err: error instanceof Error ? error.message : String(error) }, 'agents not told that their lists changed');
        }
      }),
  });
  // Held calls (require_approval): approvals in Postgres, decisions announced on CHANGE_CHANNELS.approvals, polled too.
  const approvals = deps.appDb
    ? new HeldCallGate({
        store: new PrismaApprovalStore(deps.appDb),
        logger,
        ...config.approvals,
        // The authenticator is made below; asked only once a call is held.
        credentialExpiresAt: (credentialId) => authenticator.expiresAt?.(credentialId) ?? null,
      })
    : undefined;
  if (!approvals) logger.warn('no application database client: calls that need approval fail with APPROVAL_UNAVAILABLE');
  const refreshAll = async () => {
    await Promise.all([...Object.values(refreshers).map((refresher) => refresher.refresh()), policies.reconcile()]);
    await refused.settled();
  };
  await Promise.all([...Object.values(refreshers).map((refresher) => refresher.refresh()), policies.start()]);

  const sessions = new RedisSessionStore(deps.redis, {
    idleTtlMs: config.mcp.sessionIdleMs,
    // Well inside the idle timeout, so a session in use never lapses between two touches.
    cacheMs: Math.min(5_000, Math.floor(config.mcp.sessionIdleMs / 4)),
    touchEveryMs: Math.min(5_000, Math.floor(config.mcp.sessionIdleMs / 4)),
    maxCached: 50_000,
  });
  // The bus is created before the engine (the engine needs it); early messages find no engine and are dropped. With
  // Redis down at boot it comes up later: the engine is given one that forwards to it once it exists, and until then
  // drops what is sent, as a publish is dropped while Redis is down.
  const onBus = (message: BusMessage) => engineRef.current?.onBusMessage(message);
  let replicaBus: ReplicaBus | undefined;
  const bus: ReplicaBus = {
    broadcast: (message) => replicaBus?.broadcast(message),
    sendTo: (target, message) => replicaBus?.sendTo(target, message),
  };
  const subscription = new ChannelSubscription({
    connection: deps.subscriber,
    logger,
    async subscribe() {
      replicaBus ??= await createRedisReplicaBus({ publisher: deps.redis, subscriber: deps.subscriber, replicaId, onMessage: onBus });
      await deps.subscriber.subscribe(...Object.values(CHANGE_CHANNELS));
    },
    // Notices published while this replica was not subscribed never reach it: once it is again, keys, tenants and
    // upstreams are reloaded (the policy cache reconciles of itself when told notices are back).
    onSubscribed(now) {
      if (now) logger.info('subscribed to gateway channels: change notices and cross-replica messages are on');
      policies.setPubSubHealthy(true);
      void Promise.all([refreshers.apiKeys.refresh(), refreshers.tenants.refresh(), refreshers.upstreams.refresh(), refreshers.toolPins.refresh()]);
    },
  });
  // Without notices the policy cache polls the database; when they come back it reconciles once. With them, everything
  // is loaded once more: a change announced between the boot load and the subscription (a key revoked, a tenant
  // suspended) was missed, and would otherwise hold until the next periodic refresh.
  const subscribed = await subscription.start();
  policies.setPubSubHealthy(subscribed);
  if (subscribed) void refreshAll().catch(() => undefined);
  deps.subscriber.on('close', () => policies.setPubSubHealthy(false));
  deps.subscriber.on('message', (channel: string, message: string) => {
    if (channel === CHANGE_CHANNELS.apiKeys) void refreshers.apiKeys.refresh();
    else if (channel === CHANGE_CHANNELS.tenants) void refreshers.tenants.refresh();
    else if (channel === CHANGE_CHANNELS.upstreams) void Promise.all([refreshers.upstreams.refresh(), refreshers.toolPins.refresh()]);
    else if (channel === CHANGE_CHANNELS.snapshots) void policies.notice(message);
    else if (channel === CHANGE_CHANNELS.approvals) approvals?.onDecided(message);
  });

  // Request hooks, in order: policy (its admission carries the decision and rate limits to later hooks), then tool
  // pinning (a tool whose definition is not the approved one is refused outright; after the policy, so a target the
  // policy denies gets the policy's refusal whatever its pin state; its listing filter still runs first), rate limits
  // and the audit trail's fail-closed check; only then is a call that needs approval held (so calls needing approval are
  // limited like any other, and none is held that the audit trail could not record), and after the wait pinning and
  // the caller's credential are checked again (the tool may have changed; the key revoked, the tenant suspended).
  const pinning = toolPinningHooks({ pins: toolPins, logger });
  const pinningPhases = pinningAroundPolicy(pinning);
  const authenticator = new ApiKeyAuthenticator(apiKeys, tenants, Date.now, credentialsCurrent);
  const policy = policyHooks(policies, approvals);
  const hooks: RequestHooks[] = [pinningPhases.listing, policy, pinningPhases.checks];
  const afterHold: RequestHooks[] = [policy.hold, pinningAfterApproval(pinning), credentialsAfterApproval(authenticator)];

  // Audit (observer, plus the fail-closed check) and rate limits (after policy: they enforce its rules' limits).
  const auditProducer = config.audit.enabled
    ? createAuditQueueProducer({ redisUrl: config.audit.redisUrl, prefix: config.audit.queuePrefix, connectionName: 'gateway-audit' })
    : null;
  const emitter = auditProducer
    ? createAuditEmitter({
        producer: auditProducer,
        maxBuffer: config.audit.bufferMax,
        flushEveryMs: config.audit.flushMs,
        batchSize: config.audit.batchSize,
        jobFormat: config.audit.jobFormat,
        spoolDir: config.audit.spoolDir,
        spoolMaxBytes: config.audit.spoolMaxBytes,
        logger,
      })
    : null;
  const audit = emitter
    ? auditHooks({ emitter, settings: settingsFor, separator: config.mcp.toolSeparator, spoolDurable: config.audit.spoolDir !== null, logger })
    : null;
  if (!audit) logger.warn('GATEWAY_AUDIT_ENABLED is false: MCP requests are not audited');
  else if (config.audit.spoolDir === null) logger.warn('GATEWAY_AUDIT_SPOOL_DIR is not set: events waiting for Redis are kept in memory only');
  const limiterRedis = config.rateLimits.enabled ? createRateLimitRedis(config.rateLimits.redisUrl) : null;
  let closeLimiter = (): void => undefined;
  if (limiterRedis) {
    // Counters asked before the connection is ready count as unavailable: give it a bounded moment at boot.
    await waitForReady(limiterRedis, 2_000).catch(() => logger.error('rate-limit Redis not reachable at boot: tenants\' fail modes apply until it is'));
    const limiter = new RateLimitService({
      redis: limiterRedis,
      keyPrefix: 'pcs',
      redisTimeoutMs: config.rateLimits.timeoutMs,
      concurrencyLeaseMs: config.rateLimits.leaseMs,
      leases: { ...DEFAULT_LEASE_OPTIONS, maxLease: config.rateLimits.maxQuotaLease },
      // What a call waits on is logged by the hooks (a degraded or refused call); this is what none waits on.
      onRedisError: (error) => logger.debug({ err: String(error) }, 'rate-limit Redis command failed'),
    });
    closeLimiter = () => limiter.close();
    hooks.push(
      rateLimitHooks({
        limiter,
        settings: settingsFor,
        logger,
        ...(audit
          ? {
              onDegraded: (info) => audit.note(info, { degraded: 'rate limits not enforced: counters unavailable (tenant fails open)' }),
              onRefused: (info, prior) => audit.note(info, prior ? { prior } : {}),
            }
          : {}),
      }),
    );
  } else logger.warn('GATEWAY_RATE_LIMITS_ENABLED is false: rate limits are not enforced');
  if (audit) hooks.push(audit);
  hooks.push(...afterHold);
  // Prometheus metrics (GATEWAY_METRICS_PORT): an observer hook counting each request as it completes, and gauges read
  // off the engine and the routes when scraped. Off: nothing of it runs.
  const routesRef: { current?: { readonly openStreams: number } } = {};
  const metrics =
    config.metrics === null
      ? null
      : createGatewayMetrics({
          tenantSlug: (tenantId) => tenants.byId(tenantId)?.slug,
          liveSessions: () => engineRef.current?.liveSessions ?? 0,
          inflight: () => engineRef.current?.inflight ?? 0,
          openStreams: () => routesRef.current?.openStreams ?? 0,
          circuits: () =>
            (deps.connector.circuits?.() ?? []).flatMap(({ upstreamId, tenantId, state }) => {
              const tenant = tenants.byId(tenantId)?.slug;
              const upstream = registry.forTenant(tenantId).byId.get(upstreamId)?.name;
              return tenant === undefined || upstream === undefined ? [] : [{ tenant, upstream, state }];
            }),
          audit: () => emitter?.stats(),
        }, logger);
  if (metrics) hooks.push(metrics.hooks);

  const engine = new SessionEngine({
    registry,
    connector: deps.connector,
    sessions,
    tasks: new RedisTaskRouteStore(deps.redis),
    logger,
    bus,
    hooks: composeHooks(hooks),
    options: {
      separator: config.mcp.toolSeparator,
      listTimeoutMs: config.mcp.listTimeoutMs,
      joinRetryMs: config.mcp.joinRetryMs,
      firstListenMs: config.mcp.firstListenMs,
      initializeWaitMs: config.mcp.initializeWaitMs,
      relayTimeoutMs: config.mcp.relayTimeoutMs,
      maxSessionsPerPrincipal: config.mcp.maxSessionsPerPrincipal,
      listCacheMs: config.mcp.listCacheMs,
      listCacheMaxPages: config.mcp.listCacheMaxPages,
      listCacheMaxBytes: config.mcp.listCacheMaxBytes,
      serverInfo: { name: 'portcullis', version: '0.1.0' },
      localIdleMs: Math.min(config.mcp.sessionIdleMs, 10 * 60_000),
      replicaId,
    },
  });
  engineRef.current = engine;
  refused.engineReady();
  const routes = await registerMcpRoutes(app, {
    authenticator,
    engine,
    logger,
    origin: { allowedHosts: new Set(config.http.allowedHosts), allowedOrigins: new Set(config.http.allowedOrigins) },
    bodyLimitBytes: config.http.bodyLimitBytes,
    trustProxy: config.http.trustProxy,
    keepAliveMs: config.mcp.sseKeepAliveMs,
    // Resumable SSE streams (Last-Event-ID) on any replica: per-stream logs in Redis (ADR 0007). 0 bytes: off.
    ...(config.mcp.sseReplay.maxBytes > 0
      ? { replay: new RedisReplayLog(deps.redis, { ...config.mcp.sseReplay, maxEntries: 1_000, maxFollowers: 256 }, logger) }
      : {}),
  });
  credentialsChanged = () => void routes.revalidateStreams();
  routesRef.current = routes;
  const metricsPort = metrics && config.metrics ? await metrics.listen(config.metrics.host, config.metrics.port) : undefined;
  if (metricsPort !== undefined) logger.info({ url: `http://${config.metrics?.host}:${metricsPort}/metrics` }, 'metrics listening');
  logger.info({ replicaId, tenants: tenants.size, apiKeys: apiKeys.size, policySnapshots: policies.size }, 'MCP data plane ready');

  return {
    replicaId,
    policies,
    approvals,
    audit: emitter,
    metricsPort,
    refreshAll,
    configurationLoaded: configurationIsLoaded,
    async close(drainMs = 0) {
      // New requests are turned away (503: the agent retries on another replica); those under way get up to
      // `drainMs` to finish before what is left is cancelled.
      routes.stopAccepting();
      const settled = async (withinMs: number) => {
        const deadline = Date.now() + withinMs;
        while ((routes.active > 0 || engine.inflight > 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      };
      await settled(drainMs);
      subscription.stop();
      for (const refresher of Object.values(refreshers)) refresher.stop();
      refused.close();
      policies.stop();
      // Legacy sessions end with their streams (upstream sessions closed while the connector is up), within a bound.
      await Promise.race([routes.closeStreams(), new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);
      await engine.shutdown();
      // Cancelled requests finish (and report to the audit hook) a few ticks after the abort: a moment for them.
      await settled(1_000);
      // Upstreams are let go now, beside the flushes below rather than after them: stdio children (SIGTERM, then SIGKILL
      // after their grace) must be gone before the shutdown deadline exits the process, whatever a stalled Redis does
      // to the audit flush.
      const upstreamsStopped = deps.connector.shutdown();
      await approvals?.close();
      // Every request has completed or been cancelled by now: flush its events, then drop the connections.
      audit?.drain();
      await emitter?.close();
      await auditProducer?.close();
      closeLimiter();
      limiterRedis?.disconnect();
      await upstreamsStopped;
      await metrics?.close();
    },
  };
}

/** Milliseconds on a clock that never jumps (snapshot ages). */
const monotonicNow = (): number => performance.now();
/** No database (a gateway started without the system role): no pins, no upstreams. */
const EMPTY_PINS: Awaited<ReturnType<typeof loadToolPins>> = { rows: [], requireApproval: [], known: [] };

function waitForReady(redis: { status: string; once(event: 'ready', listener: () => void): unknown; off(event: 'ready', listener: () => void): unknown }, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new Error('not ready'));
    }, timeoutMs);
    redis.once('ready', onReady);
  });
}

/** `tenant:kind:id` of each principal with at least one key it may use now (not revoked, its client enabled, unexpired). */
function usablePrincipals(entries: readonly ApiKeyEntry[]): Set<string> {
  const now = Date.now();
  const usable = new Set<string>();
  for (const entry of entries) {
    if (entry.revoked || (entry.expiresAt !== null && entry.expiresAt <= now)) continue;
    // As the authenticator names the principal of a key.
    const principal = entry.agentClientId !== null ? `agent_client:${entry.agentClientId}` : `user:${entry.userId ?? entry.apiKeyId}`;
    usable.add(`${entry.tenantId}:${principal}`);
  }
  return usable;
}

/** How far apart the replicas' clocks may be (session records carry their creator's `Date.now()`). */
const CLOCK_MARGIN_MS = 1_000;

/** Endings that could not be done (the session store out of reach): tried again after 1 s, doubling to 1 min. */
const ENDING_RETRY_MS = { initial: 1_000, max: 60_000 };

/** When a load began, and when what it found took effect (Date.now(), as session records are stamped). */
interface LoadTimes {
  readonly began: number;
  readonly inEffect: number;
}

/**
 * Ends the sessions of tenants that stopped being active, and of principals left with no usable key: refused, they
 * would otherwise be served again once the tenant or the agent client were active again (found by review). Every
 * replica does it on its own loads; the first to reach a session ends it.
 * - Between one load and the next, those the later one refuses, of the sessions made before it took effect here (one
 *   made since was authenticated against it, or on another replica, whose own load ends it: the principal accepted
 *   again meanwhile, it is no refused one; found by re-review). Not before the load began: a session opened here while
 *   the load ran was authenticated against the earlier copy (found by re-review).
 * - A replica's first loads have no earlier ones to compare with: there, every principal holding sessions is looked at
 *   once, for tenants its database knows (a replica without it, or another deployment's sessions in a shared Redis,
 *   judges nothing it cannot know), of the sessions made before both loads began, less a margin for the replicas'
 *   clocks (a key made and used on another replica since is in neither).
 * Each ending is owed until it is done: one the store could not do is tried again with the same judgement, after 1 s
 * doubling to a minute (it was dropped, and the sessions were served again; found by re-review).
 */
function sessionsOfRefused(engineRef: { current?: SessionEngine }, logger: Logger) {
  /** What the last loads found, and when each began (Date.now(), as session records are stamped). */
  let tenants: { readonly known: ReadonlySet<string>; readonly active: ReadonlySet<string>; readonly began: number } | undefined;
  let principals: { readonly usable: ReadonlySet<string>; readonly began: number } | undefined;
  let startJudged = false;
  /** Endings owed, by what they end (`start`, `tenant:<id>`, `principal:<tenant:kind:id>`). */
  const owed = new Map<string, { readonly what: string; readonly run: (engine: SessionEngine) => Promise<number> }>();
  let running = false;
  let retry: NodeJS.Timeout | undefined;
  let retryMs = ENDING_RETRY_MS.initial;
  let closed = false;
  let pending: Promise<unknown> = Promise.resolve();

  const work = (): void => {
    const engine = engineRef.current;
    if (closed || running || engine === undefined || owed.size === 0) return;
    clearTimeout(retry);
    retry = undefined;
    running = true;
    const batch = [...owed.entries()];
    const done = Promise.all(
      batch.map(async ([key, item]) => {
        try {
          const ended = await item.run(engine);
          // A newer ending of the same thing, owed meanwhile, stays owed.
          if (owed.get(key) === item) owed.delete(key);
          if (ended > 0) logger.info({ ended }, `ended the sessions of ${item.what}`);
          return true;
        } catch (error) {
          logger.warn({ err: error, retryMs }, `the sessions of ${item.what} not all ended; trying again`);
          return false;
        }
      }),
    ).then((results) => {
      running = false;
      if (closed) return;
      if (results.every(Boolean)) {
        retryMs = ENDING_RETRY_MS.initial;
        work(); // owed while these ran
        return;
      }
      retry = setTimeout(work, retryMs);
      retry.unref();
      retryMs = Math.min(retryMs * 2, ENDING_RETRY_MS.max);
    });
    pending = Promise.all([pending, done]);
  };

  const judgeStart = (): void => {
    if (startJudged || engineRef.current === undefined || tenants === undefined || principals === undefined) return;
    startJudged = true;
    const { known, active } = tenants;
    const { usable } = principals;
    const before = Math.min(tenants.began, principals.began) - CLOCK_MARGIN_MS;
    const refused = (owner: SessionOwner): boolean =>
      known.has(owner.tenantId) && (!active.has(owner.tenantId) || !usable.has(`${owner.tenantId}:${owner.principalKind}:${owner.principalId}`));
    owed.set('start', { what: 'tenants and principals refused before this replica started', run: (engine) => engine.endSessionsOfRefused(refused, before, 'refused-at-start') });
  };

  return {
    /** The engine exists now: what the loads before it found is acted on. */
    engineReady(): void {
      judgeStart();
      work();
    },
    /** A tenants load: what it found, when it began and when it took effect here. */
    tenants(loaded: { readonly known: ReadonlySet<string>; readonly active: ReadonlySet<string> }, at: LoadTimes): void {
      const before = tenants?.active;
      tenants = { ...loaded, began: at.began };
      judgeStart();
      if (before !== undefined) {
        for (const tenantId of before) {
          if (loaded.active.has(tenantId)) continue;
          owed.set(`tenant:${tenantId}`, { what: 'a suspended tenant', run: (engine) => engine.endSessionsOf(tenantId, undefined, 'tenant-suspended', at.inEffect) });
        }
      }
      work();
    },
    /** A keys load: the principals with a usable key, when it began and when it took effect here. */
    principals(usable: ReadonlySet<string>, at: LoadTimes): void {
      const before = principals?.usable;
      principals = { usable, began: at.began };
      judgeStart();
      if (before !== undefined) {
        for (const principal of before) {
          if (usable.has(principal)) continue;
          const [tenantId = '', kind, ...id] = principal.split(':');
          const owner = { principalKind: kind as 'agent_client' | 'user', principalId: id.join(':') };
          owed.set(`principal:${principal}`, { what: 'a principal with no usable key', run: (engine) => engine.endSessionsOf(tenantId, owner, 'credentials-refused', at.inEffect) });
        }
      }
      work();
    },
    /** Once the endings started so far are over (tests; `refreshAll`). */
    settled: (): Promise<unknown> => pending,
    close(): void {
      closed = true;
      clearTimeout(retry);
    },
  };
}
