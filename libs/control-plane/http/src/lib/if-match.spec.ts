import { describe, expect, it } from 'vitest';
import { parseIfMatch } from './if-match';

describe('parseIfMatch', () => {
  it('reads the version from a quoted, weak or bare ETag (the first of several headers)', () => {
    expect(parseIfMatch('"3"')).toBe(3);
    expect(parseIfMatch('"0"')).toBe(0);
    expect(parseIfMatch(' W/"12" ')).toBe(12);
    expect(parseIfMatch('7')).toBe(7);
    expect(parseIfMatch(['"5"', '"6"'])).toBe(5);
  });

  it('tells a missing header (undefined) from one that cannot name a version (null)', () => {
    expect(parseIfMatch(undefined)).toBeUndefined();
    expect(parseIfMatch('  ')).toBeUndefined();
    for (const value of ['*', '"abc"', '"1", "2"', '"-1"', '"1234567890"']) expect(parseIfMatch(value), value).toBeNull();
  });
});
