import { Processor, WorkerHost } from '@nestjs/bullmq';
import { Inject, type OnApplicationBootstrap } from '@nestjs/common';
import {
  assertHandlersCover,
  isJobName,
  parseJobPayload,
  QUEUES,
  type JobHandlers,
} from '@portcullis/contracts/jobs';
import { UnrecoverableError, type Job } from 'bullmq';
import { AUDIT_EVENT_STORE, type AuditEventStore } from './audit-event.store';

/**
 * Consumes the audit queue. Every job name of the queue must have a handler here, checked when the worker
 * is constructed, so a worker that cannot process a job it may receive never starts.
 */
export const AUDIT_WORKER_CONCURRENCY = Symbol('AUDIT_WORKER_CONCURRENCY');

@Processor(QUEUES.audit)
export class AuditIngestProcessor extends WorkerHost implements OnApplicationBootstrap {
  private readonly handlers: JobHandlers<typeof QUEUES.audit>;

  constructor(
    @Inject(AUDIT_EVENT_STORE) store: AuditEventStore,
    @Inject(AUDIT_WORKER_CONCURRENCY) private readonly concurrency: number,
  ) {
    super();
    this.handlers = {
      'audit.event.ingest': async (event) => {
        await store.insert([event]);
      },
    };
    assertHandlersCover(QUEUES.audit, this.handlers);
  }

  onApplicationBootstrap(): void {
    this.worker.concurrency = this.concurrency;
  }

  async process(job: Job): Promise<void> {
    // A job we cannot understand will not become understandable on retry: fail it for good, so it lands
    // in the failed set for an operator instead of looping.
    if (!isJobName(job.name) || !(job.name in this.handlers)) {
      throw new UnrecoverableError(`unknown job ${job.name}`);
    }
    let payload;
    try {
      payload = parseJobPayload(job.name, job.data);
    } catch {
      throw new UnrecoverableError(`invalid payload for ${job.name}`);
    }
    await this.handlers[job.name](payload);
  }
}
