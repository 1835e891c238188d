import 'reflect-metadata';
import { createHttpApp, installGracefulShutdown, listenOrExplain, runOrExit } from '@portcullis/shared/nest-runtime';
import { loadConfigOrExit } from '@portcullis/shared/util-config';
import { createLogger } from '@portcullis/shared/util-logger';
import { CONTROL_PLANE_STDIO_HOST, inheritedCapabilitiesProblem, ownStatus, readOptional, stdioRangeProblem, stdioUserWarning } from '@portcullis/shared/util-process-user';
import { AppModule } from './app.module';
import { controlPlaneConfigSchema } from './config';
import { installControlPlaneMetrics } from './metrics';
import { setupOpenApi } from './openapi';

const config = loadConfigOrExit('control-plane', controlPlaneConfigSchema);
const logger = createLogger({ service: 'control-plane', level: config.log.level });

// Test connections start stdio servers: the same checks of the user they run as as the gateway makes for its own.
if (config.upstreams.stdioCommandAllowlist.length > 0) {
  const own = { uid: process.getuid?.(), gid: process.getgid?.() };
  const range = config.upstreams.stdioUidRange;
  const runAs = range ? { uid: range.first, gid: range.first } : config.upstreams.stdioRunAs;
  const warning = stdioUserWarning(runAs, own, ownStatus(), CONTROL_PLANE_STDIO_HOST);
  if (warning !== undefined) logger.warn(warning);
  const problem =
    (runAs === undefined ? undefined : inheritedCapabilitiesProblem(process.getuid?.(), ownStatus(), CONTROL_PLANE_STDIO_HOST)) ??
    (range === undefined ? undefined : stdioRangeProblem(range, own, { passwd: readOptional('/etc/passwd'), group: readOptional('/etc/group') }, CONTROL_PLANE_STDIO_HOST));
  if (problem !== undefined) {
    logger.fatal(problem);
    process.exit(1);
  }
}

void runOrExit(logger, async () => {
  if (config.auth.usingDevelopmentSecret || config.secrets.usingDevelopmentKeyring) {
    logger.warn('using development-only JWT secret and/or secrets keyring; set CONTROL_PLANE_JWT_SECRET and CONTROL_PLANE_SECRETS_KEYRING');
  }
  const app = await createHttpApp(AppModule.forRoot(config, logger), {
    logger,
    bodyLimitBytes: config.http.bodyLimitBytes,
    trustProxy: config.http.trustProxy,
  });
  // Public when served (it describes the API, no data): off in production unless CONTROL_PLANE_OPENAPI says otherwise.
  if (config.http.openApi) setupOpenApi(app);
  const metrics = config.metrics ? installControlPlaneMetrics(app, logger) : undefined;
  installGracefulShutdown({
    logger,
    graceMs: config.shutdownGraceMs,
    close: async () => {
      await metrics?.close();
      await app.close();
    },
  });
  await listenOrExplain(app, config.http.host, config.http.port, 'CONTROL_PLANE_HOST/CONTROL_PLANE_PORT');
  logger.info({ url: `http://${config.http.host}:${config.http.port}` }, 'control plane listening');
  if (metrics && config.metrics) {
    const port = await metrics.listen(config.metrics.host, config.metrics.port);
    logger.info({ url: `http://${config.metrics.host}:${port}/metrics` }, 'metrics listening');
  }
  return app;
});
