import { BullModule } from '@nestjs/bullmq';
import { Module, type DynamicModule, type Provider } from '@nestjs/common';
import { QUEUES } from '@portcullis/contracts/jobs';
import { createRedisClient } from '@portcullis/data/redis';
import { AUDIT_EVENT_STORE } from './audit-event.store';
import { AUDIT_WORKER_CONCURRENCY, AuditIngestProcessor } from './audit-ingest.processor';

export interface AuditPipelineOptions {
  readonly redisUrl: string;
  /** BullMQ key prefix: producers and this worker must agree. Separate stacks on one Redis use their own. */
  readonly queuePrefix: string;
  readonly concurrency: number;
  /** Provides AUDIT_EVENT_STORE (the Postgres store in production, anything else in tests). */
  readonly store: Omit<Provider, 'provide'> & Record<string, unknown>;
  readonly imports?: DynamicModule['imports'];
}

/** The audit worker's consuming side: BullMQ queue `portcullis-audit` into an AuditEventStore. */
@Module({})
export class AuditPipelineModule {
  static forRoot(options: AuditPipelineOptions): DynamicModule {
    return {
      module: AuditPipelineModule,
      imports: [
        ...(options.imports ?? []),
        BullModule.forRoot({
          prefix: options.queuePrefix,
          // Workers block on Redis: they must never give up on a command after N retries.
          connection: createRedisClient({
            url: options.redisUrl,
            connectionName: 'audit-worker',
            maxRetriesPerRequest: null,
          }),
        }),
        BullModule.registerQueue({ name: QUEUES.audit }),
      ],
      providers: [
        { ...options.store, provide: AUDIT_EVENT_STORE } as Provider,
        { provide: AUDIT_WORKER_CONCURRENCY, useValue: options.concurrency },
        AuditIngestProcessor,
      ],
    };
  }
}
