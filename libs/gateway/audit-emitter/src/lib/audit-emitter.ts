import {
  AUDIT_BATCH_MAX_EVENTS,
  AUDIT_JOB_RETRIES,
  auditBatchJobId,
  encodeAuditEventBatchV2,
  jobIdFor,
  type AuditEventBatchV1,
  type AuditEventBatchV2,
  type AuditEventV1,
} from '@portcullis/contracts/jobs';
import { FileAuditSpool, MemoryAuditSpool, type AuditSpool } from './audit-spool';

const EVENT_JOB = 'audit.event.ingest' as const;
const BATCH_JOB = 'audit.events.ingest' as const;

/** BullMQ options of every audit job: its id, and the retries every audit job carries (`AUDIT_JOB_RETRIES`). */
export interface AuditJobOptions {
  readonly jobId: string;
  readonly attempts: number;
  readonly backoff: { readonly type: 'exponential'; readonly delay: number };
}

const jobOptions = (jobId: string): AuditJobOptions => ({ jobId, ...AUDIT_JOB_RETRIES });

/** A job of many events (the default): job id derived from its event ids. Payload v2 (rows), or v1 (`'batch-v1'`). */
export interface AuditBatchJob {
  readonly name: typeof BATCH_JOB;
  readonly data: AuditEventBatchV2 | AuditEventBatchV1;
  readonly opts: AuditJobOptions;
}

/** A job of one event (`jobFormat: 'event'`, for workers older than batch jobs): job id = `audit-<eventId>`. */
export interface AuditEventJob {
  readonly name: typeof EVENT_JOB;
  readonly data: AuditEventV1;
  readonly opts: AuditJobOptions;
}

export type AuditJobFormat = 'batch' | 'batch-v1' | 'event';

/** One job as BullMQ's `Queue.addBulk` takes it. */
export type AuditJob = AuditBatchJob | AuditEventJob;

/** The part of a BullMQ `Queue` the emitter uses (a real Queue satisfies it). */
export interface AuditJobProducer {
  addBulk(jobs: AuditJob[]): Promise<unknown>;
}

/** pino-compatible. */
export interface AuditEmitterLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface AuditEmitterOptions {
  readonly producer: AuditJobProducer;
  /** Events held in memory waiting for a flush. Beyond it, `emit` writes to the spool. */
  readonly maxBuffer: number;
  readonly flushEveryMs: number;
  /**
   * Events per flush and per job (one `addBulk` call; also per spool replay batch): a job holds at most this many
   * events (and at most 5,000), and at most `maxJobBytes`.
   */
  readonly batchSize: number;
  /** Directory of the local spool; `null` keeps a (non-durable) in-memory spool of the same size. */
  readonly spoolDir: string | null;
  readonly spoolMaxBytes: number;
  readonly logger: AuditEmitterLogger;
  /** An `addBulk` that has not answered by then counts as failed (Redis unreachable). Default 2,000 ms. */
  readonly sendTimeoutMs?: number;
  /** While Redis is unreachable, how often one flush tries it again. Default 1,000 ms. */
  readonly probeEveryMs?: number;
  /**
   * Bound on a batch job's events as JSON (as v1 event objects: a v2 job is smaller); a flush that would exceed it
   * becomes several jobs. Default 1 MiB.
   */
  readonly maxJobBytes?: number;
  /**
   * `'batch'` (default): one `audit.events.ingest` job per flush, payload v2 (rows). For a rollout where gateways are
   * upgraded before the audit workers (ADR 0010): `'batch-v1'`, the same jobs with payload v1 (event objects);
   * `'event'`, one `audit.event.ingest` job per event.
   */
  readonly jobFormat?: AuditJobFormat;
  /** Test seam: a spool instead of the one built from `spoolDir`. */
  readonly spool?: AuditSpool;
  readonly now?: () => number;
}

export type EmitResult = 'buffered' | 'spooled' | 'dropped';

export interface AuditEmitterStats {
  readonly redis: 'up' | 'down';
  readonly buffered: number;
  readonly spoolBytes: number;
  /** Events handed to Redis. */
  readonly sent: number;
  /** Jobs handed to Redis (sent and replayed). */
  readonly jobs: number;
  readonly spooled: number;
  readonly replayed: number;
  readonly dropped: number;
}

