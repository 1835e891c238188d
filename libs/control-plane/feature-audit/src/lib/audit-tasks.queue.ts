import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { AUDIT_TASKS_QUEUE, type AuditExportJob } from '@portcullis/audit/core';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { Queue } from 'bullmq';
import { AUDIT_API_OPTIONS, type AuditApiOptions } from './audit.options';

/**
 * The producer side of the audit worker's task queue (`portcullis-audit-tasks`): the control plane only enqueues
 * `audit.export.run`; the audit worker runs it. Its own connection, failing fast when Redis is away.
 */
@Injectable()
export class AuditTasksQueue implements OnApplicationShutdown {
  private readonly connection: Redis;
  private readonly queue: Queue;

  constructor(@Inject(AUDIT_API_OPTIONS) private readonly options: AuditApiOptions) {
    this.connection = createRedisClient({ url: options.redisUrl, connectionName: 'control-plane-audit-tasks', maxRetriesPerRequest: 1 });
    this.queue = new Queue(AUDIT_TASKS_QUEUE, { connection: this.connection, prefix: options.queuePrefix });
    this.queue.on('error', () => undefined);
  }

  /** Bounded by `enqueueTimeoutMs`; rejects when Redis does not take the job in time. */
  async add(name: string, data: AuditExportJob, opts: { jobId: string }): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('enqueueing the export job timed out')), this.options.enqueueTimeoutMs);
      timer.unref();
    });
    const added = this.queue.add(name, data, {
      ...opts,
      attempts: 3,
      backoff: { type: 'exponential', delay: 5_000 },
      removeOnComplete: 1_000,
      removeOnFail: 1_000,
    });
    added.catch(() => undefined);
    try {
      await Promise.race([added, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Whether the job may still run (again): waiting, delayed (a retry after a failed attempt), or running an attempt
   * that is not its last (one failing now is retried). Unknown: false.
   */
  async pending(jobId: string): Promise<boolean> {
    const job = await this.queue.getJob(jobId).catch(() => undefined);
    if (job === undefined) return false;
    const state = await job.getState().catch(() => 'unknown');
    if (state === 'active') return job.attemptsMade + 1 < (job.opts.attempts ?? 1);
    return state === 'waiting' || state === 'delayed' || state === 'prioritized' || state === 'waiting-children';
  }

  /**
   * Drops a job that has not started (waiting or delayed), best effort: one a worker holds cannot be removed, and sees
   * its export cancelled before its next page instead.
   */
  async remove(jobId: string): Promise<void> {
    const job = await this.queue.getJob(jobId).catch(() => undefined);
    await job?.remove().catch(() => undefined);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.queue.close().catch(() => undefined);
    await this.connection.quit().catch(() => this.connection.disconnect());
  }
}
