import { loadSnapshot, SnapshotLoadError, type PolicySnapshot } from '@portcullis/policy/engine';
import type { Logger } from '@portcullis/shared/util-logger';

/** What identifies a tenant's active snapshot: enough to tell whether the copy held in memory is current. */
export interface ActiveSnapshotRef {
  readonly tenantId: string;
  readonly version: number;
  readonly checksum: string;
}

/** An active snapshot row as stored: `ir` is the canonical JSON of the compiled snapshot (parsed or not). */
export interface StoredSnapshot extends ActiveSnapshotRef {
  readonly ir: unknown;
}

/**
 * Where the active snapshots come from (the gateway reads them with the system database client). Both calls may
 * throw (database down): the cache then keeps what it holds.
 */
export interface SnapshotSource {
  /** (tenantId, version, checksum) of every tenant's active snapshot: the cheap query behind reconciliation. */
  listActive(): Promise<readonly ActiveSnapshotRef[]>;
  /** The active snapshots of these tenants, or of every tenant when `tenantIds` is `'all'`. */
  loadActive(tenantIds: readonly string[] | 'all'): Promise<readonly StoredSnapshot[]>;
}

export interface SnapshotCacheOptions {
  readonly source: SnapshotSource;
  readonly logger: Logger;
  /** Reconcile against the database this often while pub/sub works (a missed notice heals within this bound). */
  readonly reconcileMs: number;
  /** Reconcile this often while pub/sub is down (polling instead of notices). */
  readonly pollMs: number;
  readonly now?: () => number;
  /**
   * After a tenant's policy in force changed: another snapshot swapped in, or none any more (what each principal may
   * see changed). Must not throw.
   */
  readonly changed?: (tenantId: string) => void;
}

/** A loaded snapshot and what it was loaded from. */
export interface HeldSnapshot {
  readonly snapshot: PolicySnapshot;
  readonly version: number;
  readonly checksum: string;
  readonly loadedAt: number;
}

const UUID_LIKE = /^[0-9A-Za-z-]{1,64}$/;

/**
 * Every tenant's active compiled policy snapshot, held in memory for the request path (`get` is a map lookup).
 *
 * - `start()` loads all active snapshots (boot).
 * - `notice(tenantId)` reloads one tenant (a Redis message on `CHANGE_CHANNELS.snapshots`).
 * - A timer reconciles: it lists (tenantId, version, checksum) of the active snapshots and reloads only the tenants
 *   whose copy differs, so a missed notice cannot leave a replica stale. It runs every `reconcileMs`, or every
 *   `pollMs` while `setPubSubHealthy(false)` says notices are not arriving.
 * - Loads run one at a time, in order, so a slow earlier read can never overwrite a later one.
 * - A snapshot that does not load (unknown IR version, malformed, checksum mismatch) is refused and logged; the
 *   tenant keeps the snapshot it had. When the database is unreachable, everything held stays in force.
 */
export class SnapshotCache {
  private readonly held = new Map<string, HeldSnapshot>();
  /** Tenant → the snapshot last refused, so reconciliation does not retry (and re-log) it on every tick. */
  private readonly refused = new Map<string, ActiveSnapshotRef>();
  private readonly dirty = new Set<string>();
  private fullPending = false;
  private bootPending = false;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pubSubHealthy = true;
  private lastReconcileAt = Number.NEGATIVE_INFINITY;
  private lastSuccessAt: number | null = null;
  private failing = false;
  private readonly now: () => number;

  constructor(private readonly options: SnapshotCacheOptions) {
    // A monotonic clock: with the wall clock, a step back (NTP, a VM restored) stopped reconciling for as long as it went.
    this.now = options.now ?? (() => performance.now());
  }

  /** The tenant's snapshot in force, or undefined when it has none (the hooks then deny everything). */
  get(tenantId: string): PolicySnapshot | undefined {
    return this.held.get(tenantId)?.snapshot;
  }

