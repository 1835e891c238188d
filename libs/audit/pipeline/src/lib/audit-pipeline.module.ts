import { Module, type DynamicModule, type Provider } from '@nestjs/common';
import { AuditBatcher, type AuditEventStore } from '@portcullis/audit/core';
import {
  AUDIT_BATCHER,
  AUDIT_WORKER_SETTINGS,
  AuditIngestWorker,
  type AuditWorkerSettings,
} from './audit-ingest.worker';
import { AUDIT_TASKS_DEPS, AuditTasksWorker, type AuditTasksDeps } from './audit-tasks.worker';

export const AUDIT_EVENT_STORE = Symbol('AUDIT_EVENT_STORE');

export interface AuditPipelineOptions {
  readonly redisUrl: string;
  /** BullMQ key prefix: producers and this worker must agree. Separate stacks on one Redis use their own. */
  readonly queuePrefix: string;
  readonly concurrency: number;
  readonly batch: { readonly maxBatch: number; readonly lingerMs: number; readonly maxInFlight: number };
  readonly retry: { readonly maxAttempts: number; readonly baseMs: number };
  readonly lock: { readonly durationMs: number; readonly stalledIntervalMs: number };
  /** Provides AUDIT_EVENT_STORE (the Postgres store in production, anything else in tests). */
  readonly store: Omit<Provider, 'provide'> & Record<string, unknown>;
  /** Exports and retention (`portcullis-audit-tasks`); provides AuditTasksDeps minus the store. Omit to run none. */
  readonly tasks?: {
    readonly inject: unknown[];
    readonly useFactory: (...args: never[]) => Omit<AuditTasksDeps, 'store'>;
  };
  readonly imports?: DynamicModule['imports'];
}

/** The audit worker's consuming side: BullMQ queue `portcullis-audit`, batched into an AuditEventStore. */
@Module({})
export class AuditPipelineModule {
  static forRoot(options: AuditPipelineOptions): DynamicModule {
    const settings: AuditWorkerSettings = {
      // Workers block on Redis: they must never give up on a command after N retries.
      connection: { url: options.redisUrl, maxRetriesPerRequest: null, connectionName: 'audit-worker' },
      prefix: options.queuePrefix,
      concurrency: options.concurrency,
      maxAttempts: options.retry.maxAttempts,
      retryBaseMs: options.retry.baseMs,
      lockDurationMs: options.lock.durationMs,
      stalledIntervalMs: options.lock.stalledIntervalMs,
    };
    return {
      module: AuditPipelineModule,
      imports: [...(options.imports ?? [])],
      providers: [
        { ...options.store, provide: AUDIT_EVENT_STORE } as Provider,
        { provide: AUDIT_WORKER_SETTINGS, useValue: settings },
        {
          provide: AUDIT_BATCHER,
          inject: [AUDIT_EVENT_STORE],
          useFactory: (store: AuditEventStore) => new AuditBatcher({ store, ...options.batch }),
        },
        AuditIngestWorker,
        ...(options.tasks
          ? [
              {
                provide: AUDIT_TASKS_DEPS,
                inject: [...options.tasks.inject, AUDIT_EVENT_STORE],
                useFactory: (...args: unknown[]) => {
                  const store = args.pop() as AuditEventStore;
                  return { ...(options.tasks?.useFactory as (...a: unknown[]) => object)(...args), store };
                },
              } as Provider,
              AuditTasksWorker,
            ]
          : []),
      ],
    };
  }
}
