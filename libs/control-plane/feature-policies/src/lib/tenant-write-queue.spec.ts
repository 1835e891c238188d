import { AppError } from '@portcullis/shared/util-errors';
import { describe, expect, it } from 'vitest';
import { TenantWriteQueue } from './tenant-write-queue';

/** A change that runs until `finish` is called, recording when it started. */
function gated(log: string[], name: string) {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return {
    change: async () => {
      log.push(`start ${name}`);
      await done;
      log.push(`end ${name}`);
      return name;
    },
    finish: () => finish(),
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('TenantWriteQueue', () => {
  it('runs one change of a tenant at a time, in arrival order, while other tenants run alongside', async () => {
    const queue = new TenantWriteQueue();
    const log: string[] = [];
    const a1 = gated(log, 'a1');
    const a2 = gated(log, 'a2');
    const a3 = gated(log, 'a3');
    const b1 = gated(log, 'b1');
    const results = [queue.run('a', a1.change), queue.run('a', a2.change), queue.run('a', a3.change), queue.run('b', b1.change)];
    await settle();
    expect(log).toEqual(['start a1', 'start b1']);
    expect(queue.queued('a')).toBe(3);

    a2.finish(); // done early: it still waits for a1
    await settle();
    expect(log).toEqual(['start a1', 'start b1']);
    a1.finish();
    await settle();
    expect(log).toEqual(['start a1', 'start b1', 'end a1', 'start a2', 'end a2', 'start a3']);
    b1.finish();
    a3.finish();
    await expect(Promise.all(results)).resolves.toEqual(['a1', 'a2', 'a3', 'b1']);
    expect(queue.queued('a')).toBe(0);
    expect(queue.queued('b')).toBe(0);
  });

  it('lets the next change run when one fails, and passes the failure to its caller', async () => {
    const queue = new TenantWriteQueue();
    const failed = queue.run('a', () => Promise.reject(new Error('constraint violated')));
    const next = queue.run('a', () => Promise.resolve('applied'));
    await expect(failed).rejects.toThrow('constraint violated');
    await expect(next).resolves.toBe('applied');
    expect(queue.queued('a')).toBe(0);
  });

  it('refuses a change past the bound with 429 and a Retry-After, without running it, and takes changes again once one ends', async () => {
    const queue = new TenantWriteQueue(2);
    const log: string[] = [];
    const first = gated(log, 'first');
    const second = gated(log, 'second');
    const running = [queue.run('a', first.change), queue.run('a', second.change)];
    let ran = false;
    const refused = await queue.run('a', async () => (ran = true)).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(AppError);
    expect(refused).toMatchObject({ code: 'RATE_LIMITED', retryAfterSeconds: 1 });
    expect(ran).toBe(false);
    // Another tenant is not held to this one's bound.
    await expect(queue.run('b', () => Promise.resolve('other tenant'))).resolves.toBe('other tenant');

    first.finish();
    await settle();
    const third = queue.run('a', () => Promise.resolve('third'));
    second.finish();
    await expect(Promise.all([...running, third])).resolves.toEqual(['first', 'second', 'third']);
  });
});
