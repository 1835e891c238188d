import { Module, type DynamicModule } from '@nestjs/common';
import { PostgresAuditEventStore } from '@portcullis/audit/core';
import { AuditPipelineModule } from '@portcullis/audit/pipeline';
import {
  DbModule,
  PRISMA_CLIENT,
  SYSTEM_PRISMA_CLIENT,
  type PortcullisPrismaClient,
  type SystemPrismaClient,
} from '@portcullis/data/db-nest';
import { RedisModule } from '@portcullis/shared/nest-runtime';
import type { AuditAnchorSigner } from '@portcullis/audit/chain';
import type { Logger } from '@portcullis/shared/util-logger';
import type { AuditWorkerConfig } from './config';

/** Composition only: the audit pipeline over Postgres and Redis. */
@Module({})
export class AppModule {
  static forRoot(config: AuditWorkerConfig, logger: Logger, signer: AuditAnchorSigner | null = null): DynamicModule {
    return {
      module: AppModule,
      imports: [
        // The system client is for the cross-tenant tasks (retention's deletes, the outbox's reads), nothing else.
        DbModule.forRoot({
          url: config.database.url,
          applicationName: 'audit-worker',
          // A database that stops answering would otherwise hold a batch (and its lock) without end; bounded, the
          // batch fails as transient and is retried. Retention deletes and export pages run in bounded batches too.
          statementTimeoutMs: 60_000,
          connectTimeoutMs: 10_000,
          ...(config.database.systemUrl ? { systemUrl: config.database.systemUrl } : {}),
        }),
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
          tasks: {
            inject: [PRISMA_CLIENT, { token: SYSTEM_PRISMA_CLIENT, optional: true }],
            useFactory: (db: PortcullisPrismaClient, systemDb: SystemPrismaClient | undefined) => ({
              db,
              systemDb: systemDb ?? null,
              exportDir: config.exports.dir,
              exportTtlMs: config.exports.ttlMs,
              retentionEveryMs: config.retention.everyMs,
              outbox: config.outbox,
              ...(signer ? { anchors: { signer, everyMs: config.anchors.everyMs } } : {}),
            }),
          },
        }),
      ],
    };
  }
}
