import { compile, serializeSnapshot } from '@portcullis/policy/engine';
import { createLogger } from '@portcullis/shared/util-logger';
import { describe, expect, it, vi } from 'vitest';
import { SnapshotCache, type ActiveSnapshotRef, type SnapshotSource, type StoredSnapshot } from './snapshot-cache';

/** The stored form of a compiled snapshot, as the control plane writes it (`ir` = canonical JSON, parsed). */
function stored(tenantId: string, version: number, defaultEffect: 'allow' | 'deny' = 'deny'): StoredSnapshot {
  const result = compile({ tenantId, version, defaultEffect, rules: [] });
  if (!result.ok) throw new Error('compile failed');
  return { tenantId, version, checksum: result.snapshot.checksum, ir: JSON.parse(serializeSnapshot(result.snapshot)) };
}

/** An in-memory table of active snapshots that counts its reads and can be made unreachable. */
class TableSource implements SnapshotSource {
  rows = new Map<string, StoredSnapshot>();
  down = false;
  fullLoads = 0;
  listings = 0;
  loadedTenants: string[] = [];

  put(row: StoredSnapshot): void {
    this.rows.set(row.tenantId, row);
  }

  async listActive(): Promise<readonly ActiveSnapshotRef[]> {
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
    this.listings++;
    return [...this.rows.values()].map(({ tenantId, version, checksum }) => ({ tenantId, version, checksum }));
  }

  async loadActive(tenantIds: readonly string[] | 'all'): Promise<readonly StoredSnapshot[]> {
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
    if (tenantIds === 'all') {
      this.fullLoads++;
      return [...this.rows.values()];
    }
    this.loadedTenants.push(...tenantIds);
    return tenantIds.flatMap((id) => this.rows.get(id) ?? []);
  }
}

function setup(options: { reconcileMs?: number; pollMs?: number } = {}) {
  let logs = '';
  const logger = createLogger({ service: 'spec', level: 'debug', destination: { write: (chunk: string) => void (logs += chunk) } });
  const source = new TableSource();
  const cache = new SnapshotCache({ source, logger, reconcileMs: options.reconcileMs ?? 60_000, pollMs: options.pollMs ?? 60_000 });
  return { source, cache, logs: () => logs };
}

