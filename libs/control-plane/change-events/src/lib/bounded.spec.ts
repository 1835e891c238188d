import { describe, expect, it } from 'vitest';
import { withTimeout } from './bounded';

describe('withTimeout', () => {
  it('gives up after the bound without waiting for the promise', async () => {
    const started = Date.now();
    await expect(withTimeout(new Promise(() => undefined), 20, 'slow thing')).rejects.toThrow(/slow thing/);
    expect(Date.now() - started).toBeLessThan(3_000);
    await expect(withTimeout(Promise.resolve(3), 20, 'fast')).resolves.toBe(3);
  });
});
