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
  AuditStoreError,
  deadLetterJobId,
  type AuditBatcher,
  type DeadLetter,
} from '@portcullis/audit/core';
import {
  assertHandlersCover,
  isJobName,
  parseAuditEvent,
  parseAuditEventBatch,
  parseJobPayload,
  QUEUES,
  type AuditEventV1,
  type JobHandlers,
} from '@portcullis/contracts/jobs';
import { DelayedError, Queue, UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { JobsInProgress } from './jobs-in-progress';

export const AUDIT_BATCHER = Symbol('AUDIT_BATCHER');
export const AUDIT_WORKER_SETTINGS = Symbol('AUDIT_WORKER_SETTINGS');

export interface AuditWorkerSettings {
  readonly connection: ConnectionOptions;
  readonly prefix: string;
  /** Jobs in progress at once (a batch job holds many events). */
  readonly concurrency: number;
  /** Attempts before a job (or what is left of a batch) is dead-lettered. */
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

/** Some events of a batch job were not stored; `retryable` unless only invalid events are left. */
class BatchFailure extends Error {
  constructor(
    message: string,
    /** The events left to store, as received (a v2 row decoded), in batch order. */
    readonly remaining: unknown[],
    /** Events in the batch. */
    readonly total: number,
    readonly eventErrors: { eventId: string | null; error: string }[],
    readonly retryable: boolean,
    /** Every event not stored failed for a reason that is no event's fault (the database out of reach). */
    readonly transient: boolean,
  ) {
    super(message);
  }
}

/** The store failed for a reason that is not the events' (database unreachable, pool exhausted, a conflict). */
const isTransient = (error: unknown): boolean => error instanceof AuditStoreError && error.transient;

/** Past the attempt limit, a job kept waiting out a database outage says so only every this many attempts. */
const OUTAGE_LOG_EVERY = 10;
/**
 * How long after it was enqueued a job may wait out failures that are no event's fault. Past it the job is dead-lettered
 * as any other: a failure that only looks transient (a statement timeout on every try) must not loop for ever.
 */
export const MAX_OUTAGE_WAIT_MS = 24 * 3_600_000;

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * Consumes the audit queue with BullMQ's Worker (locks, stalled-job recovery and acknowledgement stay BullMQ's)
 * and hands each job's events to the batcher, which writes the events of many jobs to Postgres together: a job
 * completes when all of its events committed. Two job shapes: `audit.events.ingest` (a batch of events, what the
 * gateway emitter sends, payload v1 or v2) and `audit.event.ingest` (one event: the control plane, and jobs enqueued before batches).
 *
 * Retries are the worker's policy, not the producer's: a failed job is moved back to `delayed` with exponential
 * backoff until `maxAttempts` attempts have started, then copied to the dead-letter queue and failed for good. A
 * job that cannot be understood (unknown name, invalid payload) goes to the DLQ at once.
 *
 * A batch job is never all-or-nothing: the batcher stores every event it can (isolating a bad one by splitting),
 * the job's data is narrowed to the events still missing before it is retried, and what is finally dead-lettered
 * is only those events (invalid ones included). One poison event costs its batch a retry loop for itself alone.
 */
@Injectable()
export class AuditIngestWorker implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('AuditIngestWorker');
  private readonly handlers: JobHandlers<typeof QUEUES.audit>;
  private worker: Worker | undefined;
  private readonly inProgress = new JobsInProgress();
  private dlq: Queue | undefined;
  /** The audit queue itself, for its job counts (metrics); the worker takes the jobs. */
  private queue: Queue | undefined;
  private readonly counters = { eventsStored: 0, jobsRetried: 0, jobsDeadLettered: 0 };

  constructor(
    @Inject(AUDIT_BATCHER) private readonly batcher: AuditBatcher,
    @Inject(AUDIT_WORKER_SETTINGS) private readonly settings: AuditWorkerSettings,
  ) {
    this.handlers = {
      'audit.event.ingest': async (event) => {
        await this.batcher.submit(event);
        this.counters.eventsStored += 1;
      },
      'audit.events.ingest': async (batch) => this.storeBatch(batch.events, batch.events, []),
    };
    // Refuse to start rather than receive a job we have no handler for.
    assertHandlersCover(QUEUES.audit, this.handlers);
  }

  onModuleInit(): void {
    const { connection, prefix } = this.settings;
    this.dlq = new Queue(AUDIT_DLQ, { connection, prefix });
    this.dlq.on('error', (error) => this.logger.warn(`dead-letter queue: ${error.message}`));
    this.queue = new Queue(QUEUES.audit, { connection, prefix });
    this.queue.on('error', (error) => this.logger.warn(`audit queue: ${error.message}`));
    this.worker = new Worker(QUEUES.audit, (job, token) => this.inProgress.track(() => this.process(job, token)), {
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
    // BullMQ fails a job that stalled more than maxStalledCount times (its workers kept dying under it) without
    // running it again, so process() never saw it and never dead-lettered it: its events would be only in the failed
    // set, which audit:dlq does not list and which is trimmed. Such a job is dead-lettered here.
    this.worker.on('failed', (job, error) => {
      if (!job || job.deferredFailure === undefined || error.message !== job.deferredFailure) return;
      this.deadLetter(job, error.message, Math.max(1, job.attemptsStarted), job.data).catch((cause: unknown) =>
        this.logger.error(`audit job ${job.id} failed without running and could not be dead-lettered: ${messageOf(cause)}`),
      );
    });
  }

  async beforeApplicationShutdown(): Promise<void> {
    // Stop fetching and wait for the jobs in progress (their batches commit), then close the DLQ producer. With none in
    // progress the worker closes at once, Redis reachable or not.
    await this.inProgress.close(this.worker);
    await this.batcher.drain();
    await this.dlq?.close();
    await this.queue?.close();
  }

  /** Events stored (or found stored already) and jobs retried or dead-lettered since start (metrics). */
  get stats(): { readonly eventsStored: number; readonly jobsRetried: number; readonly jobsDeadLettered: number } {
    return { ...this.counters };
  }

  /** Jobs in the audit queue by state, and entries in the dead-letter queue (metrics; one round trip each). */
  async jobCounts(): Promise<{ readonly audit: Readonly<Record<string, number>>; readonly deadLetters: number }> {
    if (!this.queue || !this.dlq) throw new Error('the audit worker has not started');
    const [audit, dead] = await Promise.all([this.queue.getJobCounts('waiting', 'active', 'delayed', 'failed'), this.dlq.getJobCounts('waiting')]);
    return { audit, deadLetters: dead['waiting'] ?? 0 };
  }

  async process(job: Job, token?: string): Promise<void> {
    try {
      if (!isJobName(job.name) || !(job.name in this.handlers))
        throw new PermanentFailure(`unknown job ${job.name}`);
      if (job.name === 'audit.events.ingest') {
        // Event by event, so that one malformed event does not void the others.
        let parsed;
        try {
          parsed = parseAuditEventBatch(job.data);
        } catch {
          throw new PermanentFailure(`invalid payload for ${job.name}`);
        }
        await this.storeBatch(parsed.valid, parsed.events, parsed.invalid);
        return;
      }
      let payload;
      try {
        // A single event is checked as batch events are (arguments too deep to validate are kept as a note).
        payload = job.name === 'audit.event.ingest' ? parseAuditEvent(job.data) : parseJobPayload(job.name, job.data);
      } catch {
        throw new PermanentFailure(`invalid payload for ${job.name}`);
      }
      await this.handlers[job.name](payload as never);
    } catch (error) {
      const attempt = Math.max(1, job.attemptsStarted);
      const message = messageOf(error);
      const retryable = error instanceof BatchFailure ? error.retryable : !(error instanceof PermanentFailure);
      // A database outage is nobody's event's fault: such a job waits it out at the backoff's cap (60 s), however many
      // attempts that takes, rather than being dead-lettered after two minutes with every job behind it (nothing
      // replays the dead letters by itself, and the trail would verify with those events missing).
      const outage = (error instanceof BatchFailure ? error.transient : isTransient(error)) && Date.now() - job.timestamp < MAX_OUTAGE_WAIT_MS;
      if (retryable && (attempt < this.settings.maxAttempts || outage) && token) {
        const delay = retryDelayMs(attempt, this.settings.retryBaseMs);
        if (error instanceof BatchFailure) {
          // Retry only what is missing: the rest of the batch is stored and stays stored. (A v2 batch's rest is kept
          // as v1 events: the rows were decoded already.)
          if (error.remaining.length !== error.total) await job.updateData({ v: 1, events: error.remaining });
        }
        if (attempt < this.settings.maxAttempts || attempt % OUTAGE_LOG_EVERY === 0) {
          this.logger.warn(`audit job ${job.id} attempt ${attempt} failed (${message}); retrying in ${delay} ms`);
        }
        await job.moveToDelayed(Date.now() + delay, token);
        this.counters.jobsRetried += 1;
        throw new DelayedError();
      }
      if (error instanceof BatchFailure) {
        await this.deadLetter(job, message, attempt, { v: 1, events: error.remaining }, error.eventErrors);
      } else {
        await this.deadLetter(job, message, attempt, job.data);
      }
      throw new UnrecoverableError(message);
    }
  }

  /**
   * Stores a batch's valid events; throws a BatchFailure naming what is left (failed and invalid events, in batch
   * order) unless everything is stored.
   */
  private async storeBatch(
    valid: readonly AuditEventV1[],
    raw: readonly unknown[],
    invalid: readonly { index: number; eventId: string | null; error: string }[],
  ): Promise<void> {
    const { failed } = await this.batcher.submitMany(valid);
    this.counters.eventsStored += valid.length - failed.length;
    if (failed.length === 0 && invalid.length === 0) return;
    const failedIds = new Map(failed.map((f) => [f.event.eventId, messageOf(f.error)]));
    const transient = failed.length > 0 && failed.every((f) => isTransient(f.error));
    const invalidAt = new Map(invalid.map((i) => [i.index, i]));
    const remaining: unknown[] = [];
    const eventErrors: { eventId: string | null; error: string }[] = [];
    raw.forEach((event, index) => {
      const bad = invalidAt.get(index);
      if (bad) {
        remaining.push(event);
        eventErrors.push({ eventId: bad.eventId, error: `invalid event: ${bad.error}` });
        return;
      }
      // The valid events' ids are lower-cased by the contract: the raw event's as sent may not be (an event failed
      // under an upper-case id was left out of the retry, and lost).
      const id = String((event as { eventId: unknown }).eventId).toLowerCase();
      const error = failedIds.get(id);
      if (error !== undefined) {
        remaining.push(event);
        eventErrors.push({ eventId: id, error });
      }
    });
    const first = eventErrors[0]?.error ?? 'unknown';
    throw new BatchFailure(
      `${remaining.length} of ${raw.length} event(s) not stored: ${first}`,
      remaining,
      raw.length,
      eventErrors,
      failed.length > 0,
      // Invalid events among them wait with the rest, and are dead-lettered alone once the database is back.
      transient,
    );
  }

  private async deadLetter(
    job: Job,
    error: string,
    attempts: number,
    payload: unknown,
    eventErrors?: DeadLetter['eventErrors'],
  ): Promise<void> {
    const letter: DeadLetter = {
      jobName: job.name,
      jobId: job.id ?? null,
      payload,
      error,
      attempts,
      failedAt: new Date().toISOString(),
      ...(eventErrors ? { eventErrors } : {}),
    };
    const jobId = deadLetterJobId(letter);
    await this.dlq?.add(AUDIT_DEAD_JOB, letter, jobId ? { jobId } : {});
    this.counters.jobsDeadLettered += 1;
    this.logger.error(`audit job ${job.id} dead-lettered after ${attempts} attempt(s): ${error}`);
  }
}
