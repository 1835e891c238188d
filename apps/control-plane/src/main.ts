import 'reflect-metadata';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { createHttpApp, installGracefulShutdown, runOrExit } from '@portcullis/shared/nest-runtime';
import { loadConfigOrExit } from '@portcullis/shared/util-config';
import { createLogger } from '@portcullis/shared/util-logger';
import { AppModule } from './app.module';
import { controlPlaneConfigSchema } from './config';

const config = loadConfigOrExit('control-plane', controlPlaneConfigSchema);
const logger = createLogger({ service: 'control-plane', level: config.log.level });

void runOrExit(logger, async () => {
  const app = await createHttpApp(AppModule.forRoot(config, logger), {
    logger,
    bodyLimitBytes: config.http.bodyLimitBytes,
    trustProxy: config.http.trustProxy,
  });
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Portcullis control plane')
      .setDescription('Tenants, members, upstreams, policies, agent clients, approvals and audit.')
      .setVersion('v1')
      .addBearerAuth()
      .build(),
  );
  SwaggerModule.setup('api/docs', app, document, { jsonDocumentUrl: 'api/docs/openapi.json' });
  installGracefulShutdown({ logger, graceMs: config.shutdownGraceMs, close: () => app.close() });
  await app.listen({ host: config.http.host, port: config.http.port });
  logger.info({ url: `http://${config.http.host}:${config.http.port}` }, 'control plane listening');
  return app;
});
