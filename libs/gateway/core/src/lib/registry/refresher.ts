import type { Logger } from '@portcullis/shared/util-logger';

export interface Refresher {
  /** Reloads now; concurrent calls share one load. Failures are logged and keep the last snapshot. */
  refresh(): Promise<void>;
  /** When the last successful load began (the options' clock), or undefined if none has succeeded yet. */
  loadedAt(): number | undefined;
  stop(): void;
}

/**
 * Keeps an in-memory snapshot fresh: loaded by the caller once at boot, then every `intervalMs` and
 * whenever `refresh()` is called (the app calls it on a Redis pub/sub notice).
 */
export function createRefresher(options: {
  readonly name: string;
  readonly intervalMs: number;
  readonly logger: Logger;
  readonly load: () => Promise<void>;
  /** The clock of `loadedAt` (default `Date.now`). */
  readonly now?: () => number;
  /** After each successful load, once `loadedAt` says so (whatever it calls sees the snapshot as current). */
  readonly loaded?: () => void;
}): Refresher {
  const now = options.now ?? Date.now;
  let running: Promise<void> | undefined;
  let again = false;
  let loadedAt: number | undefined;
  const run = async (): Promise<void> => {
    do {
      again = false;
      // The snapshot is as old as the moment its load began, not when it ended.
      const started = now();
      try {
        await options.load();
        loadedAt = started;
      } catch (error) {
        options.logger.error({ err: error, snapshot: options.name }, 'snapshot refresh failed; keeping the last one');
        continue;
      }
      try {
        options.loaded?.();
      } catch (error) {
        options.logger.error({ err: error, snapshot: options.name }, 'snapshot reloaded, but what follows a reload failed');
      }
    } while (again);
  };
  const refresh = (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = run().finally(() => {
      running = undefined;
    });
    return running;
  };
  const timer = setInterval(() => void refresh(), options.intervalMs);
  timer.unref();
  return { refresh, loadedAt: () => loadedAt, stop: () => clearInterval(timer) };
}
