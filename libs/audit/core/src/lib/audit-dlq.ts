import {
  isJobName,
  jobIdFor,
  parseAuditEvent,
  parseAuditEventBatch,
  parseJobPayload,
  QUEUES,
  type JobName,
} from '@portcullis/contracts/jobs';
import { Queue, type ConnectionOptions } from 'bullmq';

/** Dead-letter queue of the audit pipeline: events that failed for good, kept for an operator. Never consumed. */
export const AUDIT_DLQ = 'portcullis-audit-dlq';
export const AUDIT_DEAD_JOB = 'audit.event.dead';

/** Jobs a dead letter can be replayed as. */
const REPLAYABLE = ['audit.event.ingest', 'audit.events.ingest'] as const satisfies readonly JobName[];
type ReplayableJob = (typeof REPLAYABLE)[number];

export interface DeadLetter {
  /**
   * The original job's name and id: `audit.event.ingest` / `audit-<eventId>`, or `audit.events.ingest` /
   * `audit-batch-<digest>` for a batch job.
   */
  readonly jobName: string;
  readonly jobId: string | null;
  /**
   * The payload to replay. For a batch job only the events that failed (the rest of the batch is stored); a payload
   * that did not parse as received.
   */
  readonly payload: unknown;
  readonly error: string;
  /** Batch jobs: why each remaining event failed (event id, or null if the event had no usable id). */
  readonly eventErrors?: readonly { readonly eventId: string | null; readonly error: string }[];
  readonly attempts: number;
  readonly failedAt: string;
}

/** The DLQ job id for a dead letter: the original job id, so dead-lettering twice keeps one entry. */
export function deadLetterJobId(letter: DeadLetter): string | undefined {
  return letter.jobId ? `dead-${letter.jobId}` : undefined;
}

export interface DeadLetterEntry extends DeadLetter {
  readonly dlqJobId: string;
}

export interface AuditDlqOptions {
  readonly connection: ConnectionOptions;
  readonly prefix: string;
}

/** Operator side of the DLQ: list entries, and replay them into the audit queue. */
export class AuditDlq {
  private readonly dlq: Queue;
  private readonly audit: Queue;

  constructor(options: AuditDlqOptions) {
    this.dlq = new Queue(AUDIT_DLQ, { connection: options.connection, prefix: options.prefix });
    this.audit = new Queue(QUEUES.audit, { connection: options.connection, prefix: options.prefix });
  }

  async list(limit = 1_000): Promise<DeadLetterEntry[]> {
    const jobs = await this.dlq.getJobs(['waiting', 'delayed', 'prioritized'], 0, limit - 1, true);
    return jobs.map((job) => ({ ...(job.data as DeadLetter), dlqJobId: job.id ?? '' }));
  }

  /**
   * Puts dead letters (all, or those whose DLQ id or original job id is in `ids`) back on the audit queue as the job
   * they were (one event, or a batch of the events that failed), under its deterministic job id, and removes them
   * from the DLQ. A payload that does not parse is left where it is.
   */
  async replay(
    ids?: readonly string[],
  ): Promise<{ replayed: string[]; skipped: { id: string; reason: string }[] }> {
    const wanted = ids ? new Set(ids) : undefined;
    const replayed: string[] = [];
    const skipped: { id: string; reason: string }[] = [];
    for (const entry of await this.list(100_000)) {
      if (wanted && !wanted.has(entry.dlqJobId) && !(entry.jobId && wanted.has(entry.jobId))) continue;
      const name = entry.jobName;
      if (!isJobName(name) || !(REPLAYABLE as readonly string[]).includes(name)) {
        skipped.push({ id: entry.dlqJobId, reason: `unknown job ${name}` });
        continue;
      }
      let jobId: string;
      let payload: unknown;
      let invalid: unknown[] = [];
      let invalidIds = new Set<string | null>();
      try {
        if (name === 'audit.events.ingest') {
          // Replay the events that are valid now; invalid ones stay in the DLQ entry.
          const parsed = parseAuditEventBatch(entry.payload);
          if (parsed.valid.length === 0) throw new Error('no valid event');
          payload = { v: 1, events: parsed.valid };
          invalid = parsed.invalid.map((i) => i.raw);
          invalidIds = new Set(parsed.invalid.map((i) => i.eventId));
        } else {
          payload = name === 'audit.event.ingest' ? parseAuditEvent(entry.payload) : parseJobPayload(name, entry.payload);
        }
        jobId = jobIdFor(name as ReplayableJob, payload as never);
      } catch {
        skipped.push({ id: entry.dlqJobId, reason: `payload does not match ${name}` });
        continue;
      }
      // The failed original still holds its id in the audit queue (a new job under that id would be a no-op). A
      // batch's replay id can differ from the original's (only the failed events are replayed): remove both.
      for (const id of new Set([jobId, ...(entry.jobId ? [entry.jobId] : [])])) {
        const original = await this.audit.getJob(id);
        if (original) await original.remove();
      }
      await this.audit.add(name, payload, { jobId });
      if (invalid.length > 0) {
        const { dlqJobId: _id, ...letter } = entry;
        await (await this.dlq.getJob(entry.dlqJobId))?.updateData({
          ...letter,
          payload: { v: 1, events: invalid },
          eventErrors: (entry.eventErrors ?? []).filter((e) => invalidIds.has(e.eventId)),
        } satisfies DeadLetter);
        replayed.push(entry.dlqJobId);
        skipped.push({ id: entry.dlqJobId, reason: `${invalid.length} invalid event(s) left in the DLQ` });
        continue;
      }
      await this.dlq.remove(entry.dlqJobId);
      replayed.push(entry.dlqJobId);
    }
    return { replayed, skipped };
  }

  async close(): Promise<void> {
    await Promise.all([this.dlq.close(), this.audit.close()]);
  }
}
