import 'reflect-metadata';
import { createHttpApp, installGracefulShutdown, runOrExit } from '@portcullis/shared/nest-runtime';
import { loadConfigOrExit } from '@portcullis/shared/util-config';
import { createLogger } from '@portcullis/shared/util-logger';
import { AppModule } from './app.module';
import { gatewayConfigSchema } from './config';

const config = loadConfigOrExit('gateway', gatewayConfigSchema);
const logger = createLogger({ service: 'gateway', level: config.log.level });

void runOrExit(logger, async () => {
  const app = await createHttpApp(AppModule.forRoot(config, logger), {
    logger,
    bodyLimitBytes: config.http.bodyLimitBytes,
    trustProxy: config.http.trustProxy,
  });
  installGracefulShutdown({ logger, graceMs: config.shutdownGraceMs, close: () => app.close() });
  await app.listen({ host: config.http.host, port: config.http.port });
  logger.info({ url: `http://${config.http.host}:${config.http.port}` }, 'gateway listening');
  return app;
});
