import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { parseKeyring, type Keyring } from '@portcullis/auth/secrets';
import type { Redis } from '@portcullis/data/redis';
import type { SystemPrismaClient } from '@portcullis/data/db';
import {
  ApiKeyAuthenticator,
  ApiKeyIndex,
  assertValidSeparator,
  createRedisReplicaBus,
  createRefresher,
  registerMcpRoutes,
  SessionEngine,
  TenantIndex,
  UpstreamRegistry,
  type BusMessage,
  type ReplicaBus,
} from '@portcullis/gateway/core';
import { RedisSessionStore, type UpstreamConnector } from '@portcullis/gateway/mcp';
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import type { Logger } from '@portcullis/shared/util-logger';
import type { GatewayConfig } from './config';
import { loadApiKeys, loadTenants, loadUpstreams } from './snapshot-loaders';

export interface DataPlaneDeps {
  readonly config: GatewayConfig;
  readonly logger: Logger;
  /** Null: no DATABASE_SYSTEM_URL (development only): the endpoints know no tenants. */
  readonly systemDb: SystemPrismaClient | null;
  /** Commands (session records, publishes). */
  readonly redis: Redis;
  /** A dedicated connection for SUBSCRIBE. */
  readonly subscriber: Redis;
  readonly connector: UpstreamConnector;
  readonly replicaId?: string;
}

export interface DataPlane {
  readonly replicaId: string;
  /** Reloads every snapshot now (tests; the periodic and pub/sub refreshes do this in production). */
  refreshAll(): Promise<void>;
  close(): Promise<void>;
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
  if (systemDb === null) logger.warn('DATABASE_SYSTEM_URL is not set: the MCP endpoints know no tenants');
  if (keyring === null) logger.warn('GATEWAY_SECRETS_KEYRING is not set: upstreams with sealed secrets are skipped');

  const tenants = new TenantIndex();
  const apiKeys = new ApiKeyIndex();
  const registry = new UpstreamRegistry(config.mcp.toolSeparator);
  const refreshers = {
    tenants: createRefresher({
      name: 'tenants',
      intervalMs: config.mcp.snapshotRefreshMs,
      logger,
      load: async () => tenants.replace(systemDb ? await loadTenants(systemDb) : []),
    }),
    apiKeys: createRefresher({
      name: 'api-keys',
      intervalMs: config.mcp.snapshotRefreshMs,
      logger,
      load: async () => apiKeys.replace(systemDb ? await loadApiKeys(systemDb) : []),
    }),
    upstreams: createRefresher({
      name: 'upstreams',
      intervalMs: config.mcp.snapshotRefreshMs,
      logger,
      load: async () =>
        registry.replace(systemDb ? await loadUpstreams(systemDb, keyring, logger) : [], (upstream, reason) =>
          logger.error({ upstream: upstream.name, upstreamId: upstream.id, tenantId: upstream.tenantId, reason }, 'upstream rejected'),
        ),
    }),
  };
  const refreshAll = async () => {
    await Promise.all(Object.values(refreshers).map((refresher) => refresher.refresh()));
  };
  await refreshAll();

  const sessions = new RedisSessionStore(deps.redis, {
    idleTtlMs: config.mcp.sessionIdleMs,
    cacheMs: 5_000,
    touchEveryMs: 5_000,
    maxCached: 50_000,
  });
  // The bus is created before the engine (the engine needs it); early messages find no engine and are dropped.
  const engineRef: { current?: SessionEngine } = {};
  const onBus = (message: BusMessage) => engineRef.current?.onBusMessage(message);
  let bus: ReplicaBus | undefined;
  try {
    bus = await createRedisReplicaBus({ publisher: deps.redis, subscriber: deps.subscriber, replicaId, onMessage: onBus });
    await deps.subscriber.subscribe(...Object.values(CHANGE_CHANNELS));
  } catch (error) {
    // Redis down at boot: readiness says so; requests with cached sessions still flow (ADR 0007).
    logger.error({ err: error }, 'could not subscribe to gateway channels; cross-replica messages are off');
  }
  deps.subscriber.on('message', (channel: string) => {
    if (channel === CHANGE_CHANNELS.apiKeys) void refreshers.apiKeys.refresh();
    else if (channel === CHANGE_CHANNELS.tenants) void refreshers.tenants.refresh();
    else if (channel === CHANGE_CHANNELS.upstreams) void refreshers.upstreams.refresh();
  });

  const engine = new SessionEngine({
    registry,
    connector: deps.connector,
    sessions,
    logger,
    ...(bus ? { bus } : {}),
    options: {
      separator: config.mcp.toolSeparator,
      listTimeoutMs: config.mcp.listTimeoutMs,
      serverInfo: { name: 'portcullis', version: '0.1.0' },
      localIdleMs: Math.min(config.mcp.sessionIdleMs, 10 * 60_000),
      replicaId,
    },
  });
  engineRef.current = engine;
  const routes = await registerMcpRoutes(app, {
    authenticator: new ApiKeyAuthenticator(apiKeys, tenants),
    engine,
    logger,
    origin: { allowedHosts: new Set(config.http.allowedHosts), allowedOrigins: new Set(config.http.allowedOrigins) },
    bodyLimitBytes: config.http.bodyLimitBytes,
    keepAliveMs: 15_000,
  });
  logger.info({ replicaId, tenants: tenants.size, apiKeys: apiKeys.size }, 'MCP data plane ready');

  return {
    replicaId,
    refreshAll,
    async close() {
      for (const refresher of Object.values(refreshers)) refresher.stop();
      routes.closeStreams();
      await engine.shutdown();
      await deps.connector.shutdown();
    },
  };
}
