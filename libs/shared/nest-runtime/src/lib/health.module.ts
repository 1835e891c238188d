import {
  Controller,
  Get,
  Inject,
  Module,
  type DynamicModule,
  type FactoryProvider,
  type ModuleMetadata,
  Res,
} from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Logger } from '@portcullis/shared/util-logger';
import type { FastifyReply } from 'fastify';
import { runReadinessChecks, type ReadinessCheck } from './readiness';

export const READINESS_CHECKS = Symbol('READINESS_CHECKS');
export const HEALTH_LOGGER = Symbol('HEALTH_LOGGER');

@ApiExcludeController()
@Controller()
class HealthController {
  constructor(
    @Inject(READINESS_CHECKS) private readonly checks: readonly ReadinessCheck[],
    @Inject(HEALTH_LOGGER) private readonly logger: Logger,
  ) {}

  /** Liveness: the process is up and its event loop answers. No dependency is consulted. */
  @Get('healthz')
  liveness(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /** Readiness: every dependency answers. 503 otherwise, so a load balancer stops sending traffic. */
  @Get('readyz')
  async readiness(@Res({ passthrough: true }) reply: FastifyReply) {
    const report = await runReadinessChecks(this.checks, {
      timeoutMs: 2_000,
      onFailure: (name, error) => this.logger.warn({ check: name, err: error }, 'readiness check failed'),
    });
    if (report.status !== 'ok') reply.status(503);
    return report;
  }
}

export interface HealthModuleOptions {
  readonly imports?: ModuleMetadata['imports'];
  readonly logger: Logger;
  readonly inject?: FactoryProvider['inject'];
  readonly useFactory: (...deps: never[]) => readonly ReadinessCheck[];
}

/** `/healthz` (liveness) and `/readyz` (readiness) for a Nest HTTP app. */
@Module({})
export class HealthModule {
  static forRoot(options: HealthModuleOptions): DynamicModule {
    return {
      module: HealthModule,
      imports: options.imports ?? [],
      controllers: [HealthController],
      providers: [
        { provide: HEALTH_LOGGER, useValue: options.logger },
        {
          provide: READINESS_CHECKS,
          inject: options.inject ?? [],
          useFactory: options.useFactory as (...deps: unknown[]) => readonly ReadinessCheck[],
        },
      ],
    };
  }
}
