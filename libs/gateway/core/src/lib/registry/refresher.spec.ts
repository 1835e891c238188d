import { createLogger } from '@portcullis/shared/util-logger';
import { afterEach, describe, expect, it } from 'vitest';
import { createRefresher, type Refresher } from './refresher';

const logger = createLogger({ service: 'refresher-spec', level: 'silent' });
let refresher: Refresher | undefined;

afterEach(() => refresher?.stop());

/** A refresher under test: hourly (the specs call refresh themselves), silent, with what the spec gives. */
const start = (options: Pick<Parameters<typeof createRefresher>[0], 'load'> & Partial<Parameters<typeof createRefresher>[0]>): Refresher =>
  (refresher = createRefresher({ name: 'spec', intervalMs: 3_600_000, logger, ...options }));

describe('createRefresher', () => {
  it('reports when the last successful load began, and keeps it through failed loads', async () => {
    let clock = 100;
    let fail = false;
    refresher = start({
      now: () => clock,
      load: async () => {
        // The load takes time: the snapshot is as old as its start, not its end.
        clock += 50;
        if (fail) throw new Error('database unreachable');
      },
    });
    expect(refresher.loadedAt()).toBeUndefined();
    await refresher.refresh();
    expect(refresher.loadedAt()).toBe(100);
    clock = 1_000;
    fail = true;
    await refresher.refresh();
    expect(refresher.loadedAt()).toBe(100);
    fail = false;
    clock = 2_000;
    await refresher.refresh();
    expect(refresher.loadedAt()).toBe(2_000);
  });

  it('runs `loaded` after each successful load only, when loadedAt already names it', async () => {
    let clock = 10;
    let fail = false;
    const seen: (number | undefined)[] = [];
    refresher = start({
      now: () => clock,
      load: async () => {
        if (fail) throw new Error('database unreachable');
      },
      loaded: () => seen.push(refresher?.loadedAt()),
    });
    await refresher.refresh();
    fail = true;
    clock = 20;
    await refresher.refresh();
    fail = false;
    clock = 30;
    await refresher.refresh();
    expect(seen).toEqual([10, 30]);
  });

  it('shares one load between concurrent calls and runs once more for a call made during it', async () => {
    let loads = 0;
    let release: () => void = () => undefined;
    refresher = start({
      load: () => {
        loads += 1;
        return new Promise<void>((resolve) => {
          release = resolve;
        });
      },
    });
    const first = refresher.refresh();
    const second = refresher.refresh();
    expect(loads).toBe(1);
    release();
    await Promise.resolve();
    await new Promise((resolve) => setImmediate(resolve));
    // The second call asked while the first ran: one more load, which the shared promise waits for.
    expect(loads).toBe(2);
    release();
    await Promise.all([first, second]);
    expect(loads).toBe(2);
  });
});
