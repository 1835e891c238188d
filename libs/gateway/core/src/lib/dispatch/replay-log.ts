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
   * `continuing`: the stream holds another writer's entries already (a follower ending a stream whose writer died),
   * which this one keeps within the stream's bounds.
   */
  open(sessionId: string, streamId: string, requestIds?: readonly JsonRpcId[], continuing?: boolean): StreamLog;
  /** Entries after `afterSeq`; undefined when the stream is unknown to this session or has expired. */
  read(sessionId: string, streamId: string, afterSeq: number): Promise<ReplayEntry[] | undefined>;
  /** True when the stream's last entry is its final one, or the stream is unknown (not when it has none yet). */
  finished(sessionId: string, streamId: string): Promise<boolean>;
  /** True when the stream ended because another stream, not resuming it, took its place (`REPLACED_MARK`). */
  replaced?(sessionId: string, streamId: string): Promise<boolean>;
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
/**
 * The data of a standalone stream's final entry when another GET of the session took its place without resuming it (a
 * second client on the session): not JSON, so never a message.
 */
export const REPLACED_MARK = 'replaced';

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
/**
 * A running POST stream's writer lease: one hash, the ids of the requests the stream answers and the time (Redis's
 * clock) until which the writer vouches for it. One key, so that whatever removes it (eviction, expiry, a failover)
 * removes both, and a missing lease reads as "unknown", never as a dead writer.
 */
const leaseOf = (key: string): string => `${key}:w`;

/** KEYS[1] lease; ARGV ids (JSON), lease ms, key lifetime ms. Deadline from Redis's own clock. */
const RENEW_LEASE = `
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('HSET', KEYS[1], 'ids', ARGV[1], 'until', ms + tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`;

