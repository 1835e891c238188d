import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import { insertIsolatingFailures, type AuditEventStore } from './audit-event.store';

export interface AuditBatcherOptions {
  readonly store: AuditEventStore;
  /** A batch is written as soon as it holds this many events... */
  readonly maxBatch: number;
  /** ...or when its first event has waited this long. */
  readonly lingerMs: number;
  /** Batches written at the same time (different tenants write in parallel; one tenant's serialise). */
  readonly maxInFlight?: number;
}

/** An event that could not be stored, and why. */
export interface AuditEventFailure {
  readonly event: AuditEventV1;
  readonly error: unknown;
}

/** What happened to a group of submitted events: those not in `failed` are stored (exactly once). */
export interface AuditSubmitResult {
  readonly failed: AuditEventFailure[];
}

/** The events of one `submitMany` call: settled together when the last of them is. */
interface Group {
  remaining: number;
  readonly failed: AuditEventFailure[];
  readonly done: (result: AuditSubmitResult) => void;
}

interface Item {
  readonly event: AuditEventV1;
  readonly group: Group;
}

/**
 * Turns job-at-a-time consumption into batched inserts: the events of many jobs (a job may carry one event or a
 * batch of them) are written together, `maxBatch` at a time, and each job learns when all of its events committed.
 * Under a backlog a batch is cut to span few tenants (see `takeBatch`).
 *
 * Poison isolation (`insertIsolatingFailures`): if a batch fails, the events the store reports as stored are done; the
 * rest are split in halves and retried, recursively, so k bad events among n cost about 2·k·log2(n) extra inserts and
 * every other event is stored. A failure the store calls transient (database unreachable...) is not split: those
 * events fail as they are, for their jobs to retry later.
 */
export class AuditBatcher {
  private pending: Item[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private readonly idle: (() => void)[] = [];
  private readonly maxInFlight: number;

  constructor(private readonly options: AuditBatcherOptions) {
    this.maxInFlight = options.maxInFlight ?? 2;
  }

  /** Resolves when the event is stored; rejects with the store's error if it cannot be. */
  async submit(event: AuditEventV1): Promise<void> {
    const { failed } = await this.submitMany([event]);
    if (failed[0]) throw failed[0].error;
  }

  /** Resolves (never rejects) when every event is stored or has failed; `failed` lists the latter, in order. */
  submitMany(events: readonly AuditEventV1[]): Promise<AuditSubmitResult> {
    if (events.length === 0) return Promise.resolve({ failed: [] });
    return new Promise<AuditSubmitResult>((resolve) => {
      const group: Group = { remaining: events.length, failed: [], done: resolve };
      for (const event of events) this.pending.push({ event, group });
      if (this.pending.length >= this.options.maxBatch) this.kick();
      else this.timer ??= setTimeout(() => this.kick(), this.options.lingerMs);
    });
  }

  /** Resolves once nothing is pending or being written. */
  async drain(): Promise<void> {
    this.kick();
    while (this.pending.length > 0 || this.inFlight > 0) {
      await new Promise<void>((resolve) => this.idle.push(resolve));
    }
  }

  private kick(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.pending.length > 0 && this.inFlight < this.maxInFlight) {
      const batch = this.takeBatch();
      this.inFlight += 1;
      void this.write(batch).finally(() => {
        this.inFlight -= 1;
        if (this.pending.length > 0) {
          // A full batch goes now; a partial one waits its linger (or the next full one).
          if (this.pending.length >= this.options.maxBatch) this.kick();
          else this.timer ??= setTimeout(() => this.kick(), this.options.lingerMs);
        }
        if (this.pending.length === 0 && this.inFlight === 0) this.idle.splice(0).forEach((wake) => wake());
      });
    }
  }

  /**
   * The next batch. If everything pending fits, all of it. Under a backlog, as few tenants as possible (the store
   * writes one transaction per tenant, and a transaction costs about as much as a hundred rows): the tenant of the
   * oldest pending event first, so no tenant waits behind busier ones, then the tenants with the most pending events.
   * A tenant's events keep their arrival order.
   */
  private takeBatch(): Item[] {
    const max = this.options.maxBatch;
    if (this.pending.length <= max) return this.pending.splice(0);
    const byTenant = new Map<string, Item[]>();
    for (const item of this.pending) {
      const list = byTenant.get(item.event.tenantId);
      if (list) list.push(item);
      else byTenant.set(item.event.tenantId, [item]);
    }
    const oldest = (this.pending[0] as Item).event.tenantId;
    const others = [...byTenant.keys()].filter((t) => t !== oldest);
    others.sort((a, b) => (byTenant.get(b)?.length ?? 0) - (byTenant.get(a)?.length ?? 0));
    const taken = new Set<Item>();
    for (const tenant of [oldest, ...others]) {
      for (const item of byTenant.get(tenant) ?? []) {
        if (taken.size >= max) break;
        taken.add(item);
      }
      if (taken.size >= max) break;
    }
    const batch: Item[] = [];
    const rest: Item[] = [];
    for (const item of this.pending) (taken.has(item) ? batch : rest).push(item);
    this.pending = rest;
    return batch;
  }

  private settle(item: Item, error?: unknown): void {
    const { group } = item;
    if (error !== undefined) group.failed.push({ event: item.event, error });
    group.remaining -= 1;
    if (group.remaining === 0) group.done({ failed: group.failed });
  }

  /** Writes `items`, settling every one of them (stored, or failed with an error), bad events isolated. Never throws. */
  private write(items: Item[]): Promise<void> {
    return insertIsolatingFailures(this.options.store, items, (item) => item.event, {
      stored: (item) => this.settle(item),
      failed: (item, error) => this.settle(item, error),
    });
  }
}
