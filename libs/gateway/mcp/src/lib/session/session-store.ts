import type { Redis } from 'ioredis';
import type { SessionRecord } from './session';

/** One upstream's part of a session record. */
export type UpstreamState = SessionRecord['upstreams'][string];

/** What `swapUpstream` did: whether it stored the new state, and the record as stored afterwards (undefined: gone). */
export interface UpstreamSwap {
  readonly swapped: boolean;
  readonly record: SessionRecord | undefined;
}

/** What `change` did: whether it stored an edited record, and the record as stored afterwards (undefined: gone). */
export interface RecordChange {
  readonly changed: boolean;
  readonly record: SessionRecord | undefined;
}

/**
 * An edit of a stored record: the record to store in place of `record`, or undefined to leave it as it is. Called
 * again with the newer record when another write came in between, so it must depend on nothing but its argument.
 */
export type RecordEdit = (record: SessionRecord) => SessionRecord | undefined;

export interface SessionStore {
  create(record: SessionRecord): Promise<void>;
  get(id: string): Promise<SessionRecord | undefined>;
  update(record: SessionRecord): Promise<void>;
  delete(id: string): Promise<boolean>;
  /**
   * Compare-and-set of one upstream's state in the stored record: replaced by `next` only while it still names the
   * upstream session `expected`. Two replicas that both found that session forgotten cannot both replace it: the
   * second learns the first one's new session instead.
   */
  swapUpstream(id: string, upstreamId: string, expected: string, next: UpstreamState): Promise<UpstreamSwap>;
  /**
   * Compare-and-set of the whole record: `edit` is applied to the record as stored, and its result stored only if
   * nothing else was written meanwhile (else applied again to the newer record). Replicas changing different parts of
   * one session's record at once (an upstream session renewed, a subscription added) lose neither change.
   */
  change(id: string, edit: RecordEdit): Promise<RecordChange>;
  /** The record as stored now, past any cache (undefined: gone). */
  reload?(id: string): Promise<SessionRecord | undefined>;
  /**
   * How many sessions the record's principal holds now (in its tenant): those created and used within the idle
   * timeout and not deleted. For the per-principal cap.
   */
  heldBy?(owner: SessionOwner): Promise<number>;
}

/** Whose a session is. */
export type SessionOwner = Pick<SessionRecord, 'tenantId' | 'principalKind' | 'principalId'>;

const key = (id: string) => `pcs:session:${id}`;
/**
 * The principal's sessions: a sorted set of session ids, each scored with the time its record would expire (kept
 * moving by the touches that move the record's TTL). Entries past their score are gone sessions, dropped when counted.
 */
const ownerKey = (owner: SessionOwner) => `pcs:sessions-of:${owner.tenantId}:${owner.principalKind}:${owner.principalId}`;

/** SET the key to ARGV[2] (TTL ARGV[3] ms) only if it still holds exactly ARGV[1]. */
const COMPARE_AND_SET = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'XX')
  return 1
