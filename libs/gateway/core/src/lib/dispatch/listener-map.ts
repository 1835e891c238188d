/**
 * The sessions whose agent listens (holds a standalone stream) on some replica, as the replicas announce them over
 * the bus: when one attaches a stream (`standalone-attached`), every `announceMs` for all the streams it holds
 * (`standalone-held`), and when one lets a stream go (`standalone-detached`). A replica asks it before putting a
 * session-level message on the bus (nobody listening: nothing to broadcast) and before reusing a listing page whose
 * changes only a listener hears (ADR 0007).
 *
 * What it cannot know is said so (`unsure`): while the replica is younger than an announcement round and its lapse
 * (it may not have heard the streams attached before it started), and after it had to leave announcements out (full).
 */
export class ListenerMap {
  /** Session id → the announced stream's token, and until when it counts (`heardForMs` after its last announcement). */
  private readonly heard = new Map<string, { token: string; until: number }>();
  private readonly startedAt: number;
  /** When an announcement was last left out for want of room. */
  private fullAt: number | undefined;

  constructor(
    /** An entry not announced again within this long is dropped (its replica died, or its detach was lost). */
    private readonly heardForMs: number,
    private readonly maxEntries: number,
    now: number,
  ) {
    this.startedAt = now;
  }

  get size(): number {
    return this.heard.size;
  }

  /**
   * A replica holds (or took) session `sessionId`'s stream `token`; it counts for `heardForMs`, or for `forMs` when
   * given (a replica that will not announce it again).
   */
  announced(sessionId: string, token: string, now: number, forMs = this.heardForMs): void {
    const until = now + forMs;
    const entry = this.heard.get(sessionId);
    if (entry !== undefined) {
      entry.token = token;
      entry.until = until;
      return;
    }
    if (this.heard.size >= this.maxEntries) {
      this.fullAt = now;
      return;
    }
    this.heard.set(sessionId, { token, until });
  }

  /** The replica holding stream `token` let it go; a later stream of the session (another token) stays. */
  detached(sessionId: string, token: string): void {
    if (this.heard.get(sessionId)?.token === token) this.heard.delete(sessionId);
  }

  ended(sessionId: string): void {
    this.heard.delete(sessionId);
  }

  /** Whether an agent was announced listening to the session, lately enough to count. */
  listens(sessionId: string, now: number): boolean {
    const entry = this.heard.get(sessionId);
    return entry !== undefined && now < entry.until;
  }

  /** Whether an unannounced session may still have a listener this replica has not heard of. */
  unsure(now: number): boolean {
    return now - this.startedAt < this.heardForMs || (this.fullAt !== undefined && now - this.fullAt < this.heardForMs);
  }

  /** Drops the entries that no longer count; returns their session ids. */
  prune(now: number): string[] {
    const dropped: string[] = [];
    for (const [sessionId, entry] of this.heard) {
      if (now < entry.until) continue;
      this.heard.delete(sessionId);
      dropped.push(sessionId);
    }
    return dropped;
  }
}
