import { describe, expect, it } from 'vitest';
import { Allowance, Allowances } from './allowance';

describe('Allowance', () => {
  it('gives its burst at once, then refills at its rate, never past the burst', () => {
    const allowance = new Allowance(10, 3, 0);
    expect([allowance.take(0), allowance.take(0), allowance.take(0), allowance.take(0)]).toEqual([true, true, true, false]);
    // 100 ms at 10 a second: one more.
    expect([allowance.take(100), allowance.take(100)]).toEqual([true, false]);
    // An hour later: still only the burst.
    const later = 3_600_000;
    expect([allowance.take(later), allowance.take(later), allowance.take(later), allowance.take(later)]).toEqual([true, true, true, false]);
  });

  it('does not refill when the clock goes back', () => {
    const allowance = new Allowance(10, 1, 1_000);
    expect(allowance.take(1_000)).toBe(true);
    expect(allowance.take(500)).toBe(false);
    expect(allowance.take(600)).toBe(false);
  });

  it('reports what it dropped at most once an interval, and each drop once', () => {
    const allowance = new Allowance(1, 1, 0);
    expect(allowance.droppedToReport(1_000, 0)).toBeUndefined();
    allowance.take(0);
    allowance.take(0);
    allowance.take(0);
    expect(allowance.droppedToReport(1_000, 0)).toBe(2);
    allowance.take(10);
    expect(allowance.droppedToReport(1_000, 10)).toBeUndefined();
    expect(allowance.droppedToReport(1_000, 1_000)).toBe(1);
    expect(allowance.droppedToReport(1_000, 5_000)).toBeUndefined();
  });

  it('says when it is full again', () => {
    const allowance = new Allowance(10, 2, 0);
    allowance.take(0);
    expect(allowance.isFull(50)).toBe(false);
    expect(allowance.isFull(100)).toBe(true);
  });
});

describe('Allowances', () => {
  it('keeps a bucket a key: one key running dry leaves the others theirs', () => {
    const allowances = new Allowances<string>(1, 2);
    expect([allowances.of('a').take(0), allowances.of('a').take(0), allowances.of('a').take(0)]).toEqual([true, true, false]);
    expect(allowances.of('b').take(0)).toBe(true);
  });

  it('forgets keys whose bucket is full once it holds its bound, and keeps those still drawn on', () => {
    const allowances = new Allowances<number>(1, 1, 4);
    allowances.of(0, 0).take(0);
    for (let key = 1; key < 4; key += 1) allowances.of(key, 0);
    expect(allowances.size).toBe(4);
    // Half a second on, key 0's bucket is not full yet: only the three untouched ones go.
    allowances.of(4, 500);
    expect(allowances.size).toBe(2);
    expect(allowances.of(0, 500).take(500)).toBe(false);
  });

  it('grows past its bound while every key is drawing, and prunes again at twice the size', () => {
    const allowances = new Allowances<number>(1, 1, 2);
    for (let key = 0; key < 4; key += 1) allowances.of(key, 0).take(0);
    expect(allowances.size).toBe(4);
    // Ten seconds on, all are full: making the next key (at 4, twice the 2 held at the last prune) forgets them.
    allowances.of(4, 10_000);
    expect(allowances.size).toBe(1);
  });
});