const waitFor = async (check: () => boolean, timeoutMs = 2_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

describe('SnapshotCache', () => {
  it('loads every active snapshot at boot and swaps one tenant on a notice', async () => {
    const { source, cache } = setup();
    source.put(stored('t1', 1));
    source.put(stored('t2', 4, 'allow'));
    await cache.start();
    expect(cache.versions()).toEqual({ t1: 1, t2: 4 });
    expect(cache.get('t2')?.defaultEffect).toBe('allow');
    const before = cache.get('t2');

    source.put(stored('t1', 2, 'allow'));
    await cache.notice('t1');
    expect(cache.get('t1')?.version).toBe(2);
    expect(cache.get('t2')).toBe(before);
    expect(source.loadedTenants).toEqual(['t1']);
    cache.stop();
  });

  it('reconciles with the cheap listing and reloads only what changed (a missed notice heals)', async () => {
    const { source, cache } = setup({ reconcileMs: 40 });
    source.put(stored('t1', 1));
    source.put(stored('t2', 1));
    await cache.start();
    source.put(stored('t2', 2));
    await waitFor(() => cache.get('t2')?.version === 2);
    expect(source.loadedTenants).toEqual(['t2']);
    await waitFor(() => source.listings >= 3);
    expect(source.loadedTenants).toEqual(['t2']);
    // A rollback (an older version becomes active again) is followed too.
    source.put(stored('t2', 1));
    await cache.reconcile();
    expect(cache.get('t2')?.version).toBe(1);
    cache.stop();
  });

  it('refuses a snapshot whose checksum does not verify, keeps the previous one, and does not retry it every tick', async () => {
    const { source, cache, logs } = setup();
    source.put(stored('t1', 1));
    await cache.start();
    const good = stored('t1', 2, 'allow');
    const tampered = { ...good, ir: { ...(good.ir as Record<string, unknown>), defaultEffect: 'deny' } };
    source.put(tampered);
    await cache.notice('t1');
    expect(cache.get('t1')?.version).toBe(1);
    expect(logs()).toContain('policy snapshot refused; keeping the previous one');
    expect(logs()).toContain('CHECKSUM_MISMATCH');
    const loads = source.loadedTenants.length;
    await cache.reconcile();
    expect(source.loadedTenants.length).toBe(loads);

    // A row whose checksum column disagrees with its (valid) content is refused as well.
    source.put({ ...stored('t1', 3), checksum: 'f'.repeat(64) });
    await cache.notice('t1');
    expect(cache.get('t1')?.version).toBe(1);
    // The next good version is taken.
    source.put(stored('t1', 4));
    await cache.notice('t1');
    expect(cache.get('t1')?.version).toBe(4);
    cache.stop();
  });

  it('keeps serving what it holds while the database is down, and catches up when it is back', async () => {
    const { source, cache, logs } = setup({ reconcileMs: 60_000, pollMs: 30 });
    source.put(stored('t1', 1));
    await cache.start();
    source.down = true;
    source.put(stored('t1', 2));
    await cache.notice('t1');
    await cache.reconcile();
    expect(cache.get('t1')?.version).toBe(1);
    expect(logs()).toContain('could not read policy snapshots; keeping the ones held');
    source.down = false;
    // While failing, the cache retries every pollMs even though pub/sub is healthy.
    await waitFor(() => cache.get('t1')?.version === 2);
    expect(logs()).toContain('policy snapshot source reachable again');
    cache.stop();
  });

  it('starts empty (deny everything) when the database is down at boot and loads once it answers', async () => {
    const { source, cache } = setup({ pollMs: 30 });
    source.put(stored('t1', 1));
    source.down = true;
    await cache.start();
    expect(cache.size).toBe(0);
    source.down = false;
    await waitFor(() => cache.get('t1') !== undefined);
    cache.stop();
  });

  it('goes on reconciling when the wall clock steps back (NTP, a restored VM)', async () => {
    // Only Date is faked (timers run for real): the wall clock stands still unless set, and is set back below.
    vi.useFakeTimers({ toFake: ['Date'] });
    const until = async (check: () => boolean) => {
      const deadline = performance.now() + 2_000;
      while (!check() && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      return check();
    };
    const { source, cache } = setup({ reconcileMs: 60_000, pollMs: 20 });
    try {
      vi.setSystemTime(new Date('2026-12-04T12:00:00Z'));
      source.put(stored('t1', 1));
      await cache.start();
      cache.setPubSubHealthy(false);
      const polled = source.listings;
      vi.setSystemTime(new Date('2026-12-04T12:00:05Z'));
      expect(await until(() => source.listings >= polled + 1)).toBe(true);
      // A minute back: polling goes on.
      vi.setSystemTime(new Date('2026-12-04T11:59:05Z'));
      const before = source.listings;
      source.put(stored('t1', 2));
      expect(await until(() => cache.get('t1')?.version === 2 && source.listings >= before + 3)).toBe(true);
    } finally {
      cache.stop();
      vi.useRealTimers();
    }
  });

  it('polls every pollMs while notices are unavailable and reconciles as soon as they are back', async () => {
    const { source, cache, logs } = setup({ reconcileMs: 60_000, pollMs: 30 });
    source.put(stored('t1', 1));
    await cache.start();
    cache.setPubSubHealthy(false);
    expect(logs()).toContain('polling the database instead');
    source.put(stored('t1', 2));
    await waitFor(() => cache.get('t1')?.version === 2);
    cache.setPubSubHealthy(true);
    source.put(stored('t1', 3));
    cache.setPubSubHealthy(false);
    cache.setPubSubHealthy(true);
    await waitFor(() => cache.get('t1')?.version === 3);
    cache.stop();
  });

  it('drops a tenant whose active snapshot disappeared, and ignores notices for unknown tenants', async () => {
    const { source, cache } = setup();
    source.put(stored('t1', 1));
    source.put(stored('t2', 1));
    await cache.start();
    source.rows.delete('t2');
    await cache.notice('t2');
    expect(cache.get('t2')).toBeUndefined();
    source.rows.delete('t1');
    await cache.reconcile();
    expect(cache.size).toBe(0);
    await cache.notice('no-such-tenant');
    expect(cache.size).toBe(0);
    // A message that is not a tenant id is answered with a full reconcile.
    source.put(stored('t3', 1));
    await cache.notice('{"garbage": true}');
    expect(cache.get('t3')?.version).toBe(1);
    cache.stop();
  });

  it('serialises loads: notices arriving during a load are coalesced and the latest state wins', async () => {
    const { source, cache } = setup();
    source.put(stored('t1', 1));
    await cache.start();
    const pending: Promise<void>[] = [];
    for (let version = 2; version <= 6; version++) {
      source.put(stored('t1', version));
      pending.push(cache.notice('t1'));
    }
    await Promise.all(pending);
    await waitFor(() => cache.get('t1')?.version === 6);
    expect(source.loadedTenants.length).toBeLessThanOrEqual(3);
    cache.stop();
  });
});
