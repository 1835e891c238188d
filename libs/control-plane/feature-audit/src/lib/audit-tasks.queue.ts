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
    const added = this.queue.add(name, data, {
      ...opts,
      attempts: 3,
      backoff: { type: 'exponential', delay: 5_000 },
      removeOnComplete: 1_000,
      removeOnFail: 1_000,
    });
    await this.bounded(added, () => {
      throw new Error('enqueueing the export job timed out');
    });
  }

  /**
   * Whether the job may still run (again): waiting, delayed (a retry after a failed attempt), or running an attempt
   * that is not its last (one failing now is retried). Unknown (Redis failing or not answering within
   * `enqueueTimeoutMs`): false.
   */
  async pending(jobId: string): Promise<boolean> {
    const state = async (): Promise<boolean> => {
      const job = await this.queue.getJob(jobId);
      if (job === undefined) return false;
      const now = await job.getState();
      if (now === 'active') return job.attemptsMade + 1 < (job.opts.attempts ?? 1);
      return now === 'waiting' || now === 'delayed' || now === 'prioritized' || now === 'waiting-children';
    };
    return this.bounded(state().catch(() => false), () => false);
  }

  /**
   * Drops a job that has not started (waiting or delayed), best effort, for at most `enqueueTimeoutMs`: one a worker
   * holds (or one Redis does not answer for) is not removed, and its worker sees the export cancelled before its next
   * page instead.
   */
  async remove(jobId: string): Promise<void> {
    const removal = async (): Promise<void> => {
      const job = await this.queue.getJob(jobId);
      await job?.remove();
    };
    await this.bounded(removal().catch(() => undefined), () => undefined);
  }

  /**
   * `work`, or `late()` when Redis has not answered within `enqueueTimeoutMs`: ioredis has no command timeout of its
   * own, and a Redis that keeps the connection open but stops answering (a partition) would hold the request for ever.
   */
  private async bounded<T>(work: Promise<T>, late: () => T): Promise<T> {
    work.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<T>((resolve, reject) => {
      timer = setTimeout(() => {
        try {
          resolve(late());
        } catch (error) {
          reject(error);
        }
      }, this.options.enqueueTimeoutMs);
      timer.unref();
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.queue.close().catch(() => undefined);
    await this.connection.quit().catch(() => this.connection.disconnect());
  }
}
