import { Module, type DynamicModule } from '@nestjs/common';
import { PostgresAuditEventStore } from '@portcullis/audit/core';
import { AuditPipelineModule } from '@portcullis/audit/pipeline';
import { DbModule, PRISMA_CLIENT, type PortcullisPrismaClient } from '@portcullis/data/db-nest';
import { RedisModule } from '@portcullis/shared/nest-runtime';
import type { Logger } from '@portcullis/shared/util-logger';
import type { AuditWorkerConfig } from './config';

/** Composition only: the audit pipeline over Postgres and Redis. */
@Module({})
export class AppModule {
  static forRoot(config: AuditWorkerConfig, logger: Logger): DynamicModule {
    return {
      module: AppModule,
      imports: [
        DbModule.forRoot({ url: config.database.url, applicationName: 'audit-worker' }),
        RedisModule.forRoot({ url: config.redis.url, connectionName: 'audit-worker-probe', logger }),
        AuditPipelineModule.forRoot({
          redisUrl: config.redis.url,
          queuePrefix: config.queuePrefix,
          concurrency: config.concurrency,
          batch: config.batch,
          retry: config.retry,
          lock: config.lock,
          store: {
            inject: [PRISMA_CLIENT],
            useFactory: (db: PortcullisPrismaClient) => new PostgresAuditEventStore(db),
          },
        }),
      ],
    };
  }
}
