/**
 * Bytes of upstream answers a replica holds while they arrive (a JSON body before its end, an SSE event before its blank
 * line), bounded in all and per tenant. Each call may receive an answer of up to `maxMessageBytes` (16 MiB), read
 * until the call's timeout: with nothing else bounding them, a tenant's upstreams trickling large answers to many calls
 * at once could hold gigabytes of the replica's memory. A call holding more than `FREE_BYTES_PER_CALL` counts what
 * it holds past that here; a call whose next bytes would pass either bound fails (`overloaded`), and the upstream is
 * told the call was abandoned. Small answers, by far the most, never touch the counts.
 */
export class HeldAnswers {
  private total = 0;
  private readonly byTenant = new Map<string, number>();

  constructor(
    readonly maxBytes: number,
    readonly maxBytesPerTenant: number,
  ) {}

  /** Takes `bytes` more for `tenantId`; false, taking nothing, when that would pass either bound. */
  take(tenantId: string, bytes: number): boolean {
    const tenant = this.byTenant.get(tenantId) ?? 0;
    if (this.total + bytes > this.maxBytes || tenant + bytes > this.maxBytesPerTenant) return false;
    this.total += bytes;
    this.byTenant.set(tenantId, tenant + bytes);
    return true;
  }

  give(tenantId: string, bytes: number): void {
    if (bytes <= 0) return;
    this.total -= bytes;
    const left = (this.byTenant.get(tenantId) ?? bytes) - bytes;
    if (left > 0) this.byTenant.set(tenantId, left);
    else this.byTenant.delete(tenantId);
  }

  /** Bytes held in all (specs, metrics). */
  get held(): number {
    return this.total;
  }
}

/** What one call may hold of its answer without counting it (most answers are a few kilobytes). */
export const FREE_BYTES_PER_CALL = 256 * 1024;

/** Defaults: a quarter of a GiB for the replica, a sixteenth for one tenant (four answers of the 16 MiB most). */
export const DEFAULT_HELD_ANSWER_BYTES = 256 * 1024 * 1024;
export const DEFAULT_HELD_ANSWER_BYTES_PER_TENANT = 64 * 1024 * 1024;

/**
 * One call's share of `HeldAnswers`: `hold(size)` as its buffer grows to `size` bytes (false: past a bound, the call
 * must fail), `release()` once the buffer is gone (idempotent).
 */
export class CallHold {
  private counted = 0;

  constructor(
    private readonly answers: HeldAnswers,
    private readonly tenantId: string,
  ) {}

  hold(size: number): boolean {
    const need = Math.max(0, size - FREE_BYTES_PER_CALL);
    if (need <= this.counted) {
      // Smaller now (an SSE event went out): the rest goes back.
      this.answers.give(this.tenantId, this.counted - need);
      this.counted = need;
      return true;
    }
    if (!this.answers.take(this.tenantId, need - this.counted)) return false;
    this.counted = need;
    return true;
  }

  release(): void {
    this.answers.give(this.tenantId, this.counted);
    this.counted = 0;
  }
}
