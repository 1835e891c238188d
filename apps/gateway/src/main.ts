import 'reflect-metadata';
import { createHttpApp, installShutdownDeadline, runOrExit } from '@portcullis/shared/nest-runtime';
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
  installShutdownDeadline(logger, config.shutdownGraceMs);
  await app.listen({ host: config.http.host, port: config.http.port });
  logger.info({ url: `http://${config.http.host}:${config.http.port}` }, 'gateway listening');
  return app;
});
