/**
 * Matchers for the URIs an RFC 6570 template can expand to, precise enough for routing a URI to the upstream that
 * listed the template: each `{…}` expression matches a run of characters (possibly empty; in the path, none holding
 * `/` where the expression cannot expand to one, see `uriTemplateMatcher`), everything else is literal. The loose
 * form (`anyRunMatcher`) is the regular expression `^L0.*L1.*…Ln$`, decided in one left-to-right pass with `indexOf`,
 * so its time is linear in the URI: an agent's URI is matched against upstream-supplied templates, and a backtracking
 * regex there took cubic time (seconds for a URI of a few hundred slashes).
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
  if (crossesSegments(template)) return anyRunMatcher(template);
  // Segments only in the path: a query may hold `/` as it is (RFC 3986), so `kb://search{?q}` takes
  // `kb://search?q=guides/intro` (found by re-review: a two-segment template of another upstream took it).
  const split = queryStart(template);
  const segments = template.slice(0, split).split('/').map(anyRunMatcher);
  const query = anyRunMatcher(template.slice(split));
  return (uri) => {
    const end = uriQueryStart(uri);
    let from = 0;
    for (let index = 0; index < segments.length; index += 1) {
      const next = uri.indexOf('/', from);
      const last = index === segments.length - 1;
      if (last ? next !== -1 && next < end : next === -1 || next >= end) return false;
      const to = last ? end : next;
      if (!(segments[index] as UriMatcher)(uri.slice(from, to))) return false;
      from = to + 1;
    }
    return query(uri.slice(end));
  };
}

/** Where a template's query (or fragment) starts: at its first `?` or `#`, or at a `{?…}` or `{&…}` expression. */
function queryStart(template: string): number {
  let at = template.length;
  for (const match of template.matchAll(TEMPLATE_EXPRESSION)) {
    const operator = match[0].charAt(1);
    if (operator === '?' || operator === '&') {
      at = match.index;
      break;
    }
  }
  const literal = template.slice(0, at).replace(TEMPLATE_EXPRESSION, (expression) => ' '.repeat(expression.length)).search(/[?#]/);
  return literal === -1 ? at : literal;
}

/** Where a URI's query (or fragment) starts: its first `?` or `#`, or its end. */
function uriQueryStart(uri: string): number {
  const at = uri.search(/[?#]/);
  return at === -1 ? uri.length : at;
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
