import { AppError } from '@portcullis/shared/util-errors';

/** Changes of one tenant that may wait in one process before more are refused (429). */
export const MAX_QUEUED_CHANGES_PER_TENANT = 256;

interface Lane {
  /** Settles when the last change queued so far has finished. */
  tail: Promise<void>;
  /** Changes running or waiting. */
  size: number;
}

/**
 * Runs one tenant's snapshot-writing changes one at a time in this process, the rest waiting in memory.
 *
 * Such changes are serialised anyway, by the tenant's advisory lock inside their transactions (`lockSnapshots`). But a
 * transaction waiting on that lock holds a pool connection the whole time: a burst of changes to one tenant took every
 * connection of the pool, and other tenants' requests queued behind the burst for a connection (250 concurrent
 * agent-client creations on one tenant held a read of another tenant for 9 s, close to the pool's 10 s wait and its
 * 503). Queued here, a waiting change holds no connection; across processes the advisory lock still decides.
 *
 * Bounded: a change arriving while `maxQueued` of its tenant's are running or waiting is refused with 429 and a
 * Retry-After, nothing done. Ordered: first come, first run.
 */
export class TenantWriteQueue {
  private readonly lanes = new Map<string, Lane>();

  constructor(private readonly maxQueued = MAX_QUEUED_CHANGES_PER_TENANT) {}

  /** Changes of `tenantId` running or waiting in this process. */
  queued(tenantId: string): number {
    return this.lanes.get(tenantId)?.size ?? 0;
  }

  async run<T>(tenantId: string, change: () => Promise<T>): Promise<T> {
    let lane = this.lanes.get(tenantId);
    if (lane === undefined) {
      lane = { tail: Promise.resolve(), size: 0 };
      this.lanes.set(tenantId, lane);
    }
    if (lane.size >= this.maxQueued) {
      throw new AppError('RATE_LIMITED', 'Too many changes to this tenant are waiting to be applied; retry shortly.', { retryAfterSeconds: 1 });
    }
    lane.size += 1;
    const before = lane.tail;
    let finished!: () => void;
    lane.tail = new Promise<void>((resolve) => (finished = resolve));
    try {
      await before;
      return await change();
    } finally {
      finished();
      lane.size -= 1;
      if (lane.size === 0) this.lanes.delete(tenantId);
    }
  }
}
