import { describe, expect, it } from 'vitest';
import { inexactNumberIn, inexactNumbersByElement } from './exact-numbers';

describe('inexactNumberIn', () => {
  it('names a number the parse changes, wherever it is and however it is written', () => {
    expect(inexactNumberIn('{"a":[1,{"b":9007199254740993}]}')).toContain('9007199254740993');
    expect(inexactNumberIn('[-9007199254740993]')).toContain('cannot be passed on exactly');
    // The same integers written with a fraction or an exponent.
    for (const text of ['9007199254740993.0', '9007199254740993e0', '90071992547409930E-1', '9.007199254740993e15', '12345678901234567.0']) {
      expect(inexactNumberIn(`{"n":${text}}`), text).toContain('cannot be passed on exactly');
    }
    expect(inexactNumberIn('{"x":1.00000000000000000001}')).toContain('cannot be passed on exactly');
    // Even the float's own value written out in full: it is passed on as 0.1, another decimal.
    expect(inexactNumberIn('{"x":0.1000000000000000055511151231257827}')).toContain('cannot be passed on exactly');
    expect(inexactNumberIn('{"x":1e400}')).toContain('past the range');
    expect(inexactNumberIn('{"x":-2.5E+308}')).toContain('past the range');
    expect(inexactNumberIn('{"x":1e-400}')).toContain('too small');
    expect(inexactNumberIn(`{"x":${'9'.repeat(400)}}`)).toMatch(/the number 9{40}… is past/);
  });

  it('passes numbers the parse keeps, and anything inside strings', () => {
    for (const text of [
      '{"a":9007199254740991}',
      '[9007199254740992, -9007199254740992]',
      '{"a":1e300,"b":1.5e-300,"c":123.456e-7}',
      '[0e999, 0.0e-999, -0, 0.0000000000000000]',
      '{"a":123456789012345.5,"b":0.1000000000000000}',
      '{"a":100000000000000000000,"b":1.0000000000000000e2,"c":5e-324}',
    ]) {
      expect(inexactNumberIn(text), text).toBeUndefined();
    }
    expect(inexactNumberIn('{"s":"12345678901234567890 1e999","t":"\\\\","u":"a\\"9007199254740993"}')).toBeUndefined();
    // A string ending in an escaped backslash does not swallow the number after it.
    expect(inexactNumberIn('{"s":"x\\\\","n":9007199254740993}')).toContain('9007199254740993');
  });
});

describe('inexactNumbersByElement', () => {
  it('tells which element of a top-level array holds one, and counts a single message as element 0', () => {
    const batch = '[{"id":1,"p":[1,2,{"x":3}]}, {"id":2,"n":9007199254740993}, {"id":"a,b","n":1}, {"id":4,"n":[1e999]}]';
    expect([...(inexactNumbersByElement(batch) ?? new Map()).keys()]).toEqual([1, 3]);
    expect([...(inexactNumbersByElement(' {"a":[1,2],"n":1e999}') ?? new Map()).keys()]).toEqual([0]);
    expect(inexactNumbersByElement('[1,2,3]')).toBeUndefined();
  });

  it('judges a literal with a long inner run of zeros in linear time (a trim by regex took seconds: any body, before any guard)', () => {
    const body = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":1.${'0'.repeat(80_000)}1}}}`;
    const started = performance.now();
    expect(inexactNumbersByElement(body)?.get(0)).toMatch(/cannot be passed on exactly/);
    // A millisecond or two now; 6.7 s before on a slow machine. Generous for a loaded one.
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(inexactNumberIn(`[1${'0'.repeat(40_000)}]`)).toMatch(/past the range/);
    expect(inexactNumberIn(`[1.${'0'.repeat(40_000)}]`)).toBeUndefined();
  });

  it('works out only literals that are themselves suspect, finding each inexact one beside many plain numbers (found by a review)', () => {
    const among = (literal: string) => `{"x":[1,2.5,-3,4e10,0.125],"y":${literal},"z":[6,7]}`;
    for (const literal of ['1e400', '1E+400', '-1e-400', '9007199254740993', '-9007199254740993.0', '0.10000000000000000001', '1.7976931348623159e308']) {
      expect(inexactNumberIn(among(literal)), literal).toBeDefined();
    }
    for (const literal of ['1e40', '1e-40', '123456789012345', '0.1', '-0', '1.7976931348623157e308', '5e-324']) {
      expect(inexactNumberIn(among(literal)), literal).toBeUndefined();
    }
    // One suspect literal anywhere no longer has every other number of a large body worked out: the scan stays within a
    // few times the parse (about twelve times before).
    const body = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"x":[${Array(1_000_000).fill('1').join(',')}],"y":1e400}}}`;
    // Time against the parse's, as the least ratio of up to four rounds (each the fastest of three runs of the two,
    // taken in turn), stopping once under `bound`: a burst of load from other specs slows a round, not all four, while a
    // scan that works out every number is past the bound in each of them.
    const ratio = (a: () => unknown, b: () => unknown, bound: number): number => {
      let least = Infinity;
      for (let round = 0; round < 4 && least >= bound; round++) {
        const best = [Infinity, Infinity];
        for (let i = 0; i < 3; i++) {
          for (const [side, run] of [a, b].entries()) {
            const started = performance.now();
            run();
            best[side] = Math.min(best[side] as number, performance.now() - started);
          }
        }
        least = Math.min(least, (best[1] as number) / (best[0] as number));
      }
      return least;
    };
    expect(ratio(() => JSON.parse(body), () => inexactNumbersByElement(body), 6)).toBeLessThan(6);
    expect(inexactNumbersByElement(body)?.get(0)).toMatch(/1e400/);
    // Nor a body whose every number is long or has an exponent, yet reads back exactly: only literals the parse may
    // change (more than 15 significant digits, or near the float range's ends) are worked out, and those compared digit by
    // digit with what JavaScript writes back (found by re-reviews: 11×, then 8–14× for other spellings).
    for (const literal of ['0.1234567890123456', '1.000000000000000', '1e100', '-12345.678901234500e-20', '0.12345678901234560', '9007199254740992.0', '0.0000001234567890123456', '1e0000001']) {
      const exact = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"x":[${Array(300_000).fill(literal).join(',')}]}}}`;
      expect(inexactNumbersByElement(exact), literal).toBeUndefined();
      expect(ratio(() => JSON.parse(exact), () => inexactNumbersByElement(exact), 8), literal).toBeLessThan(8);
    }
    // Its own bound: the rounds take seconds on a loaded machine (the default 5 s cut it short under the full suite).
  }, 60_000);
});
