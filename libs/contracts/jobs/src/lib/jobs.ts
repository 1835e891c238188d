import { z } from 'zod';
import { auditEventV1 } from './audit-event';
import { auditBatchJobId, auditEventBatch } from './audit-event-batch';

/** Queue names. One queue per kind of work, so a backlog in one cannot starve another. */
export const QUEUES = {
  audit: 'portcullis-audit',
} as const;
export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

/**
 * BullMQ retries of every audit ingest job, whoever adds it (gateway, control plane, a dead letter's replay). The
 * worker retries and dead-letters by itself (ADR 0010); these are the safety net for a failure of that bookkeeping
 * (Redis failing while the worker delays or dead-letters a job): the job is tried again instead of failing for good
 * outside the dead-letter queue, where nothing lists it.
 */
export const AUDIT_JOB_RETRIES = { attempts: 5, backoff: { type: 'exponential', delay: 1_000 } } as const;

/**
 * Every job the system knows: its queue, payload schema and version. A worker refuses to start unless it
 * has a handler for each job of the queues it consumes (`assertHandlersCover`).
 */
export const JOBS = {
  /** One event per job: the control plane's changes, and jobs enqueued before batch jobs existed. */
  'audit.event.ingest': { queue: QUEUES.audit, version: 1, payload: auditEventV1 },
  /** Many events per job: the gateway emitter's flushes (ADR 0010). Payload v1 (event objects) or v2 (rows). */
  'audit.events.ingest': { queue: QUEUES.audit, version: 2, payload: auditEventBatch },
} as const satisfies Record<string, { queue: QueueName; version: number; payload: z.ZodType }>;

export type JobName = keyof typeof JOBS;
export type JobPayload<N extends JobName> = z.infer<(typeof JOBS)[N]['payload']>;

export const jobNamesForQueue = (queue: QueueName): JobName[] =>
  (Object.keys(JOBS) as JobName[]).filter((name) => JOBS[name].queue === queue);

/** Parses a payload for `name`, or throws with the zod issues. */
export function parseJobPayload<N extends JobName>(name: N, payload: unknown): JobPayload<N> {
  return JOBS[name].payload.parse(payload) as JobPayload<N>;
}

export function isJobName(value: string): value is JobName {
  return Object.prototype.hasOwnProperty.call(JOBS, value);
}

/**
 * Deterministic job id: the event's own id, or for a batch a digest of its event ids. Enqueueing the same event (or
 * batch) twice yields one job, which is what makes retries and spool replays idempotent in Redis (Postgres is
 * idempotent per event id anyway).
 */
export function jobIdFor<N extends JobName>(name: N, payload: JobPayload<N>): string {
  if (name === 'audit.event.ingest') return `audit-${(payload as JobPayload<'audit.event.ingest'>).eventId}`;
  if (name === 'audit.events.ingest')
    return auditBatchJobId((payload as JobPayload<'audit.events.ingest'>).events.map((e) => e.eventId));
  throw new Error(`no job id rule for ${String(name)}`);
}

export type JobHandlers<Q extends QueueName> = {
  [N in JobName as (typeof JOBS)[N]['queue'] extends Q ? N : never]: (payload: JobPayload<N>) => Promise<void>;
};

/** Throws unless `handlers` has one function for each job of `queue`. */
export function assertHandlersCover(queue: QueueName, handlers: Record<string, unknown>): void {
  const missing = jobNamesForQueue(queue).filter((name) => typeof handlers[name] !== 'function');
  if (missing.length > 0) throw new Error(`no handler for job(s) ${missing.join(', ')} on queue ${queue}`);
}
