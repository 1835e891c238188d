import type { Worker } from 'bullmq';

/**
 * The jobs a BullMQ worker's processor is running, counted, so that shutdown knows whether there is anything to wait
 * for. A graceful `worker.close()` waits for the jobs in progress and also for the worker's Redis connection, which
 * never comes while Redis is down: the process would sit out its whole shutdown grace and exit 1. With no job in
 * progress there is nothing to wait for, and the worker is closed by force. A job fetched at that very instant keeps its
 * lock in Redis, is not completed, and is taken again by the stalled check (audit jobs are idempotent): not lost.
 */
export class JobsInProgress {
  private running = 0;

  get count(): number {
    return this.running;
  }

  /** Runs a job's processing, counted while it runs. */
  async track<T>(processing: () => Promise<T>): Promise<T> {
    this.running += 1;
    try {
      return await processing();
    } finally {
      this.running -= 1;
    }
  }

  /** Closes `worker`: waits for the jobs in progress (within the shutdown grace) if there are any, else at once. */
  async close(worker: Worker | undefined): Promise<void> {
    await worker?.close(this.running === 0);
  }
}
