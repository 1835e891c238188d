import { randomBytes } from 'node:crypto';
import type { ChainableCommander, Redis } from 'ioredis';
import type { JsonRpcId } from '@portcullis/gateway/mcp';
import type { Logger } from '@portcullis/shared/util-logger';

/**
 * Resumable SSE streams (Streamable HTTP, "Resumability and redelivery"): every message sent on a
 * Streamable HTTP SSE stream is also appended to a per-stream replay log in Redis, so an agent that
 * lost the connection can GET the endpoint with `Last-Event-ID` on any replica and receive what came
 * after that event on that stream — and, for a POST stream still running, the rest of it live.
 */

/** `p`: the SSE response to a POST; `s`: a standalone GET stream. */
export type StreamKind = 'p' | 's';

export interface ReplayEntry {
  readonly seq: number;
  /** The JSON-RPC message as sent. */
  readonly data: string;
  /** The last message of a POST stream (the response). */
  readonly final: boolean;
}

/** The writer side for one stream. Appends are fire-and-forget and keep their order. */
export interface StreamLog {
  append(seq: number, data: string, final: boolean): void;
  /**
   * Makes the stream known before its first message, so that the id of its priming event can be resumed from, and
   * renews its lifetime while it waits for one (a call held for a person's approval). Fire-and-forget, like appends.
   */
  keep?(): void;
}

export interface ReplayLog {
  /**
   * `requestIds`: the requests a POST stream answers. With them the writer holds a lease on the stream while it runs,
   * so that a replica following it elsewhere can tell a writer that died (a crash, a killed pod) from a slow answer.
   */
  open(sessionId: string, streamId: string, requestIds?: readonly JsonRpcId[]): StreamLog;
  /** Entries after `afterSeq`; undefined when the stream is unknown to this session or has expired. */
  read(sessionId: string, streamId: string, afterSeq: number): Promise<ReplayEntry[] | undefined>;
  /** True when the stream's last entry is its final one, or the stream is unknown (not when it has none yet). */
  finished(sessionId: string, streamId: string): Promise<boolean>;
  /**
   * Waits for entries after `afterSeq` and hands them over until the final one, the stream's
   * expiry, `signal`, or (`lost`) the lapse of its writer's lease with no final entry: the replica answering it is
   * gone, and the answer will never come. Resolves with why it stopped.
   */
  follow(
    sessionId: string,
    streamId: string,
    afterSeq: number,
    onEntry: (entry: ReplayEntry) => void,
    signal: AbortSignal,
  ): Promise<'final' | 'gone' | 'aborted' | 'lost'>;
  /** The requests a `lost` stream was to answer; undefined when unknown (or unreadable). */
  pendingRequests(sessionId: string, streamId: string): Promise<JsonRpcId[] | undefined>;
}

export interface ReplayLogOptions {
  /** A stream's log lives this long after its last append. */
  readonly ttlMs: number;
  /**
   * How long a running POST stream's writer lease lasts. It is renewed by every keep (once a keep-alive interval
   * while the stream is quiet) and by appends, so it must be longer than the keep-alive interval, with room for a
   * late timer; a follower finds a dead writer out within about this long.
   */
  readonly leaseMs: number;
  /** Bounds on what one stream keeps: the oldest entries go first. */
  readonly maxEntries: number;
  readonly maxBytes: number;
  /** Resumed POST streams this replica follows with a blocking read (each holds a Redis connection); more poll. */
  readonly maxFollowers: number;
}

// Stream ids: kind + a per-process random part + a counter: unique across replicas without a
// random draw per stream. They need not be secret: a stream is only found under its own session.
const PROCESS_PART = randomBytes(8).toString('hex');
let streamCounter = 0;
export const newStreamId = (kind: StreamKind): string =>
  `${kind}${PROCESS_PART}${(++streamCounter).toString(36)}`;

export const eventId = (streamId: string, seq: number): string => `${streamId}_${seq}`;

const EVENT_ID = /^([ps][0-9a-f]{16}[0-9a-z]{1,12})_(\d{1,9})$/;

/** A `Last-Event-ID` this gateway could have minted, split; undefined for anything else. */
export function parseEventId(
  value: string | undefined,
): { streamId: string; kind: StreamKind; seq: number } | undefined {
  if (value === undefined) return undefined;
  const match = EVENT_ID.exec(value.trim());
  if (!match?.[1] || !match[2]) return undefined;
  return { streamId: match[1], kind: match[1][0] as StreamKind, seq: Number(match[2]) };
}

const keyOf = (sessionId: string, streamId: string): string => `pcs:replay:${sessionId}:${streamId}`;
/** A running POST stream's writer lease (a key that lapses unless renewed) and the ids of the requests it answers. */
const leaseOf = (key: string): string => `${key}:live`;
const requestsOf = (key: string): string => `${key}:ids`;

