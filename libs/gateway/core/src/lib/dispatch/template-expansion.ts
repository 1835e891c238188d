/**
 * An RFC 6570 URI template filled in with the variables known, for deciding on what a completion names: each `{…}`
 * expression becomes its operator's prefix and separators around the values it has (`{/a,b}` → `/x/y`, `{?q}` →
 * `?q=x`), values inserted as they are (not percent-encoded: policy matches decoded URIs, and an encoded `/` would hide
 * a path from a glob), and an expression with no known value disappears. Unknown variables so leave the URI as short
 * as the template allows, which is what a rule naming a subtree (`repo://acme/**`) is matched against.
 */
const OPERATORS: Readonly<Record<string, { readonly first: string; readonly separator: string; readonly named: boolean }>> = {
  '': { first: '', separator: ',', named: false },
  '+': { first: '', separator: ',', named: false },
  '#': { first: '#', separator: ',', named: false },
  '.': { first: '.', separator: '.', named: false },
  '/': { first: '/', separator: '/', named: false },
  ';': { first: ';', separator: ';', named: true },
  '?': { first: '?', separator: '&', named: true },
  '&': { first: '&', separator: '&', named: true },
};

export function expandKnown(template: string, variables: Readonly<Record<string, string>>): string {
  return template.replace(/\{([^{}]*)\}/g, (_expression, body: string) => {
    const first = body.charAt(0);
    const operator = first !== '' && Object.hasOwn(OPERATORS, first) ? first : '';
    const rule = OPERATORS[operator] as (typeof OPERATORS)[string];
    const parts: string[] = [];
    for (const spec of body.slice(operator.length).split(',')) {
      // `name*` (explode) and `name:3` (prefix) name the variable `name`.
      const name = spec.replace(/\*$/, '').replace(/:\d+$/, '');
      const value = Object.hasOwn(variables, name) ? variables[name] : undefined;
      if (value === undefined) continue;
      parts.push(rule.named ? `${name}=${value}` : value);
    }
    return parts.length === 0 ? '' : rule.first + parts.join(rule.separator);
  });
}
