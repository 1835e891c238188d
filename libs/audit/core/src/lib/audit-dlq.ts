import { jobIdFor, parseJobPayload, QUEUES } from '@portcullis/contracts/jobs';
import { Queue, type ConnectionOptions } from 'bullmq';

/** Dead-letter queue of the audit pipeline: events that failed for good, kept for an operator. Never consumed. */
export const AUDIT_DLQ = 'portcullis-audit-dlq';
export const AUDIT_DEAD_JOB = 'audit.event.dead';

export interface DeadLetter {
  /** The original job's name and id (for audit events, `audit-<eventId>`). */
  readonly jobName: string;
  readonly jobId: string | null;
  /** The original payload as received (it may not even parse: that can be why it is here). */
  readonly payload: unknown;
  readonly error: string;
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
   * Puts dead letters (all, or those whose DLQ id or original job id is in `ids`) back on the audit queue, under
   * their deterministic job id, and removes them from the DLQ. A payload that does not parse is left where it is.
   */
  async replay(
    ids?: readonly string[],
  ): Promise<{ replayed: string[]; skipped: { id: string; reason: string }[] }> {
    const wanted = ids ? new Set(ids) : undefined;
    const replayed: string[] = [];
    const skipped: { id: string; reason: string }[] = [];
    for (const entry of await this.list(100_000)) {
      if (wanted && !wanted.has(entry.dlqJobId) && !(entry.jobId && wanted.has(entry.jobId))) continue;
      if (entry.jobName !== 'audit.event.ingest') {
        skipped.push({ id: entry.dlqJobId, reason: `unknown job ${entry.jobName}` });
        continue;
      }
      let payload;
      try {
        payload = parseJobPayload('audit.event.ingest', entry.payload);
      } catch {
        skipped.push({ id: entry.dlqJobId, reason: 'payload does not match audit.event.ingest v1' });
        continue;
      }
      const jobId = jobIdFor('audit.event.ingest', payload);
      // The failed original still holds its id in the audit queue; a new job under that id would be a no-op.
      const original = await this.audit.getJob(jobId);
      if (original) await original.remove();
      await this.audit.add('audit.event.ingest', payload, { jobId });
      await this.dlq.remove(entry.dlqJobId);
      replayed.push(entry.dlqJobId);
    }
    return { replayed, skipped };
  }

  async close(): Promise<void> {
    await Promise.all([this.dlq.close(), this.audit.close()]);
  }
}
