import type { Redis } from 'ioredis';
import { sessionBelongsTo, type Principal, type SessionRecord } from './session';

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
  /**
   * The record, and its idle TTL moved on. With `owner`, the TTL moves only for a record that belongs to it: a session
   * id presented by someone it does not belong to must not keep that session alive.
   */
  get(id: string, owner?: Principal): Promise<SessionRecord | undefined>;
  update(record: SessionRecord): Promise<void>;
  /**
   * Removes the record; resolves with it as it was stored when removed (undefined when there was none, or it could not
   * be read): the upstream sessions it names are the ones to close, another replica's renewals included.
   */
  delete(id: string): Promise<SessionRecord | undefined>;
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
   * How many sessions the principal holds now (in its tenant): those created, or being created, and used within the
   * idle timeout, and not deleted. What `reserve` counts against its bound.
   */
  heldBy?(owner: SessionOwner): Promise<number>;
  /**
   * Takes one of the principal's `max` places for the session `id` about to be created, atomically (initializes in
   * parallel cannot all pass a count), held for `holdMs` until `create` keeps it. False when all are taken.
   */
  reserve?(owner: SessionOwner, id: string, max: number, holdMs: number): Promise<boolean>;
  /** Gives back a place `reserve` took for a session that was not created. */
  release?(owner: SessionOwner, id: string): Promise<void>;
  /**
   * The ids of a tenant's sessions (of one principal, if named): to end them all when the tenant is suspended or the
   * principal has no usable credential left. Ids whose records are gone may be among them.
   */
  sessionsOf?(tenantId: string, principal?: Pick<SessionOwner, 'principalKind' | 'principalId'>): Promise<string[]>;
  /**
   * Every principal that holds sessions (or held them lately: its set may outlive them by a TTL): a replica starting
   * up ends the sessions of those refused now, which no earlier load of its own can have seen go.
   */
  owners?(): Promise<SessionOwner[]>;
}

/** Whose a session is. */
export type SessionOwner = Pick<SessionRecord, 'tenantId' | 'principalKind' | 'principalId'>;

const key = (id: string) => `pcs:session:${id}`;
/**
 * The principal's sessions: a sorted set of session ids, each scored with the time its record would expire (kept
 * moving by the touches that move the record's TTL). Entries past their score are gone sessions, dropped when counted.
 */
const OWNER_PREFIX = 'pcs:sessions-of:';
const ownerKey = (owner: SessionOwner) => `${OWNER_PREFIX}${owner.tenantId}:${owner.principalKind}:${owner.principalId}`;

/**
 * The principal's set keeps at least the record TTL ARGV[1] (a replica configured with a shorter idle timeout never
 * shortens it for the others). Shared by the scripts below.
 */
const KEEP_OWNER_SET = `if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end`;

/**
 * The scores are times on Redis's clock, never a replica's: a replica whose clock ran ahead would count the others'
 * live sessions as expired (and drop them from the count), one whose clock lagged would keep gone ones. Redis 5 and
 * later replicate a script's effects, so a script may read the time.
 */
const NOW = `local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)`;

/**
 * Create: SET the record ARGV[2] (NX) and, only if it was set, score its id ARGV[3] in the principal's set, dropping
 * the expired ids first: with the session cap off (no reserve), a principal opening session after session grew the set
 * with every id it ever used (found by a review).
 */
const CREATE = `if not redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1], 'NX') then return 0 end
${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[3])
${KEEP_OWNER_SET}
return 1`;

/**
 * Touch: move the record's TTL and, while the record lives, the score of its id ARGV[2] (added again if it had dropped
 * out of the set: the count heals itself).
 */
const TOUCH = `if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then return 0 end
${NOW}
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[2])
${KEEP_OWNER_SET}
return 1`;

/**
 * Reserve: drop expired ids, refuse at ARGV[3] ids, else score ARGV[4] for the next ARGV[2] ms (KEYS[2] only, KEYS[1]
 * unused).
 */
const RESERVE = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[4])
${KEEP_OWNER_SET}
return 1`;

/** Count: drop expired ids from the principal's set KEYS[1], and count the rest. */
const COUNT = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])`;

/**
 * Delete: the record and its id in its principal's set, read from the record itself (so a replica that holds no copy
 * of it removes both). Single-node Redis: the set's key is derived, not declared. A record the decoder cannot read
 * (nested past its 1,000 levels) is read for its owner by pattern: the owner's fields come first in every record, so
 * their first occurrence is theirs (inside a string value the quotes are escaped, so cannot match).
 */
