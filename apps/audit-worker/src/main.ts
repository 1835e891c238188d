import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { databaseReadinessCheck, PRISMA_CLIENT, type PortcullisPrismaClient } from '@portcullis/data/db-nest';
import { pingRedis, type Redis } from '@portcullis/data/redis';
import {
  installGracefulShutdown,
  PinoNestLogger,
  REDIS,
  runOrExit,
  startProbeServer,
} from '@portcullis/shared/nest-runtime';
import { listenNaming, loadConfigOrExit } from '@portcullis/shared/util-config';
import { createLogger } from '@portcullis/shared/util-logger';
import { AuditIngestWorker, AuditTasksWorker } from '@portcullis/audit/pipeline';
import { AppModule } from './app.module';
import { auditWorkerConfigSchema } from './config';
import { createWorkerMetrics } from './metrics';
import { loadAuditSigner } from './signing-key';

const config = loadConfigOrExit('audit-worker', auditWorkerConfigSchema);
const logger = createLogger({ service: 'audit-worker', level: config.log.level });

// No HTTP API: a Nest application context for the queue consumer, plus a probe server for /healthz, /readyz and
// /metrics (Prometheus) only.
void runOrExit(logger, async () => {
  const signer = config.anchors.signingKeyFile === null ? null : loadAuditSigner(config.anchors.signingKeyFile, logger);
  const app = await NestFactory.createApplicationContext(AppModule.forRoot(config, logger, signer), {
    logger: new PinoNestLogger(logger),
  });
  let shuttingDown = false;
  const probes = await listenNaming('AUDIT_WORKER_HEALTH_HOST/AUDIT_WORKER_HEALTH_PORT', config.health.host, config.health.port, () => startProbeServer({
    host: config.health.host,
    port: config.health.port,
    logger,
    isShuttingDown: () => shuttingDown,
    metrics: createWorkerMetrics(app.get(AuditIngestWorker), app.get(AuditTasksWorker)),
    checks: [
      databaseReadinessCheck(app.get<PortcullisPrismaClient>(PRISMA_CLIENT)),
      { name: 'redis', check: () => pingRedis(app.get<Redis>(REDIS)) },
    ],
  }));
  installGracefulShutdown({
    logger,
    graceMs: config.shutdownGraceMs,
    close: async () => {
      shuttingDown = true;
      // Stop taking jobs and let the ones in progress finish (BullMQ's worker.close waits), then close
      // the database and Redis through Nest's shutdown hooks.
      await app.close();
      probes.closeAllConnections();
      await new Promise<void>((resolve) => probes.close(() => resolve()));
    },
  });
  await app.init();
  logger.info({ health: `http://${config.health.host}:${config.health.port}/readyz` }, 'audit worker consuming');
  return app;
});
