import 'reflect-metadata';
import { createSystemPrismaClient } from '@portcullis/data/db';
import { redisDatabaseRefused, type Redis } from '@portcullis/data/redis';
import { createUpstreamConnector } from '@portcullis/gateway/upstream';
import { PRISMA_CLIENT, type PortcullisPrismaClient } from '@portcullis/data/db-nest';
import { createHttpApp, installGracefulShutdown, listenOrExplain, REDIS, runOrExit } from '@portcullis/shared/nest-runtime';
import { loadConfigOrExit } from '@portcullis/shared/util-config';
import { createLogger } from '@portcullis/shared/util-logger';
import { AppModule } from './app.module';
import { gatewayConfigSchema } from './config';
import { startDataPlane } from './data-plane';
import { SNAPSHOT_QUERY_TIMEOUT_MS } from './snapshot-loaders';
import { GATEWAY_STDIO_HOST, inheritedCapabilitiesProblem, ownStatus, readOptional, stdioRangeProblem, stdioUserWarning } from '@portcullis/shared/util-process-user';

const config = loadConfigOrExit('gateway', gatewayConfigSchema);
const logger = createLogger({ service: 'gateway', level: config.log.level });
const stdioRange = config.upstreams.stdioUidRange;
const stdioWarning = stdioUserWarning(
  // A range is judged by its first id: every id in it is another than the gateway's (which the range must not hold).
  stdioRange ? { uid: stdioRange.first, gid: stdioRange.first } : config.upstreams.stdioRunAs,
  { uid: process.getuid?.(), gid: process.getgid?.() },
  ownStatus(),
  GATEWAY_STDIO_HOST,
);
if (stdioWarning !== undefined) logger.warn(stdioWarning);
const rangeProblem =
  (stdioRange || config.upstreams.stdioRunAs ? inheritedCapabilitiesProblem(process.getuid?.(), ownStatus(), GATEWAY_STDIO_HOST) : undefined) ??
  (stdioRange
    ? stdioRangeProblem(stdioRange, { uid: process.getuid?.(), gid: process.getgid?.() }, { passwd: readOptional('/etc/passwd'), group: readOptional('/etc/group') })
    : undefined);
if (rangeProblem !== undefined) {
  logger.fatal(rangeProblem);
  process.exit(1);
}

const OTHER_ROUTES_BODY_LIMIT_BYTES = 16 * 1024;

void runOrExit(logger, async () => {
  // Readiness watches REDIS_URL's database (pingRedis); a Redis of their own for rate limits or audit is checked once
  // here: a database the server refuses would have them run in database 0, mixed with whatever else is there.
  for (const [variable, url] of [
    ['GATEWAY_RATE_LIMIT_REDIS_URL', config.rateLimits.redisUrl],
    ['GATEWAY_AUDIT_REDIS_URL', config.audit.redisUrl],
  ] as const) {
    if (url === config.redis.url) continue;
    const refused = await redisDatabaseRefused(url, variable, 2_000);
    if (refused !== undefined) {
      logger.fatal(refused);
      process.exit(1);
    }
  }
  // Set on SIGTERM: /readyz answers 503 for the whole drain, not only once the HTTP server closes after it.
  let draining = false;
  // Until the data plane has loaded the upstreams and tool pins once (it answers MCP requests 503 until then).
  let configured = (): boolean => false;
  const app = await createHttpApp(AppModule.forRoot(config, logger, () => draining, () => configured()), {
    logger,
    // For everything but the MCP routes, which set GATEWAY_BODY_LIMIT_BYTES on their own parser: no other route takes
    // a body, and an unknown path's must not be buffered up to the MCP limit for anyone (unauthenticated) to send.
    bodyLimitBytes: OTHER_ROUTES_BODY_LIMIT_BYTES,
    requestTimeoutMs: config.http.requestTimeoutMs,
    trustProxy: config.http.trustProxy,
    requestLogging: false,
  });
  // Boot-time wiring only: the request path below gets plain objects, never the container.
  const redis = app.get<Redis>(REDIS);
  const subscriber = redis.duplicate({ connectionName: 'gateway-subscriber' });
  subscriber.on('error', () => undefined);
  const systemDb = config.database.systemUrl === null ? null : createSystemPrismaClient({
          url: config.database.systemUrl,
          applicationName: 'gateway-snapshots',
          poolMax: 2,
          // A hung load would stall every later refresh behind it (refreshes share one load): fail it, keep the last
          // snapshot, and let the next notice or poll try again.
          statementTimeoutMs: SNAPSHOT_QUERY_TIMEOUT_MS,
          connectTimeoutMs: SNAPSHOT_QUERY_TIMEOUT_MS,
        });
  const connector = createUpstreamConnector({
    logger,
    maxStdioProcessesPerUpstream: config.upstreams.stdioMaxProcesses,
    stdioIdleMs: config.upstreams.stdioIdleMs,
    maxHeldAnswerBytes: config.upstreams.heldAnswersMaxBytes,
    maxHeldAnswerBytesPerTenant: config.upstreams.heldAnswersTenantMaxBytes,
    ...(config.upstreams.stdioRunAs ? { stdioRunAs: config.upstreams.stdioRunAs } : {}),
    ...(stdioRange ? { stdioUidRange: stdioRange } : {}),
    allowPrivateNetworks: config.upstreams.allowPrivateNetworks,
    allowedHosts: config.upstreams.allowedHosts,
  });
  // Another gateway process on this host holding the same user-id range stops this one here, before it serves.
  await connector.ready?.();
  const dataPlane = await startDataPlane(app.getHttpAdapter().getInstance(), {
    config,
    logger,
    systemDb,
    appDb: app.get<PortcullisPrismaClient>(PRISMA_CLIENT),
    redis,
    subscriber,
    connector,
  });
  configured = dataPlane.configurationLoaded;
  installGracefulShutdown({
    logger,
    graceMs: config.shutdownGraceMs,
    close: async () => {
      draining = true;
      // Half the grace period for calls under way (a rolling deploy should not cut them off), the rest to close.
      await dataPlane.close(Math.floor(config.shutdownGraceMs / 2));
      await app.close();
      subscriber.disconnect();
      await systemDb?.$disconnect();
    },
  });
  await listenOrExplain(app, config.http.host, config.http.port, 'GATEWAY_HOST/GATEWAY_PORT');
  logger.info({ url: `http://${config.http.host}:${config.http.port}` }, 'gateway listening');
  return app;
});
