/**
 * A matcher for the URIs an RFC 6570 template can expand to, precise enough for routing a URI to the upstream that
 * listed the template: each `{…}` expression matches any run of characters (possibly empty; none holding `/` where the
 * expression cannot expand to one, see `uriTemplateMatcher`), everything else is literal. Equivalent to the regular expression `^L0.*L1.*…Ln$`, but decided in one left-to-right pass with
 * `indexOf`, so its time is linear in the URI: an agent's URI is matched against upstream-supplied templates, and
 * a backtracking regex there took cubic time (seconds for a URI of a few hundred slashes).
 */
export type UriMatcher = (uri: string) => boolean;

/**
 * One `{…}` expression of a URI template, global (for `replace`; `split` ignores the flag). Without `{` inside it:
 * `\{[^}]*\}` was tried from every `{` of a template of `{`s with no `}` and scanned to its end each time, and 64 such
 * templates of 8 KiB an upstream listed held the event loop 8 s a listing (found by review).
 */
export const TEMPLATE_EXPRESSION = /\{[^{}]*\}/g;

/**
 * Whether some expression of `template` may expand to text holding `/`: reserved (`{+…}`), fragment (`{#…}`) and path
 * (`{/…}`) expansions may (RFC 6570); the others percent-encode it. One with `/` in its name is counted too.
 */
export function crossesSegments(template: string): boolean {
  for (const [expression] of template.matchAll(TEMPLATE_EXPRESSION)) {
    const operator = expression.charAt(1);
    if (operator === '+' || operator === '#' || expression.includes('/')) return true;
  }
  return false;
}

/**
 * A matcher for `template`. Where no expression of it may expand to `/` (`crossesSegments`), a URI matches only segment
 * by segment: as many `/` as the template's text has, each segment matching its own. So `docs://{slug}.md` does not
 * take `docs://guides/intro.md`, which only another upstream's `docs://{+path}` can name (before, the template with the
 * more literal text won it; found by review). Otherwise each expression matches any run of characters.
 */
export function uriTemplateMatcher(template: string): UriMatcher {
  if (!crossesSegments(template)) {
    const segments = template.split('/').map(anyRunMatcher);
    return (uri) => {
      let from = 0;
      for (let index = 0; index < segments.length; index += 1) {
        const last = index === segments.length - 1;
        const to = last ? uri.length : uri.indexOf('/', from);
        if (to === -1 || (last && uri.indexOf('/', from) !== -1)) return false;
        if (!(segments[index] as UriMatcher)(uri.slice(from, to))) return false;
        from = to + 1;
      }
      return true;
    };
  }
  return anyRunMatcher(template);
}

/**
 * `template` with each expression matching any run of characters, `/` included, whatever its operator: for routing a
 * URI no template takes exactly (`uriTemplateMatcher`) to one written loosely (`file:///{path}` for nested paths).
 */
export function anyRunMatcher(template: string): UriMatcher {
  const literals = template.split(TEMPLATE_EXPRESSION);
  if (literals.length === 1) return (uri) => uri === template;
  const head = literals[0] as string;
  const tail = literals[literals.length - 1] as string;
  const middle = literals.slice(1, -1).filter((literal) => literal !== '');
  return (uri) => {
    if (uri.length < head.length + tail.length || !uri.startsWith(head) || !uri.endsWith(tail)) return false;
    const end = uri.length - tail.length;
    let at = head.length;
    // Leftmost placement of each literal leaves the most room for the rest: if it fails, every placement does.
    for (const literal of middle) {
      const found = uri.indexOf(literal, at);
      if (found === -1 || found + literal.length > end) return false;
      at = found + literal.length;
    }
    return true;
  };
}
