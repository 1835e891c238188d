import { AuditStoreError, sampleAuditEvent, type AuditBatcher } from '@portcullis/audit/core';
import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { DelayedError, type Job } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { AuditIngestWorker, MAX_OUTAGE_WAIT_MS, retryDelayMs } from './audit-ingest.worker';

describe('retryDelayMs', () => {
  it('doubles from the base per attempt, capped at 60 s, with at most ±20 % jitter', () => {
    const mid = () => 0.5;
    expect([1, 2, 3, 4].map((n) => retryDelayMs(n, 1_000, mid))).toEqual([1_000, 2_000, 4_000, 8_000]);
    expect(retryDelayMs(30, 1_000, mid)).toBe(60_000);
    expect(retryDelayMs(1, 1_000, () => 0)).toBe(800);
    expect(retryDelayMs(1, 1_000, () => 1)).toBe(1_200);
  });
});

/** An audit event as the gateway sends it. */
const event = (eventId: string): AuditEventV1 => sampleAuditEvent('019a0000-0000-7000-8000-0000000000aa', { eventId });

/** A batcher whose store fails the events named, as the Postgres store reports an outage (or a bad event). */
const failingBatcher = (failing: (event: AuditEventV1) => boolean, transient: boolean) =>
  ({
    submitMany: async (events: readonly AuditEventV1[]) => ({
      failed: events.filter(failing).map((failed) => ({ event: failed, error: new AuditStoreError('database unreachable', [failed], transient) })),
    }),
    submit: async (one: AuditEventV1) => {
      if (failing(one)) throw new AuditStoreError('database unreachable', [one], transient);
    },
  }) as unknown as AuditBatcher;

const settings = { connection: {}, prefix: 'spec', concurrency: 1, maxAttempts: 3, retryBaseMs: 1_000, lockDurationMs: 30_000, stalledIntervalMs: 30_000 };

/** A job at its `attemptsStarted`-th attempt, recording where the worker moves it. */
const jobOf = (name: string, data: unknown, attemptsStarted: number, enqueuedAt = Date.now() - 3_600_000) => {
  const moves = { delayedUntil: undefined as number | undefined, data: undefined as unknown };
  const job = {
    id: 'job-1',
    name,
    data,
    attemptsStarted,
    timestamp: enqueuedAt,
    moveToDelayed: async (until: number) => void (moves.delayedUntil = until),
    updateData: async (next: unknown) => void (moves.data = next),
  } as unknown as Job;
  return { job, moves };
};

describe('AuditIngestWorker retries', () => {
  it.each([
    ['a batch job', 'audit.events.ingest', { v: 1, events: [event('019a0000-0000-7000-8000-000000000001')] }],
    ['a single-event job', 'audit.event.ingest', event('019a0000-0000-7000-8000-000000000001')],
  ])('keeps %s waiting out a database outage past the attempt limit, at the backoff cap, instead of dead-lettering it', async (_kind, name, data) => {
    const worker = new AuditIngestWorker(failingBatcher(() => true, true), settings);
    const { job, moves } = jobOf(name, data, 25);
    const before = Date.now();
    await expect(worker.process(job, 'token')).rejects.toBeInstanceOf(DelayedError);
    expect(moves.delayedUntil).toBeGreaterThanOrEqual(before + 48_000);
    expect(moves.delayedUntil).toBeLessThanOrEqual(Date.now() + 72_000);
    expect(worker.stats.jobsDeadLettered).toBe(0);
  });

  it('gives up on an "outage" that has lasted past MAX_OUTAGE_WAIT_MS since the job was enqueued (a statement timeout every try)', async () => {
    const worker = new AuditIngestWorker(failingBatcher(() => true, true), settings);
    const { job, moves } = jobOf('audit.events.ingest', { v: 1, events: [event('019a0000-0000-7000-8000-000000000001')] }, 1_500, Date.now() - MAX_OUTAGE_WAIT_MS - 1);
    await expect(worker.process(job, 'token')).rejects.toThrow();
    expect(moves.delayedUntil).toBeUndefined();
  });

  it('gives up (dead-letters) a failure that is not an outage once the attempts are used', async () => {
    const worker = new AuditIngestWorker(failingBatcher(() => true, false), settings);
    const { job, moves } = jobOf('audit.events.ingest', { v: 1, events: [event('019a0000-0000-7000-8000-000000000001')] }, 3);
    // Dead-lettering needs the DLQ (not started here): the worker got that far rather than retrying.
    await expect(worker.process(job, 'token')).rejects.toThrow();
    expect(moves.delayedUntil).toBeUndefined();
  });

  it('retries an event sent with an upper-case id that failed, not only the ones in lower case', async () => {
    const upper = '019A0000-0000-7000-8000-00000000000B';
    const worker = new AuditIngestWorker(failingBatcher((one) => one.eventId === upper.toLowerCase(), true), settings);
    const events = [event('019a0000-0000-7000-8000-00000000000a'), event(upper)];
    const { job, moves } = jobOf('audit.events.ingest', { v: 1, events }, 1);
    await expect(worker.process(job, 'token')).rejects.toBeInstanceOf(DelayedError);
    // Narrowed to the event still missing (it was narrowed to none, and the empty job then dead-lettered as invalid).
    expect(moves.data).toEqual({ v: 1, events: [events[1]] });
  });
});

describe('AuditIngestWorker and an event the contract refuses', () => {
  /** A batcher that stores everything, recording what it was given. */
  const recordingBatcher = () => {
    const submitted: string[] = [];
    const batcher = {
      submitMany: async (events: readonly AuditEventV1[]) => {
        submitted.push(...events.map((e) => e.eventId));
        return { failed: [] };
      },
      submit: async (one: AuditEventV1) => void submitted.push(one.eventId),
    } as unknown as AuditBatcher;
    return { batcher, submitted };
  };
  // Year 0000: z.iso.datetime takes it, Postgres does not; the contract refuses it, so it never reaches the store.
  const yearZero = { ...event('019a0000-0000-7000-8000-00000000000c'), occurredAt: '0000-01-01T00:00:00Z' };

  it('stores the rest of the batch and dead-letters that event at once, without retrying or crashing', async () => {
    const { batcher, submitted } = recordingBatcher();
    const worker = new AuditIngestWorker(batcher, settings);
    const good = event('019a0000-0000-7000-8000-00000000000d');
    const { job, moves } = jobOf('audit.events.ingest', { v: 1, events: [good, yearZero] }, 1);
    await expect(worker.process(job, 'token')).rejects.toThrow(/occurredAt/);
    expect(submitted).toEqual([good.eventId]);
    expect(moves.delayedUntil).toBeUndefined();
    expect(worker.stats.jobsDeadLettered).toBe(1);
  });

  it('dead-letters a single-event job holding it at once', async () => {
    const { batcher, submitted } = recordingBatcher();
    const worker = new AuditIngestWorker(batcher, settings);
    const { job, moves } = jobOf('audit.event.ingest', yearZero, 1);
    await expect(worker.process(job, 'token')).rejects.toThrow();
    expect(submitted).toEqual([]);
    expect(moves.delayedUntil).toBeUndefined();
    expect(worker.stats.jobsDeadLettered).toBe(1);
  });
});