end
return 0`;

/**
 * Rounds of read, edit and compare-and-set before `change` gives up: every round one writer racing on the record wins,
 * so this many writers at once all get through (one agent session's subscribe and setLevel requests, renewals).
 */
const MAX_CHANGE_ROUNDS = 16;

interface CacheEntry {
  readonly record: SessionRecord;
  readonly fetchedAt: number;
  touchedAt: number;
}

/**
 * Session records in Redis with an idle TTL, fronted by a short-lived in-process cache so most requests
 * cost no Redis round trip. The TTL is refreshed at most once per `touchEveryMs` per replica.
 */
export class RedisSessionStore implements SessionStore {
  private readonly cache = new Map<string, CacheEntry>();
  /** Per record id, the end of this process's changes under way (`change` runs them one after another). */
  private readonly changing = new Map<string, Promise<void>>();

  constructor(
    private readonly redis: Redis,
    private readonly options: { idleTtlMs: number; cacheMs: number; touchEveryMs: number; maxCached: number },
  ) {}

  async create(record: SessionRecord): Promise<void> {
    const ttl = this.options.idleTtlMs;
    const owner = ownerKey(record);
    const results = await this.redis
      .multi()
      .set(key(record.id), JSON.stringify(record), 'PX', ttl, 'NX')
      .zadd(owner, Date.now() + ttl, record.id)
      .pexpire(owner, ttl)
      .exec();
    const failed = results?.find(([error]) => error !== null)?.[0];
    if (results === null || failed) throw failed ?? new Error('the session was not stored');
    this.remember(record);
  }

  async heldBy(owner: SessionOwner): Promise<number> {
    const results = await this.redis.pipeline().zremrangebyscore(ownerKey(owner), '-inf', Date.now()).zcard(ownerKey(owner)).exec();
    const counted = results?.[1];
    if (!counted || counted[0] !== null) throw counted?.[0] ?? new Error('the sessions were not counted');
    return Number(counted[1]);
  }

  /** Moves the record's TTL, and its score among its principal's sessions with it. */
  private touch(record: SessionRecord): void {
    const ttl = this.options.idleTtlMs;
    const owner = ownerKey(record);
    void this.redis
      .pipeline()
      .pexpire(key(record.id), ttl)
      .zadd(owner, 'XX', Date.now() + ttl, record.id)
      .pexpire(owner, ttl)
      .exec()
      .catch(() => undefined);
  }

  async get(id: string): Promise<SessionRecord | undefined> {
    const now = Date.now();
    const cached = this.cache.get(id);
    if (cached && now - cached.fetchedAt < this.options.cacheMs) {
      if (now - cached.touchedAt >= this.options.touchEveryMs) {
        cached.touchedAt = now;
        this.touch(cached.record);
      }
      return cached.record;
    }
    const raw = await this.redis.get(key(id));
    if (raw === null) {
      this.cache.delete(id);
      return undefined;
    }
    const record = JSON.parse(raw) as SessionRecord;
    this.touch(record);
    this.remember(record);
    return record;
  }

  async update(record: SessionRecord): Promise<void> {
    const stored = await this.redis.set(key(record.id), JSON.stringify(record), 'PX', this.options.idleTtlMs, 'XX');
    // XX: nothing is written for a session that is gone, and nothing cached either (it would come back here).
    if (stored === 'OK') this.remember(record);
    else this.cache.delete(record.id);
  }

  async reload(id: string): Promise<SessionRecord | undefined> {
    const raw = await this.redis.get(key(id));
    if (raw === null) {
      this.cache.delete(id);
      return undefined;
    }
    const record = JSON.parse(raw) as SessionRecord;
    this.remember(record);
    return record;
  }

  async swapUpstream(id: string, upstreamId: string, expected: string, next: UpstreamState): Promise<UpstreamSwap> {
    const { changed, record } = await this.change(id, (stored) =>
      stored.upstreams[upstreamId]?.sessionId === expected ? { ...stored, upstreams: { ...stored.upstreams, [upstreamId]: next } } : undefined,
    );
    return { swapped: changed, record };
  }

  async change(id: string, edit: RecordEdit): Promise<RecordChange> {
    // One change of a record at a time from this process: its own requests (an agent subscribing to a hundred
    // resources at once) then never race each other, only other replicas' changes.
    const before = this.changing.get(id) ?? Promise.resolve();
    const mine = before.then(() => this.changeNow(id, edit));
    const settled = mine.then(
      () => undefined,
      () => undefined,
    );
    this.changing.set(id, settled);
    void settled.then(() => {
      if (this.changing.get(id) === settled) this.changing.delete(id);
    });
    return mine;
  }

  private async changeNow(id: string, edit: RecordEdit): Promise<RecordChange> {
    // The whole record is compared, so a concurrent change of any part of it sends this round again. Each round one of
    // the writers racing on the record wins; a loser waits a random while, doubling each round (at most 128 ms).
    for (let attempt = 0; attempt < MAX_CHANGE_ROUNDS; attempt += 1) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, Math.random() * 2 ** Math.min(attempt, 7)));
      const raw = await this.redis.get(key(id));
      if (raw === null) {
        this.cache.delete(id);
        return { changed: false, record: undefined };
      }
      const record = JSON.parse(raw) as SessionRecord;
      const updated = edit(record);
      if (updated === undefined) {
        this.remember(record);
        return { changed: false, record };
      }
      const stored = await this.redis.eval(COMPARE_AND_SET, 1, key(id), raw, JSON.stringify(updated), String(this.options.idleTtlMs));
      if (stored === 1) {
        this.remember(updated);
        return { changed: true, record: updated };
      }
    }
    throw new Error('the session record kept changing while it was being updated');
  }

  async delete(id: string): Promise<boolean> {
    // The principal's set loses the id too when the record is known here (else its entry lapses with its score).
    const record = this.cache.get(id)?.record;
    this.cache.delete(id);
    if (record === undefined) return (await this.redis.del(key(id))) === 1;
    const results = await this.redis.pipeline().del(key(id)).zrem(ownerKey(record), id).exec();
    const deleted = results?.[0];
    if (!deleted || deleted[0] !== null) throw deleted?.[0] ?? new Error('the session was not deleted');
    return deleted[1] === 1;
  }

  /** Which of `ids` still have a record in Redis (one pipelined round trip; the cache is not consulted). */
  async existing(ids: readonly string[]): Promise<Set<string>> {
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.exists(key(id));
    const results = (await pipeline.exec()) ?? [];
    const alive = new Set<string>();
    results.forEach(([error, count], index) => {
      const id = ids[index];
      // A failed check counts as alive: nothing is torn down on a Redis hiccup.
      if (id !== undefined && (error !== null || count === 1)) alive.add(id);
    });
    return alive;
  }

  /** Drops a cached record (another replica ended the session). */
  forget(id: string): void {
    this.cache.delete(id);
  }

  private remember(record: SessionRecord): void {
    if (this.cache.size >= this.options.maxCached) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    const now = Date.now();
    this.cache.set(record.id, { record, fetchedAt: now, touchedAt: now });
  }
}
