import type { Redis } from 'ioredis';
import type { SessionRecord } from './session';

export interface SessionStore {
  create(record: SessionRecord): Promise<void>;
  get(id: string): Promise<SessionRecord | undefined>;
  update(record: SessionRecord): Promise<void>;
  delete(id: string): Promise<boolean>;
}

const key = (id: string) => `pcs:session:${id}`;

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

  constructor(
    private readonly redis: Redis,
    private readonly options: { idleTtlMs: number; cacheMs: number; touchEveryMs: number; maxCached: number },
  ) {}

  async create(record: SessionRecord): Promise<void> {
    await this.redis.set(key(record.id), JSON.stringify(record), 'PX', this.options.idleTtlMs, 'NX');
    this.remember(record);
  }

  async get(id: string): Promise<SessionRecord | undefined> {
    const now = Date.now();
    const cached = this.cache.get(id);
    if (cached && now - cached.fetchedAt < this.options.cacheMs) {
      if (now - cached.touchedAt >= this.options.touchEveryMs) {
        cached.touchedAt = now;
        void this.redis.pexpire(key(id), this.options.idleTtlMs).catch(() => undefined);
      }
      return cached.record;
    }
    const raw = await this.redis.get(key(id));
    if (raw === null) {
      this.cache.delete(id);
      return undefined;
    }
    const record = JSON.parse(raw) as SessionRecord;
    void this.redis.pexpire(key(id), this.options.idleTtlMs).catch(() => undefined);
    this.remember(record);
    return record;
  }

  async update(record: SessionRecord): Promise<void> {
    await this.redis.set(key(record.id), JSON.stringify(record), 'PX', this.options.idleTtlMs, 'XX');
    this.remember(record);
  }

  async delete(id: string): Promise<boolean> {
    this.cache.delete(id);
    return (await this.redis.del(key(id))) === 1;
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