type RawEntry = [id: string, fields: string[]];

function toEntry([id, fields]: RawEntry): ReplayEntry | undefined {
  const seq = Number(id.slice(id.indexOf('-') + 1));
  let data: string | undefined;
  let final = false;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'd') data = fields[i + 1];
    else if (fields[i] === 'f') final = fields[i + 1] === '1';
  }
  return data === undefined || !Number.isSafeInteger(seq) ? undefined : { seq, data, final };
}

/**
 * The replay log as one Redis stream per SSE stream (`pcs:replay:<session>:<stream>`). Entry ids are
 * `0-<seq>`, so the SSE event id maps to a stream id without a lookup; every append refreshes the TTL
 * and trims (MINID) to the entry and byte bounds the writer tracks.
 */
export class RedisReplayLog implements ReplayLog {
  private followers = 0;
  private lastError = 0;

  constructor(
    private readonly redis: Redis,
    private readonly options: ReplayLogOptions,
    private readonly logger: Logger,
  ) {}

  open(sessionId: string, streamId: string, requestIds?: readonly JsonRpcId[]): StreamLog {
    const key = keyOf(sessionId, streamId);
    const sizes: { seq: number; bytes: number }[] = [];
    let bytes = 0;
    const { ttlMs, leaseMs } = this.options;
    const ids = requestIds !== undefined && requestIds.length > 0 ? JSON.stringify(requestIds) : undefined;
    let leasedAt = -Infinity;
    // Ahead of the stream's own commands: whoever sees the stream sees its lease, until the writer stops renewing it.
    // The ids outlive the lease (a follower reads them once it has lapsed) and the stream they go with.
    const lease = (pipeline: ChainableCommander) => {
      if (ids === undefined) return pipeline;
      leasedAt = performance.now();
      return pipeline.set(leaseOf(key), '1', 'PX', leaseMs).set(requestsOf(key), ids, 'PX', ttlMs + leaseMs);
    };
    /** Whether the key exists: not known to exist, being made, made (by `keep` or by an append). */
    let made: 'no' | 'asked' | 'yes' = 'no';
    const report = (results: [Error | null, unknown][] | null) => {
      const failed = results?.find(([error]) => error !== null);
      if (failed) this.warn(failed[0]);
    };
    return {
      keep: () => {
        const pipeline = lease(this.redis.pipeline());
        const create = made === 'no';
        // An empty Redis stream can only be made along with a consumer group (unused: entries are read by id).
        if (create) {
          pipeline.xgroup('CREATE', key, 'opened', '$', 'MKSTREAM');
          made = 'asked';
        }
        pipeline
          .pexpire(key, ttlMs)
          .exec()
          .then(
            (results) => {
              const [createError] = (create ? results?.[ids === undefined ? 0 : 2] : undefined) ?? [null];
              // Made already (a create whose reply was lost, then sent again): as good as made now.
              const created = createError === null || /BUSYGROUP/.test(String(createError));
              // Not made (Redis away a moment), or gone since (a failover): the next keep makes it again.
              const renewed = results?.at(-1)?.[1] === 1;
              if (create && made === 'asked') made = created && renewed ? 'yes' : 'no';
              else if (!create && !renewed && made === 'yes') made = 'no';
              report(results?.filter(([error]) => !/BUSYGROUP/.test(String(error))) ?? null);
            },
            (error: unknown) => {
              if (create && made === 'asked') made = 'no';
              this.warn(error);
            },
          );
      },
      append: (seq, data, final) => {
        made = 'yes';
        sizes.push({ seq, bytes: data.length });
        bytes += data.length;
        while (
          sizes.length > 1 &&
          (sizes.length > this.options.maxEntries || bytes > this.options.maxBytes)
        ) {
          bytes -= sizes.shift()?.bytes ?? 0;
        }
        const oldest = sizes[0]?.seq ?? seq;
        const fields = final ? ['d', data, 'f', '1'] : ['d', data];
        // A message renews the lease when a quarter of it has gone by; the answer ends it (nothing waits on it then).
        const pipeline = this.redis.pipeline();
        if (!final && performance.now() - leasedAt >= leaseMs / 4) lease(pipeline);
        pipeline.xadd(key, 'MINID', `0-${oldest}`, `0-${seq}`, ...fields).pexpire(key, ttlMs);
        if (final && ids !== undefined) pipeline.del(leaseOf(key), requestsOf(key));
        pipeline.exec().then(report, (error: unknown) => this.warn(error));
      },
    };
  }