export interface AuditEmitter {
  /** Never waits: buffers the event (or, if the buffer is full, spools it synchronously, or counts a drop). */
  /**
   * `sizeHint`: an upper bound on the event's JSON size in bytes, when the caller knows one cheaply (the audit hooks
   * do); jobs are then cut by it instead of serialising every event once more just to measure it.
   */
  emit(event: AuditEventV1, sizeHint?: number, reserved?: boolean): EmitResult;
  /**
   * Whether an event emitted now is certain to be kept (sent, buffered or spooled), counting the events reserved for
   * calls admitted earlier and `inFlight` more. A tenant configured to fail closed refuses the call when this is false.
   */
  canAcceptFailClosed(inFlight?: number): boolean;
  /**
   * Keeps room for the event of a fail-closed call just admitted: until it is emitted with `reserved` (or `release`d),
   * other events are spooled only where they leave that room free. Without it, other tenants' events could fill the
   * spool while the call ran (or waited for approval), and its own event was then dropped after it had run.
   */
  reserve(): void;
  /** Gives back a reservation whose event will never be emitted (it could not be built). */
  release(): void;
  /** Flushes the buffer now (to Redis, or to the spool) and replays the spool if Redis is up. */
  flush(): Promise<void>;
  stats(): AuditEmitterStats;
  /** Stops the timer, flushes everything it can and closes the spool. Does not close the producer. */
  close(): Promise<void>;
}

class SendTimeoutError extends Error {
  constructor(ms: number) {
    super(`audit queue did not answer within ${ms} ms`);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SendTimeoutError(ms)), ms);
  });
  // A send that answers after its timeout is harmless: the same job ids are sent again later.
  promise.catch(() => undefined);
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const DROP_LOG_EVERY_MS = 10_000;