const DELETE = `local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local tenant, kind, principal
local ok, record = pcall(cjson.decode, raw)
if ok and type(record) == 'table' then
  tenant, kind, principal = record.tenantId, record.principalKind, record.principalId
else
  tenant = string.match(raw, '"tenantId":"([^"]*)"')
  kind = string.match(raw, '"principalKind":"([^"]*)"')
  principal = string.match(raw, '"principalId":"([^"]*)"')
end
if type(tenant) == 'string' and type(kind) == 'string' and type(principal) == 'string' then
  redis.call('ZREM', ARGV[2] .. tenant .. ':' .. kind .. ':' .. principal, ARGV[1])
end
redis.call('DEL', KEYS[1])
return raw`;

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
    const stored = await this.redis.eval(CREATE, 2, key(record.id), ownerKey(record), String(ttl), JSON.stringify(record), record.id);
    if (stored !== 1) throw new Error('a session with this id exists already');
    this.remember(record);
  }

  async reserve(owner: SessionOwner, id: string, max: number, holdMs: number): Promise<boolean> {
    const ttl = Math.max(this.options.idleTtlMs, holdMs);
    return (await this.redis.eval(RESERVE, 2, key(id), ownerKey(owner), String(ttl), String(holdMs), String(max), id)) === 1;
  }

  async release(owner: SessionOwner, id: string): Promise<void> {
    await this.redis.zrem(ownerKey(owner), id);
  }

  async heldBy(owner: SessionOwner): Promise<number> {
    return Number(await this.redis.eval(COUNT, 1, ownerKey(owner)));
  }

  async sessionsOf(tenantId: string, principal?: Pick<SessionOwner, 'principalKind' | 'principalId'>): Promise<string[]> {
    const owners =
      principal === undefined ? await this.scan(`${OWNER_PREFIX}${tenantId}:*`) : [ownerKey({ tenantId, ...principal })];
    const ids: string[] = [];
    for (const owner of owners) ids.push(...(await this.redis.zrange(owner, '0', '-1')));
    return ids;
  }

  async owners(): Promise<SessionOwner[]> {
    const owners: SessionOwner[] = [];
    for (const found of await this.scan(`${OWNER_PREFIX}*`)) {
      // tenant:kind:principal, as `ownerKey` writes it (a tenant id and a kind hold no colon; a principal id may).
      const [tenantId, principalKind, ...principalId] = found.slice(OWNER_PREFIX.length).split(':');
      if (tenantId === undefined || (principalKind !== 'agent_client' && principalKind !== 'user') || principalId.length === 0) continue;
      owners.push({ tenantId, principalKind, principalId: principalId.join(':') });
    }
    return owners;
  }

  /** The keys matching `pattern` (SCAN: the server is not held as by KEYS). */
  private async scan(pattern: string): Promise<string[]> {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', '500');
      found.push(...keys);
      cursor = next;
    } while (cursor !== '0');
    return found;
  }

  /**
   * Moves the record's TTL, and its score among its principal's sessions with it (one script, not awaited). When the
   * record turns out to be gone (expired, or deleted by a replica whose `session-ended` message never came), the cached
   * `entry` is dropped, so this replica stops serving it at once rather than until the cache entry ages out.
   */
  private touch(record: SessionRecord, entry: CacheEntry): void {
    const ttl = this.options.idleTtlMs;
    void this.redis.eval(TOUCH, 2, key(record.id), ownerKey(record), String(ttl), record.id).then(
      (touched) => {
        // Only the entry this touch was for: one stored since came from a later read or write that found the record.
        if (touched === 0 && this.cache.get(record.id) === entry) this.cache.delete(record.id);
      },
      () => undefined,
    );
  }

  async get(id: string, owner?: Principal): Promise<SessionRecord | undefined> {
    const now = Date.now();
    const cached = this.cache.get(id);
    if (cached && now - cached.fetchedAt < this.options.cacheMs) {
      if (now - cached.touchedAt >= this.options.touchEveryMs && (owner === undefined || sessionBelongsTo(cached.record, owner))) {
        cached.touchedAt = now;
        this.touch(cached.record, cached);
      }
      return cached.record;
    }
    // A plain read: the touch (TTL and score in one script) follows only for the record's own principal, and drops the
    // cached entry again when the record turns out deleted in between.
    const raw = await this.redis.get(key(id));
    if (raw === null) {
      this.cache.delete(id);
      return undefined;
    }
    const record = JSON.parse(raw) as SessionRecord;
    const entry = this.remember(record);
    // Not awaited: a lookup costs one round trip.
    if (owner === undefined || sessionBelongsTo(record, owner)) this.touch(record, entry);
    else entry.touchedAt = 0;
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
        // The write moved the record's TTL: its score moves with it (a session kept alive only by changes stays counted).
        this.touch(updated, this.remember(updated));
        return { changed: true, record: updated };
      }
    }
    throw new Error('the session record kept changing while it was being updated');
  }

  async delete(id: string): Promise<SessionRecord | undefined> {
    this.cache.delete(id);
    const raw = await this.redis.eval(DELETE, 1, key(id), id, OWNER_PREFIX);
    if (typeof raw !== 'string') return undefined;
    try {
      return JSON.parse(raw) as SessionRecord;
    } catch {
      return undefined; // removed all the same (its place in the principal's count too)
    }
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

  private remember(record: SessionRecord): CacheEntry {
    if (this.cache.size >= this.options.maxCached) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    const now = Date.now();
    const entry: CacheEntry = { record, fetchedAt: now, touchedAt: now };
    this.cache.set(record.id, entry);
    return entry;
  }
}
