import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expandKnown } from './template-expansion';
import { anyRunMatcher, crossesSegments, uriTemplateMatcher } from './uri-template-match';

/**
 * The definitions the matchers must agree with (backtracking regexes): each expression (a `{…}` with no brace inside)
 * is `.*` for `anyRunMatcher`, and for `uriTemplateMatcher` too where one may expand to `/`; elsewhere `[^/]*`. The
 * rest is literal.
 */
function asRegex(template: string, loose = false): RegExp {
  const pattern = (text: string, expression: string) =>
    text.replace(/[.*+?^$()|[\]\\]/g, (c) => `\\${c}`).replace(/\{[^{}]*\}/g, expression);
  if (loose || crossesSegments(template)) return new RegExp(`^${pattern(template, '.*')}$`, 's');
  // The path (up to the first `?` or `#`, or a `{?…}`/`{&…}` expression): expressions hold no `/`, `?` or `#`; the query
  // that follows (starting at the URI's first `?` or `#`) is matched as any text.
  let split = template.length;
  for (const match of template.matchAll(/\{[^{}]*\}|[?#]/g)) {
    if (match[0] === '?' || match[0] === '#' || match[0].startsWith('{?') || match[0].startsWith('{&')) {
      split = match.index;
      break;
    }
  }
  return new RegExp(`^${pattern(template.slice(0, split), '[^/?#]*')}(?=[?#]|$)${pattern(template.slice(split), '.*')}$`, 's');
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
    // A simple expression cannot expand to `/` (RFC 6570 encodes it): no nested path in a segment of its own.
    expect(matches('db://public/a/b/rows')).toBe(false);
    expect(anyRunMatcher('db://{schema}/{table}/rows')('db://public/a/b/rows')).toBe(true);
  });

  it('lets reserved, fragment and path expansions take a `/`, and no other (found by review: a simple one took any)', () => {
    expect(uriTemplateMatcher('docs://{slug}.md')('docs://guides/intro.md')).toBe(false);
    expect(uriTemplateMatcher('docs://{slug}.md')('docs://intro.md')).toBe(true);
    expect(uriTemplateMatcher('docs://{+path}')('docs://guides/intro.md')).toBe(true);
    expect(uriTemplateMatcher('docs://x{#part}')('docs://x#a/b')).toBe(true);
    expect(uriTemplateMatcher('repo://x{/path*}')('repo://x/a/b')).toBe(true);
    expect(uriTemplateMatcher('mem://{id}{?fields}')('mem://5?fields=a')).toBe(true);
    // A query may hold `/` as it is (RFC 3986): the segments are the path's only (found by re-review).
    expect(uriTemplateMatcher('kb://search{?q}')('kb://search?q=guides/intro')).toBe(true);
    expect(uriTemplateMatcher('kb://{space}/{page}')('kb://search?q=guides/intro')).toBe(false);
    expect(uriTemplateMatcher('kb://search{?q}')('kb://searchX')).toBe(false);
    expect(uriTemplateMatcher('file:///logs?level={level}')('file:///logs?level=a/b')).toBe(true);
    expect(uriTemplateMatcher('{id}')('a/b')).toBe(false);
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
    const alphabet = fc.constantFrom('a', 'b', '/', ':', '.', '{x}', '{', '}', '?', '{?q}', '{+p}', '#');
    const template = fc.array(alphabet, { maxLength: 8 }).map((parts) => parts.join(''));
    const uri = fc.array(fc.constantFrom('a', 'b', '/', ':', '.', '{', '}', 'x', '?', '#', '='), { maxLength: 12 }).map((parts) => parts.join(''));
    fc.assert(
      fc.property(template, uri, (t, u) => {
        expect(uriTemplateMatcher(t)(u)).toBe(asRegex(t).test(u));
        expect(anyRunMatcher(t)(u)).toBe(asRegex(t, true).test(u));
      }),
      { numRuns: 3_000 },
    );
  });

  it('decides an adversarial URI in linear time (the regex took cubic time on it)', () => {
    const matches = uriTemplateMatcher('db://{schema}/{table}/{id}/rows');
    const loosely = anyRunMatcher('db://{schema}/{table}/{id}/rows');
    const hostile = `db://${'/'.repeat(1_000_000)}`;
    const started = performance.now();
    expect(matches(hostile)).toBe(false);
    expect(matches(`${hostile}/rows`)).toBe(false);
    expect(loosely(hostile)).toBe(false);
    expect(loosely(`${hostile}/rows`)).toBe(true);
    expect(matches(`db://${'a'.repeat(1_000_000)}/b/c/rows`)).toBe(true);
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