export function createAuditEmitter(options: AuditEmitterOptions): AuditEmitter {
  const sendTimeoutMs = options.sendTimeoutMs ?? 2_000;
  const probeEveryMs = options.probeEveryMs ?? 1_000;
  const now = options.now ?? Date.now;
  const jobFormat = options.jobFormat ?? 'batch';
  const maxJobBytes = options.maxJobBytes ?? 1_048_576;
  const maxJobEvents = Math.max(1, Math.min(options.batchSize, AUDIT_BATCH_MAX_EVENTS));
  const log = options.logger;
  const spool: AuditSpool =
    options.spool ??
    (options.spoolDir === null
      ? new MemoryAuditSpool(options.spoolMaxBytes)
      : new FileAuditSpool(options.spoolDir, options.spoolMaxBytes));

  let buffer: AuditEventV1[] = [];
  /**
   * Beside `buffer`, index for index: an upper bound on each event's JSON size from `emit`, or -1 (cutting jobs by
   * them costs no serialisation). An array, not a WeakMap keyed by event: a WeakMap entry per event cost ~10× more.
   */
  let hints: number[] = [];
  let redis: 'up' | 'down' = 'up';
  let nextProbeAt = 0;
  let flushing: Promise<void> | null = null;
  let flushRequested = false;
  let closed = false;
  let sent = 0;
  let jobs = 0;
  let spooled = 0;
  let replayed = 0;
  let dropped = 0;
  let droppedSinceLog = 0;
  let lastDropLogAt = Number.NEGATIVE_INFINITY;
  // Running estimate of a spooled line's size, for canAcceptFailClosed.
  let avgEventBytes = 1_024;
  /**
   * The spool's size when it last refused events for room (-1: it kept all it was last given). Until an append keeps
   * everything again or a replay shrinks it below that, the spool is taken as full, whatever the size estimate says.
   */
  let roomShortAt = -1;
  let spoolWasWritable = spool.writable;

  const logDrops = (): void => {
    if (droppedSinceLog === 0) return;
    const t = now();
    if (t - lastDropLogAt < DROP_LOG_EVERY_MS) return;
    log.error(
      {
        dropped: droppedSinceLog,
        droppedTotal: dropped,
        spoolBytes: spool.bytes,
        spoolMaxBytes: spool.maxBytes,
        spoolWritable: spool.writable,
      },
      'audit events dropped: buffer and spool are full',
    );
    lastDropLogAt = t;
    droppedSinceLog = 0;
  };

  const countDrops = (n: number): void => {
    if (n === 0) return;
    dropped += n;
    droppedSinceLog += n;
    logDrops();
  };

  // Fail-closed calls' events: reserved and not emitted yet, and emitted but still in the buffer (`reserve`).
  let reservedComing = 0;
  let reservedBuffered = 0;
  const reservedEvents = new WeakSet<AuditEventV1>();
  /** Spool room kept for reserved events that are not sent or spooled yet, at the running size estimate. */
  const keptFree = (): number => (reservedComing + reservedBuffered) * avgEventBytes;
  /** Reserved events leaving the buffer (sent, spooled or dropped from here on): no longer counted as in it. */
  const leaveBuffer = (events: readonly AuditEventV1[]): void => {
    if (reservedBuffered === 0) return;
    for (const event of events) if (reservedEvents.has(event)) reservedBuffered -= 1;
  };

  /** Logs the spool starting or ceasing to fail to write (once each way, not per event). */
  const noteSpoolWritable = (): void => {
    const writable = spool.writable;
    if (writable === spoolWasWritable) return;
    spoolWasWritable = writable;
    if (writable) log.info({ spoolBytes: spool.bytes }, 'audit spool writable again');
    else log.error({ spoolBytes: spool.bytes, redis }, 'audit spool cannot be written: events it should keep are dropped, fail-closed tenants refuse calls');
  };

  const toSpool = (events: readonly AuditEventV1[]): number => {
    if (events.length === 0) return 0;
    // Reserved events first: their room was kept for them. Every event leaves free the room of those still to come.
    const ordered = events.some((event) => reservedEvents.has(event))
      ? [...events.filter((event) => reservedEvents.has(event)), ...events.filter((event) => !reservedEvents.has(event))]
      : events;
    const before = spool.bytes;
    const { written, refused } = spool.append(ordered, keptFree());
    if (written > 0) avgEventBytes = Math.ceil((spool.bytes - before) / written);
    // Refused while writable: for room (a write that failed is `writable` false, which says so by itself).
    if (refused === 0) roomShortAt = -1;
    else if (spool.writable) roomShortAt = spool.bytes;
    noteSpoolWritable();
    spooled += written;
    countDrops(refused);
    return written;
  };

  /**
   * Whether the spool lately failed to keep what it was given: it could not write (until a write succeeds again), or
   * it refused events for room (until it kept all it was given again, or shrank). Events that would go there cannot be
   * promised a place, however much room the size estimate sees (a failed write leaves `bytes` as it was).
   */
  const spoolFailing = (): boolean => !spool.writable || (roomShortAt >= 0 && spool.bytes >= roomShortAt);

  const batchJob = (events: AuditEventV1[]): AuditBatchJob => ({
    name: BATCH_JOB,
    data: jobFormat === 'batch-v1' ? { v: 1, events } : encodeAuditEventBatchV2(events),
    opts: jobOptions(auditBatchJobId(events.map((e) => e.eventId))),
  });

  /**
   * Cuts events into jobs: at most `maxJobEvents` and `maxJobBytes` each (a single larger event goes alone). `sizes`:
   * the events' size bounds where known (-1 where not; absent for spooled events), else each is measured.
   */
  const toJobs = (events: AuditEventV1[], sizes?: readonly number[]): AuditJob[] => {
    if (jobFormat === 'event')
      return events.map((data) => ({ name: EVENT_JOB, data, opts: jobOptions(jobIdFor(EVENT_JOB, data)) }));
    const out: AuditJob[] = [];
    let current: AuditEventV1[] = [];
    let bytes = 0;
    for (let index = 0; index < events.length; index += 1) {
      const event = events[index] as AuditEventV1;
      const hint = sizes?.[index] ?? -1;
      const size = (hint >= 0 ? hint : Buffer.byteLength(JSON.stringify(event))) + 1;
      if (current.length > 0 && (current.length >= maxJobEvents || bytes + size > maxJobBytes)) {
        out.push(batchJob(current));
        current = [];
        bytes = 0;
      }
      current.push(event);
      bytes += size;
    }
    if (current.length > 0) out.push(batchJob(current));
    return out;
  };

  const send = async (events: AuditEventV1[], sizes?: readonly number[]): Promise<void> => {
    const batch = toJobs(events, sizes);
    await withTimeout(options.producer.addBulk(batch), sendTimeoutMs);
    jobs += batch.length;
  };

  const markDown = (error: unknown): void => {
    if (redis === 'up') {
      log.warn(
        { err: error instanceof Error ? error.message : String(error) },
        'audit queue unreachable: spooling events locally',
      );
    }
    redis = 'down';
    nextProbeAt = now() + probeEveryMs;
  };

  const markUp = (): void => {
    if (redis === 'down') log.info({ spoolBytes: spool.bytes }, 'audit queue reachable again');
    redis = 'up';
  };

  const replaySpool = async (): Promise<void> => {
    if (redis !== 'up' || !spool.hasPending()) return;
    try {
      const result = await spool.replay(async (events) => {
        await send(events);
        replayed += events.length;
      }, options.batchSize);
      log.info({ replayed: result.replayed, corrupt: result.corrupt }, 'audit spool replayed');
    } catch (error) {
      markDown(error);
    }
  };

  const flushOnce = async (): Promise<void> => {
    // A spool that could not write is tried again each flush (the timer flushes for it alone too): the disk may have
    // room again, and nothing else would find out while fail-closed tenants are refused and nothing is spooled.
    if (!spool.writable) {
      spool.probe();
      noteSpoolWritable();
    }
    // Only what is buffered now: events emitted while a send is in flight wait for the next tick (or a full batch).
    // Looping until the buffer is empty instead sent a small job after every send under load (~90 jobs/s instead of
    // 10 at 2,500 events/s), and each job costs a BullMQ script run and two stream entries in Redis.
    let due = buffer.length;
    while (due > 0) {
      const batch = buffer.slice(0, Math.min(options.batchSize, due));
      const sizes = hints.slice(0, batch.length);
      buffer = buffer.slice(batch.length);
      hints = hints.slice(batch.length);
      leaveBuffer(batch);
      due -= batch.length;
      if (redis === 'down' && now() < nextProbeAt) {
        toSpool(batch);
        continue;
      }
      try {
        await send(batch, sizes);
        sent += batch.length;
        markUp();
      } catch (error) {
        markDown(error);
        toSpool(batch);
      }
    }
    if (redis === 'down' && spool.hasPending() && now() >= nextProbeAt) {
      // Nothing new to probe with: the replay itself is the probe.
      markUp();
    }
    await replaySpool();
    logDrops();
  };

  /** A flush that failed for a reason of its own (not Redis: that spools): logged, never an unhandled rejection. */
  const flushFailed = (error: unknown): void => {
    log.error({ err: error instanceof Error ? error.message : String(error) }, 'audit flush failed');
  };

  const flush = (): Promise<void> => {
    if (flushing) {
      flushRequested = true;
      return flushing;
    }
    flushing = (async () => {
      try {
        do {
          flushRequested = false;
          await flushOnce();
        } while (flushRequested || (buffer.length >= options.batchSize && !closed));
      } finally {
        flushing = null;
      }
    })();
    return flushing;
  };

  const timer = setInterval(() => {
    if (buffer.length > 0 || spool.hasPending() || !spool.writable) void flush().catch(flushFailed);
  }, options.flushEveryMs);
  timer.unref();

  return {
    emit(event, sizeHint, reserved = false) {
      if (reserved && reservedComing > 0) {
        reservedComing -= 1;
        reservedEvents.add(event);
      }
      if (closed) {
        countDrops(1);
        return 'dropped';
      }
      if (buffer.length < options.maxBuffer) {
        buffer.push(event);
        hints.push(sizeHint ?? -1);
        if (reservedEvents.has(event)) reservedBuffered += 1;
        if (buffer.length >= options.batchSize && !flushing) void flush().catch(flushFailed);
        return 'buffered';
      }
      return toSpool([event]) === 1 ? 'spooled' : 'dropped';
    },

    reserve() {
      reservedComing += 1;
    },

    release() {
      if (reservedComing > 0) reservedComing -= 1;
    },

    canAcceptFailClosed(inFlight = 0) {
      if (closed) return false;
      // With Redis up too: the buffer's events go to the spool if a send fails, and a spool known to lose them is no
      // fallback. Before, a spool failing to write (disk full) kept its size, so it seemed to have room throughout:
      // every fail-closed call was admitted and its event dropped.
      if (spoolFailing()) return false;
      const spoolRoomFor = (events: number) => spool.bytes + events * avgEventBytes <= spool.maxBytes;
      // This call's event and those of the calls admitted before it and still running.
      const coming = buffer.length + reservedComing + inFlight + 1;
      // While Redis is down everything buffered will be spooled too; while it is up, what the buffer cannot hold.
      if (redis !== 'up') return spoolRoomFor(coming);
      return coming <= options.maxBuffer || spoolRoomFor(coming - options.maxBuffer);
    },

    flush,

    stats() {
      return { redis, buffered: buffer.length, spoolBytes: spool.bytes, sent, jobs, spooled, replayed, dropped };
    },

    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      if (flushing) await flushing;
      await flush();
      lastDropLogAt = Number.NEGATIVE_INFINITY;
      logDrops();
      await spool.close();
    },
  };
}
