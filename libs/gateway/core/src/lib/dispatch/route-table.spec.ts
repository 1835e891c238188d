import { describe, expect, it } from 'vitest';
import { RouteBudget, RouteTable } from './route-table';

const always = () => true;

describe('RouteTable', () => {
  it('drops its oldest routes past its own bounds, counts and characters', () => {
    const table = new RouteTable<string>(3, 10);
    for (const key of ['aa', 'bb', 'cc', 'dd']) table.learn(key, 'u1', always);
    expect([table.get('aa'), table.get('dd'), table.size, table.keyChars]).toEqual([undefined, 'u1', 3, 6]);
    table.learn('eeeeeeee', 'u1', always);
    // 6 + 8 > 10: the oldest go until it fits.
    expect([table.get('bb'), table.get('cc'), table.get('eeeeeeee'), table.keyChars]).toEqual([undefined, undefined, 'u1', 10]);
    table.learn('x'.repeat(11), 'u1', always);
    expect(table.get('x'.repeat(11))).toBeUndefined();
  });
});

describe('RouteBudget', () => {
  it("bounds every table's keys together: of the others, the table that learned least recently gives up its oldest first", () => {
    const budget = new RouteBudget(12);
    const [a, b, c] = [0, 1, 2].map(() => new RouteTable<string>(100, 8, budget)) as [RouteTable<string>, RouteTable<string>, RouteTable<string>];
    a.learn('a1', 'u', always);
    b.learn('b1', 'u', always);
    c.learn('c1', 'u', always);
    a.learn('a2', 'u', always);
    expect(budget.keyChars).toBe(8);
    // b learned least recently: its route goes, and b holds none.
    c.learn('c2345', 'u', always);
    expect([b.get('b1'), a.get('a1'), c.get('c1'), c.get('c2345'), budget.keyChars, budget.holders]).toEqual([undefined, 'u', 'u', 'u', 11, 2]);
    // Now a is the coldest of the others: its oldest goes.
    b.learn('b2', 'u', always);
    expect([a.get('a1'), a.get('a2'), b.get('b2'), budget.keyChars, budget.holders]).toEqual([undefined, 'u', 'u', 11, 3]);
    expect(budget.keyChars).toBe(a.keyChars + b.keyChars + c.keyChars);
  });

  it('takes the learning table\'s own oldest last, gets characters back on delete and clear, and forgets empty tables', () => {
    const budget = new RouteBudget(6);
    const only = new RouteTable<string>(100, 6, budget);
    for (const key of ['k1', 'k2', 'k3', 'k4']) only.learn(key, 'u', always);
    expect([only.get('k1'), only.get('k4'), only.keyChars, budget.keyChars]).toEqual([undefined, 'u', 6, 6]);
    only.delete('k4');
    expect(budget.keyChars).toBe(4);
    only.learn('k9'.repeat(3), 'u', always);
    expect([only.size, budget.keyChars, budget.holders]).toEqual([1, 6, 1]);
    only.clear();
    expect([only.size, budget.keyChars, budget.holders]).toEqual([0, 0, 0]);
    // A key longer than the whole budget is not learned.
    const wide = new RouteTable<string>(100, 100, budget);
    wide.learn('w'.repeat(7), 'u', always);
    expect([wide.size, budget.keyChars]).toEqual([0, 0]);
  });
});

describe('RouteBudget: a cleared table', () => {
  // Found by re-review: a table holding only an empty key (an upstream may list one) stayed among the holders.
  it('is no longer a holder once cleared, whatever its keys', () => {
    const budget = new RouteBudget(1024);
    for (let session = 0; session < 1_000; session += 1) {
      const table = new RouteTable<string>(100, 100, budget);
      table.learn('', 'u', always);
      table.clear();
    }
    expect([budget.keyChars, budget.holders]).toEqual([0, 0]);
  });

  it('tells the table whose route it took for another\'s', () => {
    const budget = new RouteBudget(4);
    let taken = 0;
    const cold = new RouteTable<string>(100, 4, budget, () => (taken += 1));
    const warm = new RouteTable<string>(100, 4, budget, () => (taken += 100));
    cold.learn('c1', 'u', always);
    warm.learn('w1', 'u', always);
    warm.learn('w2', 'u', always);
    expect([cold.size, taken]).toEqual([0, 1]);
  });
});
