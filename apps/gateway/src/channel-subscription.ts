import type { Logger } from '@portcullis/shared/util-logger';

/** The part of an ioredis connection a subscription watches. */
export interface SubscriberConnection {
  readonly status: string;
  on(event: 'ready', listener: () => void): unknown;
  off(event: 'ready', listener: () => void): unknown;
}

export interface ChannelSubscriptionOptions {
  readonly connection: SubscriberConnection;
  /** Subscribes (and sets up whatever rides on the subscription); throws when it failed. */
  readonly subscribe: () => Promise<void>;
  /**
   * Called whenever the connection became ready again and the channels are subscribed (ioredis renews a subscription on
   * reconnect): notices published meanwhile never came, so this is the moment to catch up. `now` tells a subscription
   * that only just succeeded from one renewed. Not called for the boot attempt (see `start`).
   */
  readonly onSubscribed: (now: boolean) => void;
  readonly logger: Logger;
  /** Waits after an attempt failed on a ready connection: `firstMs`, doubled each failure in a row, at most `maxMs`. */
  readonly retry?: { readonly firstMs: number; readonly maxMs: number };
}

const DEFAULT_RETRY = { firstMs: 5_000, maxMs: 300_000 };

/**
 * The gateway's channels, subscribed until it stops. ioredis subscribes again on every reconnect, but only to channels
 * whose SUBSCRIBE once succeeded: one that failed (Redis down at boot) is tried again whenever the connection becomes
 * ready, and, if it failed on a ready connection (an ACL refusing the channels), again after a wait that doubles with
 * each failure in a row, so a lasting refusal is not logged every few seconds. Attempts never run side by side.
 */
export class ChannelSubscription {
  private subscribedNow = false;
  private stopped = false;
  private attempt: Promise<boolean> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private readonly retry: { readonly firstMs: number; readonly maxMs: number };
  private readonly onReady = () => {
    // A new connection: a refusal seen on the old one says nothing about it.
    this.failures = 0;
    void this.resubscribe();
  };

  constructor(private readonly options: ChannelSubscriptionOptions) {
    this.retry = options.retry ?? DEFAULT_RETRY;
  }

  get subscribed(): boolean {
    return this.subscribedNow;
  }

  /** The boot attempt (nothing to catch up on yet, so `onSubscribed` is not called); then watches the connection. */
  async start(): Promise<boolean> {
    const subscribed = await this.subscribe();
    if (!this.stopped) this.options.connection.on('ready', this.onReady);
    return subscribed;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.options.connection.off('ready', this.onReady);
  }

  private subscribe(): Promise<boolean> {
    if (this.subscribedNow || this.stopped) return Promise.resolve(this.subscribedNow);
    this.attempt ??= this.options
      .subscribe()
      .then(
        () => {
          this.subscribedNow = true;
          this.failures = 0;
          // A retry still pending from an earlier failure (the connection came back meanwhile) has nothing left to do.
          clearTimeout(this.retryTimer);
        },
        (error: unknown) => this.failed(error),
      )
      .then(() => this.subscribedNow)
      .finally(() => (this.attempt = undefined));
    return this.attempt;
  }

  private failed(error: unknown): void {
    this.failures += 1;
    const retryInMs = Math.min(this.retry.maxMs, this.retry.firstMs * 2 ** Math.min(this.failures - 1, 30));
    // Redis down: readiness says so; requests with cached sessions still flow (ADR 0007). A refusal on a ready
    // connection is tried again later; a connection that is down is tried again when it is back.
    const ready = this.options.connection.status === 'ready';
    this.options.logger.error(
      { err: error, failures: this.failures, ...(ready ? { retryInMs } : {}) },
      'could not subscribe to gateway channels; cross-replica messages are off',
    );
    if (this.stopped || !ready) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.resubscribe(), retryInMs);
    this.retryTimer.unref();
  }

  private async resubscribe(): Promise<void> {
    const wasSubscribed = this.subscribedNow;
    if (!(await this.subscribe()) || this.stopped) return;
    this.options.onSubscribed(!wasSubscribed);
  }
}
