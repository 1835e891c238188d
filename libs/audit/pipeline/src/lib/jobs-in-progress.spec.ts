import type { Worker } from 'bullmq';
import { describe, expect, it, vi } from 'vitest';
import { JobsInProgress } from './jobs-in-progress';

function fakeWorker() {
  const close = vi.fn(async (_force?: boolean) => undefined);
  return { worker: { close } as unknown as Worker, close };
}

describe('JobsInProgress', () => {
  it('closes an idle worker by force: nothing to wait for, and no wait for a Redis connection', async () => {
    const { worker, close } = fakeWorker();
    const jobs = new JobsInProgress();
    await jobs.track(async () => 'done');
    await jobs.close(worker);
    expect(close).toHaveBeenCalledWith(true);
  });

  it('closes gracefully while a job is under way, so that it finishes', async () => {
    const { worker, close } = fakeWorker();
    const jobs = new JobsInProgress();
    let finish!: () => void;
    const job = jobs.track(() => new Promise<void>((resolve) => (finish = resolve)));
    expect(jobs.count).toBe(1);
    await jobs.close(worker);
    expect(close).toHaveBeenCalledWith(false);
    finish();
    await job;
    expect(jobs.count).toBe(0);
  });

  it('stops counting a job that failed', async () => {
    const jobs = new JobsInProgress();
    await expect(jobs.track(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(jobs.count).toBe(0);
  });
});
