import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import type { AuditEventStore } from './audit-event.store';

export interface AuditBatcherOptions {
  readonly store: AuditEventStore;
  /** A batch is written as soon as it holds this many events... */
  readonly maxBatch: number;
  /** ...or when its first event has waited this long. */
  readonly lingerMs: number;
  /** Batches written at the same time (different tenants write in parallel; one tenant's serialise). */
  readonly maxInFlight?: number;
}

interface Pending {
  readonly event: AuditEventV1;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Turns one-job-at-a-time consumption into batched inserts: `submit` resolves when the event's batch committed.
 * If a batch fails as a whole, each of its events is retried alone once, so one poisonous event fails only its own
 * job and the rest of the batch is stored.
 */
export class AuditBatcher {
  private pending: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private readonly idle: (() => void)[] = [];
  private readonly maxInFlight: number;

  constructor(private readonly options: AuditBatcherOptions) {
    this.maxInFlight = options.maxInFlight ?? 2;
  }

  submit(event: AuditEventV1): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ event, resolve, reject });
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
      const batch = this.pending.splice(0, this.options.maxBatch);
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

  private async write(batch: Pending[]): Promise<void> {
    try {
      await this.options.store.insert(batch.map((p) => p.event));
      // Inserted or already there: either way the event is stored exactly once.
      batch.forEach((p) => p.resolve());
      return;
    } catch (error) {
      if (batch.length === 1) {
        batch[0]?.reject(error);
        return;
      }
    }
    for (const p of batch) {
      try {
        await this.options.store.insert([p.event]);
        p.resolve();
      } catch (error) {
        p.reject(error);
      }
    }
  }
}
