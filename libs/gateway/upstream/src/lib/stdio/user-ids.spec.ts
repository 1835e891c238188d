import { describe, expect, it } from 'vitest';
import { StdioUserIds } from './user-ids';

describe('StdioUserIds', () => {
  it('hands out each id of the range once, group the same number, round the range so a freed id is taken last', () => {
    const ids = new StdioUserIds(10, 12);
    const [a, b, c] = [ids.take(), ids.take(), ids.take()];
    expect([a, b, c]).toEqual([{ uid: 10, gid: 10 }, { uid: 11, gid: 11 }, { uid: 12, gid: 12 }]);
    expect(ids.take()).toBeUndefined();
    expect(ids.inUse).toBe(3);
    ids.give({ uid: 11, gid: 11 });
    ids.give({ uid: 10, gid: 10 });
    // The cursor is past 12: 10 comes round first, then 11; nothing else is free.
    expect(ids.take()).toEqual({ uid: 10, gid: 10 });
    expect(ids.take()).toEqual({ uid: 11, gid: 11 });
    expect(ids.take()).toBeUndefined();
  });

  it('refuses a range that includes root or runs backwards', () => {
    expect(() => new StdioUserIds(0, 5)).toThrow(RangeError);
    expect(() => new StdioUserIds(5, 4)).toThrow(RangeError);
    expect(new StdioUserIds(7, 7).size).toBe(1);
  });
});
