import {
  AUDIT_JOB_RETRIES,
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
  /** Dead letters a replay of everything reads ids of at a time (default 500). */
  readonly pageSize?: number;
}

/** Operator side of the DLQ: list entries, and replay them into the audit queue. */
export class AuditDlq {
  private readonly dlq: Queue;
  private readonly audit: Queue;
  private readonly pageSize: number;

  constructor(options: AuditDlqOptions) {
    this.pageSize = Math.max(1, options.pageSize ?? 500);
    this.dlq = new Queue(AUDIT_DLQ, { connection: options.connection, prefix: options.prefix });
    this.audit = new Queue(QUEUES.audit, { connection: options.connection, prefix: options.prefix });
    // Connection errors (Redis away, a database the server refuses) are what `ready` reports, and a command that fails
    // for one rejects to its caller; unheard, BullMQ prints each reconnect attempt as a raw stack trace.
    for (const queue of [this.dlq, this.audit]) queue.on('error', () => undefined);
  }

  /**
   * Whether both queues are connected within `timeoutMs`. A queue waits for Redis as long as it takes (a command's
   * retry limit does not bound that): this is the bound, before the first command.
   */
  async ready(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const connected = Promise.all([this.dlq.waitUntilReady(), this.audit.waitUntilReady()]).then(
      () => true,
      () => false,
    );
    try {
      return await Promise.race([connected, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** How many dead letters wait in the DLQ. */
  async count(): Promise<number> {
    return this.dlq.getWaitingCount();
  }

  /**
   * The first `limit` dead letters, oldest first, one at a time: ids are read `pageSize` at a time and each entry is
   * fetched when it is reached. A batch's dead letter can hold a mebibyte of events; read all at once, the default
   * limit of 1,000 could take a gigabyte.
   */
  async *entries(limit = 1_000): AsyncGenerator<DeadLetterEntry> {
    let listed = 0;
    for (let start = 0; listed < limit; start += this.pageSize) {
      const ids = await this.dlq.getRanges(['wait'], start, start + this.pageSize - 1, true);
      if (ids.length === 0) return;
      for (const id of ids) {
        if (listed >= limit) return;
        const job = await this.dlq.getJob(id);
        // Removed meanwhile (a replay by another operator): passed over.
        if (!job?.id) continue;
        listed += 1;
        yield { ...(job.data as DeadLetter), dlqJobId: job.id };
      }
    }
  }

  /**
   * Puts dead letters (all, or those whose DLQ id or original job id is in `ids`) back on the audit queue as the job
   * they were (one event, or a batch of the events that failed), under its deterministic job id, and removes them
   * from the DLQ. A payload that does not parse is left where it is.
   *
   * Memory stays bounded whatever the DLQ holds: named entries are fetched one by one, and a replay of everything walks
   * the DLQ `pageSize` ids at a time, oldest first, fetching each entry only when it is handled. A replayed entry leaves
   * the list, so the next page starts after the entries that stayed. The walk covers the entries there when it began:
   * letters dead-lettered meanwhile (a replayed event failing again) join the end of the list and wait for the next
   * replay, so a replay always ends. One removed meanwhile by another operator can make the walk pass over a later
   * entry, which stays in the DLQ for the next replay (never lost).
   */
  async replay(
    ids?: readonly string[],
  ): Promise<{ replayed: string[]; skipped: { id: string; reason: string }[] }> {
    const replayed: string[] = [];
    const skipped: { id: string; reason: string }[] = [];
    if (ids) {
      const seen = new Set<string>();
      for (const id of ids) {
        // A DLQ id, or the original job's id, whose dead letter is stored under a derived id (deadLetterJobId).
        const job = (await this.dlq.getJob(id)) ?? (await this.dlq.getJob(`dead-${id}`));
        if (!job?.id || seen.has(job.id)) continue;
        seen.add(job.id);
        await this.replayOne({ ...(job.data as DeadLetter), dlqJobId: job.id }, replayed, skipped);
      }
      return { replayed, skipped };
    }
    // Ids of the entries that stay in the list (ids only): one met again, because something before it left the list
    // meanwhile, is not handled twice.
    const stayed = new Set<string>();
    let left = await this.dlq.getWaitingCount();
    while (left > 0) {
      const page = await this.dlq.getRanges(['wait'], stayed.size, stayed.size + this.pageSize - 1, true);
      if (page.length === 0 || page.every((id) => stayed.has(id))) break;
      for (const id of page) {
        if (left <= 0) break;
        if (stayed.has(id)) continue;
        left -= 1;
        const job = await this.dlq.getJob(id);
        // No job under the id (removed meanwhile, or a list marker): counted as staying, so the walk can only pass
        // over an entry, never loop.
        if (!job?.id || !(await this.replayOne({ ...(job.data as DeadLetter), dlqJobId: job.id }, replayed, skipped))) stayed.add(id);
      }
    }
    return { replayed, skipped };
  }

  /** Replays one dead letter; true when it left the DLQ (false: skipped, or invalid events of it stay). */
  private async replayOne(entry: DeadLetterEntry, replayed: string[], skipped: { id: string; reason: string }[]): Promise<boolean> {
    const name = entry.jobName;
    if (!isJobName(name) || !(REPLAYABLE as readonly string[]).includes(name)) {
      skipped.push({ id: entry.dlqJobId, reason: `unknown job ${name}` });
      return false;
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
      return false;
    }
    // The failed original still holds its id in the audit queue (a new job under that id would be a no-op). A
    // batch's replay id can differ from the original's (only the failed events are replayed): remove both.
    for (const id of new Set([jobId, ...(entry.jobId ? [entry.jobId] : [])])) {
      const original = await this.audit.getJob(id);
      if (original) await original.remove();
    }
    // With the retries every audit job carries: without them one Redis error in the worker's bookkeeping failed the
    // replayed job for good, outside the DLQ this entry has just left.
    await this.audit.add(name, payload, { jobId, ...AUDIT_JOB_RETRIES });
    replayed.push(entry.dlqJobId);
    if (invalid.length > 0) {
      const { dlqJobId: _id, ...letter } = entry;
      await (await this.dlq.getJob(entry.dlqJobId))?.updateData({
        ...letter,
        payload: { v: 1, events: invalid },
        eventErrors: (entry.eventErrors ?? []).filter((e) => invalidIds.has(e.eventId)),
      } satisfies DeadLetter);
      skipped.push({ id: entry.dlqJobId, reason: `${invalid.length} invalid event(s) left in the DLQ` });
      return false;
    }
    await this.dlq.remove(entry.dlqJobId);
    return true;
  }

  async close(): Promise<void> {
    await Promise.all([this.dlq.close(), this.audit.close()]);
  }
}
