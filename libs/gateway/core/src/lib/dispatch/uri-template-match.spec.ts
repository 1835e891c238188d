import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expandKnown } from './template-expansion';
import { uriTemplateMatcher } from './uri-template-match';

/**
 * The definition the matcher must agree with: each expression (a `{…}` with no brace inside) is `.*`, the rest literal
 * (a backtracking regex).
 */
function asRegex(template: string): RegExp {
  const escaped = template.replace(/[.*+?^$()|[\]\\]/g, (c) => `\\${c}`);
  return new RegExp(`^${escaped.replace(/\{[^{}]*\}/g, '.*')}$`, 's');
}

describe('uriTemplateMatcher', () => {
  it('matches the expansions of a template and nothing else', () => {
    const matches = uriTemplateMatcher('db://{schema}/{table}/rows');
    expect(matches('db://public/users/rows')).toBe(true);
    expect(matches('db:////rows')).toBe(true); // expressions may expand to nothing, as `.*` did
    expect(matches('db:///rows')).toBe(false);
    expect(matches('db://public/users/rows/7')).toBe(false);
    expect(matches('file://public/users/rows')).toBe(false);
    expect(matches('db://public-users-rows')).toBe(false);
  });

  it('does not let the head and the tail overlap', () => {
    const matches = uriTemplateMatcher('ab{x}ba');
    expect(matches('aba')).toBe(false);
    expect(matches('abba')).toBe(true);
  });

  it('treats a template without expressions as one literal URI, regex characters included', () => {
    const matches = uriTemplateMatcher('file:///a.b?(c)');
    expect(matches('file:///a.b?(c)')).toBe(true);
    expect(matches('file:///aXb?(c)')).toBe(false);
  });

  it('agrees with the regular-expression definition on arbitrary templates and URIs', () => {
    const alphabet = fc.constantFrom('a', 'b', '/', ':', '.', '{x}', '{', '}');
    const template = fc.array(alphabet, { maxLength: 8 }).map((parts) => parts.join(''));
    const uri = fc.array(fc.constantFrom('a', 'b', '/', ':', '.', '{', '}', 'x'), { maxLength: 12 }).map((parts) => parts.join(''));
    fc.assert(
      fc.property(template, uri, (t, u) => {
        expect(uriTemplateMatcher(t)(u)).toBe(asRegex(t).test(u));
      }),
      { numRuns: 3_000 },
    );
  });

  it('decides an adversarial URI in linear time (the regex took cubic time on it)', () => {
    const matches = uriTemplateMatcher('db://{schema}/{table}/{id}/rows');
    const hostile = `db://${'/'.repeat(1_000_000)}`;
    const started = performance.now();
    expect(matches(hostile)).toBe(false);
    expect(matches(`${hostile}/rows`)).toBe(true);
    // Generous bound: the backtracking regex needed ~150 ms for 800 slashes and grows with the cube of the length.
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('reads a template of braces that never close in linear time (an upstream lists them, 8 KiB each)', () => {
    const template = (i: number) => `mem://t/${i}/${'{'.repeat(8_000 - 12)}`;
    const started = performance.now();
    for (let i = 0; i < 64; i += 1) {
      const matches = uriTemplateMatcher(template(i));
      expect(matches(template(i))).toBe(true);
      expect(expandKnown(template(i), { a: 'x' })).toBe(template(i));
    }
    // Milliseconds now; about 4 s before on a slow machine (each `{` scanned to the end). Generous for a loaded one.
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});
