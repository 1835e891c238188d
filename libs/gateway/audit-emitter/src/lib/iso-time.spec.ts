import { describe, expect, it } from 'vitest';
import { isoTime } from './iso-time';

describe('isoTime', () => {
  it('writes what toISOString writes, across milliseconds, seconds, days and years', () => {
    const samples = [0, 1, 9, 10, 99, 100, 999, 1_000, 1_001, 59_999, 60_000, 86_399_999, 86_400_000, Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2027, 0, 1)];
    // Times in order and out of order, so the cached second is both kept and replaced.
    let t = Date.UTC(2026, 11, 3, 3, 30, 0, 0);
    for (let index = 0; index < 2_000; index += 1) {
      t += (index * 7_919) % 1_337;
      samples.push(t, t - 86_400_000 * (index % 3));
    }
    for (const ms of samples) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
  });

  it('hands times outside the four-digit years, and fractions, to toISOString', () => {
    for (const ms of [-1, -62_198_755_200_000, 253_402_300_799_999, 253_402_300_800_000, 1.5]) {
      expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    }
  });
});
