import type { DynamicModule, INestApplication, Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { Logger } from '@portcullis/shared/util-logger';
import { randomUUID } from 'node:crypto';
import { PinoNestLogger } from './pino-nest-logger';
import { installProblemHandlers } from './problem-details';
import { ProblemDetailsFilter } from './problem-details.filter';

export interface HttpAppOptions {
  readonly logger: Logger;
  /** Largest accepted request body; larger bodies get 413 before any handler runs. */
  readonly bodyLimitBytes: number;
  /** Trust X-Forwarded-* from a proxy in front (only when one is really there). */
  readonly trustProxy?: boolean;
}

/**
 * A Nest application on Fastify with the house rules: pino request logs, request ids, problem+json for
 * every error (including Fastify's own parse errors and unknown routes), and shutdown hooks.
 */
export async function createHttpApp(
  module: Type<unknown> | DynamicModule,
  options: HttpAppOptions): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({
    loggerInstance: options.logger,
    bodyLimit: options.bodyLimitBytes,
    trustProxy: options.trustProxy ?? false,
    disableRequestLogging: false,
    requestIdHeader: false,
    genReqId: () => randomUUID(),
    return503OnClosing: true,
  });
  const app = await NestFactory.create<NestFastifyApplication>(module, adapter, {
    logger: new PinoNestLogger(options.logger),
    bufferLogs: false,
  });
  installProblemHandlers(app.getHttpAdapter().getInstance(), options.logger);
  app.useGlobalFilters(new ProblemDetailsFilter(options.logger));
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
  return app;
}

/**
 * Ends the process if graceful shutdown takes longer than `graceMs` after SIGTERM/SIGINT, so a stuck
 * connection cannot keep a replica alive forever.
 */
export function installShutdownDeadline(logger: Logger, graceMs: number): void {
  const arm = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'shutting down');
    setTimeout(() => {
      logger.error({ graceMs }, 'graceful shutdown took too long; exiting');
      process.exit(1);
    }, graceMs).unref();
  };
  process.once('SIGTERM', arm);
  process.once('SIGINT', arm);
}

/** Logs and exits when boot fails (a dependency refused, a port was taken...): no half-started app. */
export async function runOrExit(logger: Logger, boot: () => Promise<INestApplication | unknown>): Promise<void> {
  try {
    await boot();
  } catch (error) {
    logger.fatal({ err: error }, 'failed to start');
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 100).unref();
  }
}
