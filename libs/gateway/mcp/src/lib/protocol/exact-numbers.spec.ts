import { describe, expect, it } from 'vitest';
import { inexactNumberIn } from './exact-numbers';

describe('inexactNumberIn', () => {
  it('names a number the parse changes, wherever it is', () => {
    expect(inexactNumberIn('{"a":[1,{"b":9007199254740993}]}')).toContain('9007199254740993');
    expect(inexactNumberIn('[-9007199254740993]')).toContain('cannot be passed on exactly');
    expect(inexactNumberIn('{"x":1e400}')).toContain('past the range');
    expect(inexactNumberIn('{"x":-2.5E+308}')).toContain('past the range');
    expect(inexactNumberIn('{"x":1e-400}')).toContain('too small');
    expect(inexactNumberIn(`{"x":${'9'.repeat(400)}}`)).toMatch(/the number 9{40}… is past/);
  });

  it('passes numbers the parse keeps, and anything inside strings', () => {
    for (const text of ['{"a":9007199254740991}', '[9007199254740992, -9007199254740992]', '{"a":1e300,"b":1.5e-300}', '[0e999, 0.0e-999, -0]', '{"a":123456789012345.5}']) {
      expect(inexactNumberIn(text), text).toBeUndefined();
    }
    expect(inexactNumberIn('{"s":"12345678901234567890 1e999","t":"\\\\","u":"a\\"9007199254740993"}')).toBeUndefined();
    // A string ending in an escaped backslash does not swallow the number after it.
    expect(inexactNumberIn('{"s":"x\\\\","n":9007199254740993}')).toContain('9007199254740993');
  });
});
