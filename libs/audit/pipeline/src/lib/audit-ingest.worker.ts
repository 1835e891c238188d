import {
  Inject,
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import {
  AUDIT_DEAD_JOB,
  AUDIT_DLQ,
  deadLetterJobId,
  type AuditBatcher,
  type DeadLetter,
} from '@portcullis/audit/core';
import {
  assertHandlersCover,
  isJobName,
  parseJobPayload,
  QUEUES,
  type JobHandlers,
} from '@portcullis/contracts/jobs';
import { DelayedError, Queue, UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';

export const AUDIT_BATCHER = Symbol('AUDIT_BATCHER');
export const AUDIT_WORKER_SETTINGS = Symbol('AUDIT_WORKER_SETTINGS');

export interface AuditWorkerSettings {
  readonly connection: ConnectionOptions;
  readonly prefix: string;
  /** Jobs in progress at once: the upper bound of a batch. */
  readonly concurrency: number;
  /** Attempts before an event is dead-lettered. */
  readonly maxAttempts: number;
  /** Backoff before attempt n+1: base * 2^(n-1), capped at 60 s, with ±20 % jitter. */
  readonly retryBaseMs: number;
  /** BullMQ lock duration: a killed worker's jobs go back to waiting this long after it died. */
  readonly lockDurationMs: number;
  readonly stalledIntervalMs: number;
}

export function retryDelayMs(attempt: number, baseMs: number, random: () => number = Math.random): number {
  const raw = Math.min(baseMs * 2 ** Math.max(0, attempt - 1), 60_000);
  return Math.round(raw * (0.8 + 0.4 * random()));
}

class PermanentFailure extends Error {}

/**
 * Consumes the audit queue with BullMQ's Worker (locks, stalled-job recovery and acknowledgement stay BullMQ's),
 * at high concurrency, and hands each event to the batcher, which writes them to Postgres a batch at a time: a
 * job completes when its batch committed.
 *
 * Retries are the worker's policy, not the producer's: a failed event is moved back to `delayed` with exponential
 * backoff until `maxAttempts` attempts have started, then copied to the dead-letter queue and failed for good. A
 * job that cannot be understood (unknown name, invalid payload) goes to the DLQ at once.
 */
@Injectable()
export class AuditIngestWorker implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('AuditIngestWorker');
  private readonly handlers: JobHandlers<typeof QUEUES.audit>;
  private worker: Worker | undefined;
  private dlq: Queue | undefined;

  constructor(
    @Inject(AUDIT_BATCHER) private readonly batcher: AuditBatcher,
    @Inject(AUDIT_WORKER_SETTINGS) private readonly settings: AuditWorkerSettings,
  ) {
    this.handlers = {
      'audit.event.ingest': (event) => this.batcher.submit(event),
    };
    // Refuse to start rather than receive a job we have no handler for.
    assertHandlersCover(QUEUES.audit, this.handlers);
  }

  onModuleInit(): void {
    const { connection, prefix } = this.settings;
    this.dlq = new Queue(AUDIT_DLQ, { connection, prefix });
    this.dlq.on('error', (error) => this.logger.warn(`dead-letter queue: ${error.message}`));
    this.worker = new Worker(QUEUES.audit, (job, token) => this.process(job, token), {
      connection,
      prefix,
      concurrency: this.settings.concurrency,
      lockDuration: this.settings.lockDurationMs,
      stalledInterval: this.settings.stalledIntervalMs,
      maxStalledCount: 10,
      removeOnComplete: { count: 0 },
      removeOnFail: { count: 10_000 },
    });
    this.worker.on('error', (error) => this.logger.warn(`worker: ${error.message}`));
  }

  async beforeApplicationShutdown(): Promise<void> {
    // Stop fetching and wait for the jobs in progress (their batches commit), then close the DLQ producer.
    await this.worker?.close();
    await this.batcher.drain();
    await this.dlq?.close();
  }

  async process(job: Job, token?: string): Promise<void> {
    try {
      if (!isJobName(job.name) || !(job.name in this.handlers))
        throw new PermanentFailure(`unknown job ${job.name}`);
      let payload;
      try {
        payload = parseJobPayload(job.name, job.data);
      } catch {
        throw new PermanentFailure(`invalid payload for ${job.name}`);
      }
      await this.handlers[job.name](payload);
    } catch (error) {
      const attempt = Math.max(1, job.attemptsStarted);
      const message = error instanceof Error ? error.message : String(error);
      if (!(error instanceof PermanentFailure) && attempt < this.settings.maxAttempts && token) {
        const delay = retryDelayMs(attempt, this.settings.retryBaseMs);
        this.logger.warn(
          `audit job ${job.id} attempt ${attempt} failed (${message}); retrying in ${delay} ms`,
        );
        await job.moveToDelayed(Date.now() + delay, token);
        throw new DelayedError();
      }
      await this.deadLetter(job, message, attempt);
      throw new UnrecoverableError(message);
    }
  }

  private async deadLetter(job: Job, error: string, attempts: number): Promise<void> {
    const letter: DeadLetter = {
      jobName: job.name,
      jobId: job.id ?? null,
      payload: job.data,
      error,
      attempts,
      failedAt: new Date().toISOString(),
    };
    const jobId = deadLetterJobId(letter);
    await this.dlq?.add(AUDIT_DEAD_JOB, letter, jobId ? { jobId } : {});
    this.logger.error(`audit job ${job.id} dead-lettered after ${attempts} attempt(s): ${error}`);
  }
}