  /** The tenant's snapshot with its provenance. */
  entry(tenantId: string): HeldSnapshot | undefined {
    return this.held.get(tenantId);
  }

  get size(): number {
    return this.held.size;
  }

  /** Tenant → version of every snapshot held (readiness, debugging). */
  versions(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [tenantId, entry] of this.held) out[tenantId] = entry.version;
    return out;
  }

  /** When the database last answered a load or reconcile (null: never since boot). */
  get lastSyncedAt(): number | null {
    return this.lastSuccessAt;
  }

  /** Loads every active snapshot, then starts the reconcile timer. Never throws: a failed boot load is logged and retried. */
  async start(): Promise<void> {
    this.bootPending = true;
    await this.kick();
    if (this.timer === undefined) {
      const tick = Math.max(50, Math.min(this.options.pollMs, this.options.reconcileMs));
      this.timer = setInterval(() => this.onTick(), tick);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** A notice that the tenant's active snapshot changed. A message that is not a tenant id triggers a full reconcile. */
  notice(message: string): Promise<void> {
    if (UUID_LIKE.test(message)) this.dirty.add(message);
    else this.fullPending = true;
    return this.kick();
  }

  /** Compares the held snapshots with the database and reloads what differs. */
  reconcile(): Promise<void> {
    this.fullPending = true;
    return this.kick();
  }

  /**
   * Whether change notices arrive (the Redis subscription is up). While they do not, the cache polls every `pollMs`;
   * when they come back, it reconciles at once (notices sent meanwhile were lost).
   */
  setPubSubHealthy(healthy: boolean): void {
    if (healthy === this.pubSubHealthy) return;
    this.pubSubHealthy = healthy;
    if (healthy) {
      this.options.logger.info('policy snapshot notices are back; reconciling');
      void this.reconcile();
    } else {
      this.options.logger.warn({ pollMs: this.options.pollMs }, 'policy snapshot notices are unavailable; polling the database instead');
    }
  }

  private onTick(): void {
    const every = this.pubSubHealthy && !this.failing ? this.options.reconcileMs : this.options.pollMs;
    if (this.now() - this.lastReconcileAt >= every) void this.reconcile();
  }

  /** Runs the pending work one step at a time; concurrent callers share the run. */
  private kick(): Promise<void> {
    // A run in progress may already be past its last check: then its `finally` starts the next run, which does our
    // work, so wait for that one too.
    if (this.running) return this.running.then(() => this.running);
    const run = this.drain().finally(() => {
      this.running = undefined;
      // Work queued between the last check and this callback gets its own run.
      if (this.bootPending || this.fullPending || this.dirty.size > 0) void this.kick();
    });
    this.running = run;
    return run;
  }

  private async drain(): Promise<void> {
    while (this.bootPending || this.fullPending || this.dirty.size > 0) {
      try {
        if (this.bootPending) {
          this.bootPending = false;
          this.fullPending = false;
          this.dirty.clear();
          this.lastReconcileAt = this.now();
          await this.loadAll();
        } else if (this.fullPending) {
          this.fullPending = false;
          this.dirty.clear();
          this.lastReconcileAt = this.now();
          await this.reconcileOnce();
        } else {
          const tenants = [...this.dirty];
          this.dirty.clear();
          await this.reloadTenants(tenants);
        }
        this.succeeded();
      } catch (error) {
        this.failed(error);
      }
    }
  }

  private async loadAll(): Promise<void> {
    const rows = await this.options.source.loadActive('all');
    const present = new Set<string>();
    for (const row of rows) {
      present.add(row.tenantId);
      this.apply(row);
    }
    this.dropMissing(present);
    this.options.logger.info({ tenants: this.held.size, refused: this.refused.size }, 'policy snapshots loaded');
  }

  private async reconcileOnce(): Promise<void> {
    const refs = await this.options.source.listActive();
    const present = new Set<string>();
    const stale: string[] = [];
    for (const ref of refs) {
      present.add(ref.tenantId);
      if (matches(this.held.get(ref.tenantId), ref) || matches(this.refused.get(ref.tenantId), ref)) continue;
      stale.push(ref.tenantId);
    }
    this.dropMissing(present);
    if (stale.length === 0) return;
    this.options.logger.info({ tenants: stale.length }, 'policy reconcile found changed snapshots');
    for (const row of await this.options.source.loadActive(stale)) this.apply(row);
  }

  private async reloadTenants(tenantIds: readonly string[]): Promise<void> {
    const rows = await this.options.source.loadActive(tenantIds);
    const found = new Set(rows.map((row) => row.tenantId));
    for (const row of rows) this.apply(row);
    for (const tenantId of tenantIds) if (!found.has(tenantId)) this.drop(tenantId);
  }

  /** Loads one stored snapshot and swaps it in, or refuses it and keeps the previous one. */
  private apply(row: StoredSnapshot): void {
    const current = this.held.get(row.tenantId);
    if (matches(current, row)) return;
    if (matches(this.refused.get(row.tenantId), row)) return;
    let snapshot: PolicySnapshot;
    try {
      snapshot = loadSnapshot(row.ir);
      if (snapshot.tenantId !== row.tenantId || snapshot.version !== row.version || snapshot.checksum !== row.checksum) {
        throw new SnapshotLoadError('MALFORMED', 'the snapshot content does not match its row (tenant, version or checksum)');
      }
    } catch (error) {
      this.refused.set(row.tenantId, { tenantId: row.tenantId, version: row.version, checksum: row.checksum });
      this.options.logger.error(
        {
          tenantId: row.tenantId,
          version: row.version,
          code: error instanceof SnapshotLoadError ? error.code : 'MALFORMED',
          reason: error instanceof Error ? error.message : String(error),
          keptVersion: current?.version ?? null,
        },
        current ? 'policy snapshot refused; keeping the previous one' : 'policy snapshot refused; the tenant has none in force and is denied everything',
      );
      return;
    }
    this.refused.delete(row.tenantId);
    this.held.set(row.tenantId, { snapshot, version: row.version, checksum: row.checksum, loadedAt: this.now() });
    this.options.logger.info({ tenantId: row.tenantId, version: row.version, previousVersion: current?.version ?? null }, 'policy snapshot in force');
    this.options.changed?.(row.tenantId);
  }

  private dropMissing(present: ReadonlySet<string>): void {
    for (const tenantId of [...this.held.keys()]) if (!present.has(tenantId)) this.drop(tenantId);
    for (const tenantId of [...this.refused.keys()]) if (!present.has(tenantId)) this.refused.delete(tenantId);
  }

  private drop(tenantId: string): void {
    this.refused.delete(tenantId);
    const current = this.held.get(tenantId);
    if (!current) return;
    this.held.delete(tenantId);
    this.options.logger.warn({ tenantId, version: current.version }, 'tenant has no active policy snapshot any more; denying everything');
    this.options.changed?.(tenantId);
  }

  private succeeded(): void {
    this.lastSuccessAt = this.now();
    if (this.failing) {
      this.failing = false;
      this.options.logger.info({ tenants: this.held.size }, 'policy snapshot source reachable again');
    }
  }

  private failed(error: unknown): void {
    // Only the first failure of a run of failures is logged at error level: the database may be down for a while.
    const level = this.failing ? 'debug' : 'error';
    this.failing = true;
    this.options.logger[level](
      { err: error, tenants: this.held.size },
      'could not read policy snapshots; keeping the ones held (a later reconcile retries)',
    );
    // Whatever was asked for is retried by the next reconcile (it compares everything), every `pollMs` while failing.
  }
}

function matches(held: { readonly version: number; readonly checksum: string } | undefined, ref: ActiveSnapshotRef): boolean {
  return held !== undefined && held.version === ref.version && held.checksum === ref.checksum;
}
