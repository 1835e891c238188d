export type CircuitState = 'closed' | 'open' | 'half_open';

export interface CircuitBreakerOptions {
  /** Consecutive connect/timeout failures that open the circuit. */
  readonly failureThreshold: number;
  /** How long the circuit stays open before one probe is let through. */
  readonly cooldownMs: number;
}

/**
 * Per-upstream circuit breaker. Closed: everything passes; `failureThreshold` consecutive failures open
 * it. Open: everything fails fast until `cooldownMs` passed. Half-open: one probe passes at a time;
 * its success closes the circuit, its failure opens it again. A probe that never reports back (the
 * caller gave up) stops blocking after another cool-down.
 *
 * A failure says something only of the circuit's present state: one of a message that went out before the circuit
 * last opened or closed (`failure(since)`) is ignored, and none (but the probe's) extends an open circuit's cool-down.
 */
export class CircuitBreaker {
  private current: CircuitState = 'closed';
  private failures = 0;
  private openedAt = 0;
  /** When the circuit last opened or closed again: failures of what went out before say nothing of it now. */
  private changedAt = -Infinity;
  private probeStartedAt = -1;
  /** Numbers the half-open probes: only the one holding the slot frees it (`probe`, `probeEnded`). */
  private probes = 0;

  constructor(
    private readonly options: CircuitBreakerOptions,
    /** A monotonic clock (ms): a wall clock stepped back would make every failure look stale, and a dead upstream stay. */
    private readonly now: () => number = () => performance.now(),
  ) {}

  get state(): CircuitState {
    if (this.current === 'open' && this.now() - this.openedAt >= this.options.cooldownMs) return 'half_open';
    return this.current;
  }

  /** Whether a call may go ahead now. In half-open state this admits the single probe. */
  tryPass(): boolean {
    if (this.current === 'closed') return true;
    const now = this.now();
    if (this.current === 'open') {
      if (now - this.openedAt < this.options.cooldownMs) return false;
      this.current = 'half_open';
      this.probeStartedAt = -1;
    }
    if (this.probeStartedAt >= 0 && now - this.probeStartedAt < this.options.cooldownMs) return false;
    this.probeStartedAt = now;
    this.probes += 1;
    return true;
  }

  /** Read right after a `tryPass()` that returned true: the number of the half-open probe the caller is, else 0. */
  get probe(): number {
    return this.current === 'half_open' ? this.probes : 0;
  }

  /**
   * A call the upstream answered. While open and cooling down it proves nothing (a call that went out before the
   * circuit opened), so only one that ends once the cool-down is over (the probe, or one still in flight) closes it.
   */
  success(): void {
    if (this.current === 'closed' && this.failures === 0) return;
    if (this.current === 'open' && this.now() - this.openedAt < this.options.cooldownMs) return;
    if (this.current !== 'closed') this.changedAt = this.now();
    this.current = 'closed';
    this.failures = 0;
    this.probeStartedAt = -1;
  }

  /**
   * A call (or a message of the gateway's own) failed in a way that speaks of the upstream's health: a timeout, a
   * refused connection, a 5xx. `since`: when it went out (`performance.now()`, the breaker's clock). Counted in closed
   * state; in half-open state it opens the circuit again. Ignored:
   * - when it went out before the circuit last opened or closed: a call that timed out after the recovery (or the
   *   probe) says nothing the probe did not; before, it reopened a circuit just closed (found by review);
   * - while the circuit is open: nothing but the probe goes out then, so what fails is older, or a message of the
   *   gateway's own (a cancellation, an answer to the upstream's ping); before, each one started the cool-down over,
   *   and a stream of them kept the circuit open for good.
   */
  failure(since?: number): void {
    if (since !== undefined && since < this.changedAt) return;
    if (this.current === 'open') return;
    if (this.current === 'closed') {
      this.failures += 1;
      if (this.failures < this.options.failureThreshold) return;
    }
    this.open();
  }

  /**
   * A call that may have been the half-open probe ended without a verdict on the upstream's health (a URL refused
   * here, an HTTP error answer): the next call may probe at once rather than wait out another cool-down. Does nothing
   * when the call reported success or failure already, or in closed state. Given `probe` (the number `probe` gave the
   * call), only when that call holds the slot: a message that never took it (an answer to an upstream's ping) or a
   * probe from an earlier half-open spell would otherwise let further calls through.
   */
  probeEnded(probe?: number): void {
    if (this.current === 'half_open' && (probe === undefined || probe === this.probes)) this.probeStartedAt = -1;
  }

  /** Opens the circuit regardless of the failure count (e.g. a stdio server that keeps crashing). */
  open(): void {
    this.current = 'open';
    this.openedAt = this.now();
    this.changedAt = this.openedAt;
    this.probeStartedAt = -1;
  }
}