  async read(sessionId: string, streamId: string, afterSeq: number): Promise<ReplayEntry[] | undefined> {
    const key = keyOf(sessionId, streamId);
    const results = await this.redis.pipeline().exists(key).xrange(key, `(0-${afterSeq}`, '+').exec();
    const exists = results?.[0]?.[1];
    const range = results?.[1]?.[1] as RawEntry[] | undefined;
    if (exists !== 1 || !range) return undefined;
    return range.map(toEntry).filter((entry): entry is ReplayEntry => entry !== undefined);
  }

  async finished(sessionId: string, streamId: string): Promise<boolean> {
    const key = keyOf(sessionId, streamId);
    const results = await this.redis.pipeline().exists(key).xrevrange(key, '+', '-', 'COUNT', 1).exec();
    // Unknown, or not readable right now: finished (the GET becomes a standalone stream, as for an unknown id).
    if (results?.[0]?.[1] !== 1 || results[1]?.[0] != null) return true;
    const last = (results[1]?.[1] ?? []) as RawEntry[];
    const entry = last[0] ? toEntry(last[0]) : undefined;
    // Kept open by a priming event, with no message yet: still running.
    return last[0] !== undefined && (entry === undefined || entry.final);
  }

  async follow(
    sessionId: string,
    streamId: string,
    afterSeq: number,
    onEntry: (entry: ReplayEntry) => void,
    signal: AbortSignal,
  ): Promise<'final' | 'gone' | 'aborted' | 'lost'> {
    const key = keyOf(sessionId, streamId);
    // Looked at again after this long without an entry: gone (expired), or its writer lost. Never longer than the lease.
    const checkMs = Math.min(5_000, this.options.leaseMs);
    // XREAD BLOCK holds its connection: each follower gets its own, closed when it stops. Beyond
    // `maxFollowers`, a follower polls on the shared connection instead (slower, but never refused).
    const blocking = this.followers < this.options.maxFollowers;
    const connection = blocking ? this.redis.duplicate() : undefined;
    connection?.on('error', () => undefined);
    const onAbort = () => connection?.disconnect();
    signal.addEventListener('abort', onAbort, { once: true });
    if (blocking) this.followers += 1;
    let last = afterSeq;
    let idleSince = Date.now();
    try {
      while (!signal.aborted) {
        const reply = connection
          ? ((await connection.xread('BLOCK', checkMs, 'STREAMS', key, `0-${last}`)) as
              [string, RawEntry[]][] | null)
          : await this.poll(key, last);
        if (signal.aborted) return 'aborted';
        let entries = reply?.[0]?.[1] ?? [];
        if (entries.length === 0) {
          if (Date.now() - idleSince < checkMs) continue;
          idleSince = Date.now();
          const [exists, leased, tracked] = (await this.redis.pipeline().exists(key).exists(leaseOf(key)).exists(requestsOf(key)).exec()) ?? [];
          if (exists?.[1] === 0) return 'gone';
          // A writer that records its requests holds a lease while it runs; lapsed with no answer logged, the writer is
          // gone. (One last read: the answer may have come just before the lease was let go.)
          if (tracked?.[1] !== 1 || leased?.[1] !== 0) continue;
          entries = (await this.redis.xrange(key, `(0-${last}`, '+')) as RawEntry[];
          if (entries.length === 0) return 'lost';
        }
        idleSince = Date.now();
        for (const raw of entries) {
          const entry = toEntry(raw);
          if (!entry) continue;
          last = entry.seq;
          onEntry(entry);
          if (entry.final) return 'final';
        }
      }
      return 'aborted';
    } catch (error) {
      if (signal.aborted) return 'aborted';
      this.warn(error);
      return 'gone';
    } finally {
      if (blocking) this.followers -= 1;
      signal.removeEventListener('abort', onAbort);
      connection?.disconnect();
    }
  }

  async pendingRequests(sessionId: string, streamId: string): Promise<JsonRpcId[] | undefined> {
    const stored = await this.redis.get(requestsOf(keyOf(sessionId, streamId)));
    if (stored === null) return undefined;
    const ids: unknown = JSON.parse(stored);
    return Array.isArray(ids) ? ids.filter((id): id is JsonRpcId => typeof id === 'string' || typeof id === 'number') : undefined;
  }

  private async poll(key: string, afterSeq: number): Promise<[string, RawEntry[]][]> {
    await new Promise((resolve) => setTimeout(resolve, 250));
    return [[key, (await this.redis.xrange(key, `(0-${afterSeq}`, '+')) as RawEntry[]]];
  }

  private warn(error: unknown): void {
    const now = Date.now();
    if (now - this.lastError < 10_000) return;
    this.lastError = now;
    this.logger.warn({ err: error }, 'SSE replay log unavailable: streams are not resumable meanwhile');
  }
}
