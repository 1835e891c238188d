import type { Logger } from '@portcullis/shared/util-logger';

export interface Refresher {
  /** Reloads now; concurrent calls share one load. Failures are logged and keep the last snapshot. */
  refresh(): Promise<void>;
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
}): Refresher {
  let running: Promise<void> | undefined;
  let again = false;
  const run = async (): Promise<void> => {
    do {
      again = false;
      try {
        await options.load();
      } catch (error) {
        options.logger.error({ err: error, snapshot: options.name }, 'snapshot refresh failed; keeping the last one');
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
  return { refresh, stop: () => clearInterval(timer) };
}
