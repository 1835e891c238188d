import { describe, expect, it } from 'vitest';
import { retryDelayMs } from './audit-ingest.worker';

describe('retryDelayMs', () => {
  it('doubles from the base per attempt, capped at 60 s, with at most ±20 % jitter', () => {
    const mid = () => 0.5;
    expect([1, 2, 3, 4].map((n) => retryDelayMs(n, 1_000, mid))).toEqual([1_000, 2_000, 4_000, 8_000]);
    expect(retryDelayMs(30, 1_000, mid)).toBe(60_000);
    expect(retryDelayMs(1, 1_000, () => 0)).toBe(800);
    expect(retryDelayMs(1, 1_000, () => 1)).toBe(1_200);
  });
});