type LeasingPipeline = ChainableCommander & {
  portcullisReplayLease(key: string, ids: string, leaseMs: number, lifetimeMs: number): ChainableCommander;
};

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
  ) {
    // Sent once, then run by its digest (EVALSHA), in pipelines too.
    if (typeof (redis as unknown as Record<string, unknown>)['portcullisReplayLease'] !== 'function') {
      redis.defineCommand('portcullisReplayLease', { numberOfKeys: 1, lua: RENEW_LEASE });
    }
  }

  open(sessionId: string, streamId: string, requestIds?: readonly JsonRpcId[], continuing = false): StreamLog {
    const key = keyOf(sessionId, streamId);
    const sizes: { seq: number; bytes: number }[] = [];
    let bytes = 0;
    const { ttlMs, leaseMs } = this.options;
    const ids = requestIds !== undefined && requestIds.length > 0 ? JSON.stringify(requestIds) : undefined;
    /** When the lease was last renewed (a renewal that failed does not count); -Infinity: never. */
    let leasedAt = -Infinity;
    /** Whether a renewal was ever sent (the answer then ends the lease). */
    let leased = false;
    // Ahead of the stream's own commands: whoever sees the stream sees its lease. The lease key outlives the stream.
    const lease = (pipeline: ChainableCommander) => {
      if (ids === undefined) return pipeline;
      leased = true;
      return (pipeline as LeasingPipeline).portcullisReplayLease(leaseOf(key), ids, leaseMs, ttlMs + leaseMs);
    };
    /** The renewal's reply, first in its pipeline: its time counts only if it went through. */
    const leaseRenewed = (results: [Error | null, unknown][] | null | undefined, sentAt: number) => {
      if (ids === undefined) return;
      if (results?.[0]?.[0] === null) leasedAt = Math.max(leasedAt, sentAt);
      else leasedAt = -Infinity;
    };
    /** Whether the key exists: not known to exist, being made, made (by `keep` or by an append). */
    let made: 'no' | 'asked' | 'yes' = 'no';
    const report = (results: [Error | null, unknown][] | null) => {
      const failed = results?.find(([error]) => error !== null);
      if (failed) this.warn(failed[0]);
    };
    return {
      keep: () => {
        const sentAt = performance.now();
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
              leaseRenewed(results, sentAt);
              const [createError] = (create ? results?.[ids === undefined ? 0 : 1] : undefined) ?? [null];
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
              leaseRenewed(undefined, sentAt);
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
        // A message renews the lease when a quarter of it has gone by (messages put off the keeps that renew it
        // otherwise); the answer ends it (nothing waits on it then).
        const sentAt = performance.now();
        const pipeline = this.redis.pipeline();
        const renewing = !final && sentAt - leasedAt >= leaseMs / 4;
        if (renewing) lease(pipeline);
        // Trimmed to this writer's own bounds; a writer continuing another's stream knows nothing of the entries before
        // its own (their sizes), so it keeps the newest maxEntries. Before, it trimmed to its first entry: a follower
        // ending a dead writer's stream with errors deleted every entry the writer had logged (a second resume got only
        // the errors).
        if (continuing) pipeline.xadd(key, 'MAXLEN', String(this.options.maxEntries), `0-${seq}`, ...fields).pexpire(key, ttlMs);
        else pipeline.xadd(key, 'MINID', `0-${oldest}`, `0-${seq}`, ...fields).pexpire(key, ttlMs);
        if (final && leased) pipeline.del(leaseOf(key));
        pipeline.exec().then(
          (results) => {
            if (renewing) leaseRenewed(results, sentAt);
            report(results);
          },
          (error: unknown) => {
            if (renewing) leaseRenewed(undefined, sentAt);
            this.warn(error);
          },
        );
      },
    };
  }

  async read(sessionId: string, streamId: string, afterSeq: number): Promise<ReplayEntry[] | undefined> {
    const key = keyOf(sessionId, streamId);
    const results = await this.redis.pipeline().exists(key).xrange(key, `(0-${afterSeq}`, '+').exec();
    // A pipeline settles with each command's error rather than rejecting (a timed-out command, LOADING after a failover):
    // thrown, so the GET is answered 503 (try again), not taken for a log that is gone (405 ends the resuming; found by
    // review).
    const failed = results?.find(([error]) => error !== null)?.[0];
    if (results === null || failed) throw failed ?? new Error('the replay log could not be read');
    const exists = results[0]?.[1];
    const range = results[1]?.[1] as RawEntry[] | undefined;
    if (exists !== 1 || !range) return undefined;
    return range.map(toEntry).filter((entry): entry is ReplayEntry => entry !== undefined);
  }

  async finished(sessionId: string, streamId: string): Promise<boolean> {
    const key = keyOf(sessionId, streamId);
    const results = await this.redis.pipeline().exists(key).xrevrange(key, '+', '-', 'COUNT', 1).exec();
    // Not readable right now: thrown (the GET is answered 503, try again), not taken for over (405 ends the resuming).
    const failed = results?.find(([error]) => error !== null)?.[0];
    if (results === null || failed) throw failed ?? new Error('the replay log could not be read');
    // Unknown: finished (nothing to resume).
    if (results[0]?.[1] !== 1) return true;
    const last = (results[1]?.[1] ?? []) as RawEntry[];
    const entry = last[0] ? toEntry(last[0]) : undefined;
    // Kept open by a priming event, with no message yet: still running.
    return last[0] !== undefined && (entry === undefined || entry.final);
  }

  async replaced(sessionId: string, streamId: string): Promise<boolean> {
    const last = (await this.redis.xrevrange(keyOf(sessionId, streamId), '+', '-', 'COUNT', 1)) as RawEntry[];
    const entry = last[0] ? toEntry(last[0]) : undefined;
    return entry !== undefined && entry.final && entry.data === REPLACED_MARK;
  }

  async follow(
    sessionId: string,
    streamId: string,
    afterSeq: number,
    onEntry: (entry: ReplayEntry) => void,
    signal: AbortSignal,
  ): Promise<'final' | 'gone' | 'aborted' | 'lost'> {
    const key = keyOf(sessionId, streamId);
    // Looked at again after this long without an entry: gone (expired), or its writer lost.
    const checkMs = Math.min(5_000, this.options.leaseMs);
    // XREAD BLOCK holds its connection: each follower gets its own, closed when it stops. Beyond
    // `maxFollowers`, a follower polls on the shared connection instead (slower, but never refused).
    const blocking = this.followers < this.options.maxFollowers;
    // Without the shared client's command timeout: XREAD BLOCK waits up to `checkMs` by design.
    const connection = blocking ? this.redis.duplicate({ commandTimeout: undefined }) : undefined;
    connection?.on('error', () => undefined);
    const onAbort = () => connection?.disconnect();
    signal.addEventListener('abort', onAbort, { once: true });
    if (blocking) this.followers += 1;
    let last = afterSeq;
    let idleSince = Date.now();
    /**
     * After a stretch without entries: 'gone' (expired, or ended at or before the entry followed from: an agent's
     * Last-Event-ID past the stream's end, which would otherwise be followed until the log expired), 'lost' (the writer's
     * lease ran out with no answer logged; one last read first, as the answer may have come just before), or the
     * entries that came meanwhile.
     */
    const look = async (): Promise<'gone' | 'lost' | RawEntry[]> => {
      const [exists, now, until, newest] =
        (await this.redis.pipeline().exists(key).time().hget(leaseOf(key), 'until').xrevrange(key, '+', '-', 'COUNT', 1).exec()) ?? [];
      if (exists?.[1] === 0) return 'gone';
      const [newestRaw] = (newest?.[1] ?? []) as RawEntry[];
      const end = newestRaw ? toEntry(newestRaw) : undefined;
      if (end?.final && end.seq <= last) return 'gone';
      const [seconds, micros] = (now?.[1] ?? []) as [string?, string?];
      const deadline = Number(until?.[1] ?? NaN);
      // No lease (a writer that records none, or one evicted or lost in a failover): not known to be dead.
      if (!Number.isFinite(deadline) || Number(seconds) * 1_000 + Math.floor(Number(micros) / 1_000) <= deadline) return [];
      const entries = (await this.redis.xrange(key, `(0-${last}`, '+')) as RawEntry[];
      return entries.length === 0 ? 'lost' : entries;
    };
    try {
      // The first look is at once: a writer that died before the agent came back is found out without waiting.
      let looked: 'gone' | 'lost' | RawEntry[] = await look();
      while (!signal.aborted) {
        if (typeof looked === 'string') return looked;
        let entries = looked;
        looked = [];
        if (entries.length === 0) {
          const reply = connection
            ? ((await connection.xread('BLOCK', checkMs, 'STREAMS', key, `0-${last}`)) as
                [string, RawEntry[]][] | null)
            : await this.poll(key, last);
          if (signal.aborted) return 'aborted';
          entries = reply?.[0]?.[1] ?? [];
          if (entries.length === 0) {
            if (Date.now() - idleSince >= checkMs) {
              idleSince = Date.now();
              looked = await look();
            }
            continue;
          }
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
    const stored = await this.redis.hget(leaseOf(keyOf(sessionId, streamId)), 'ids');
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
