/**
 * Anchored glob matching without regular expressions, so a hostile subject string cannot trigger
 * catastrophic backtracking (ReDoS).
 *
 * Syntax: `*` any run of characters except `/`; `**` any run including `/`; `?` exactly one character other
 * than `/`; `\x` the literal character x. Everything else is literal, case-sensitive.
 *
 * Common shapes (exact, `*`, `**`, `prefix*`, `*suffix`) compile to string comparisons. Anything else runs a
 * Thompson-style NFA simulation in O(length(subject) x length(pattern)) time, with no backtracking.
 */

type Token =
  | { readonly t: 'lit'; readonly s: string }
  | { readonly t: 'one' }
  | { readonly t: 'star' }
  | { readonly t: 'globstar' };

export interface Glob {
  readonly pattern: string;
  /** The literal string when the pattern has no wildcard (usable as an index key). */
  readonly literal: string | null;
  readonly test: (subject: string) => boolean;
}

export class GlobSyntaxError extends Error {
  constructor(pattern: string, reason: string) {
    super(`invalid glob ${JSON.stringify(pattern)}: ${reason}`);
    this.name = 'GlobSyntaxError';
  }
}

export const MAX_GLOB_LENGTH = 512;

function tokenize(pattern: string): Token[] {
  if (pattern.length === 0) throw new GlobSyntaxError(pattern, 'empty pattern');
  if (pattern.length > MAX_GLOB_LENGTH) throw new GlobSyntaxError(pattern, `longer than ${MAX_GLOB_LENGTH}`);
  const tokens: Token[] = [];
  let literal = '';
  const flush = (): void => {
    if (literal.length > 0) tokens.push({ t: 'lit', s: literal });
    literal = '';
  };
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i] as string;
    if (ch.charCodeAt(0) < 0x20 || ch === '\u007f') throw new GlobSyntaxError(pattern, 'control character');
    if (ch === '\\') {
      const next = pattern[i + 1];
      if (next === undefined) throw new GlobSyntaxError(pattern, 'dangling escape at the end');
      literal += next;
      i++;
    } else if (ch === '*') {
      let run = 1;
      while (pattern[i + run] === '*') run++;
      if (run > 2) throw new GlobSyntaxError(pattern, 'more than two consecutive `*`');
      flush();
      const previous = tokens[tokens.length - 1];
      // `*` next to `**` adds nothing; two wildcards in a row would only slow matching down.
      if (previous?.t === 'globstar' || previous?.t === 'star') {
        throw new GlobSyntaxError(pattern, 'adjacent wildcards (write `**` once)');
      }
      tokens.push(run === 2 ? { t: 'globstar' } : { t: 'star' });
      i += run - 1;
    } else if (ch === '?') {
      flush();
      tokens.push({ t: 'one' });
    } else {
      literal += ch;
    }
  }
  flush();
  return tokens;
}

const hasSlashFrom = (subject: string, from: number, to: number): boolean => {
  const at = subject.indexOf('/', from);
  return at !== -1 && at < to;
};

/** Compiles a glob, or throws `GlobSyntaxError`. */
export function compileGlob(pattern: string): Glob {
  const tokens = tokenize(pattern);
  const [first, second, third] = tokens;
  if (tokens.length === 1 && first?.t === 'lit') {
    const s = first.s;
    return { pattern, literal: s, test: (subject) => subject === s };
  }
  if (tokens.length === 1 && first?.t === 'globstar') return { pattern, literal: null, test: () => true };
  if (tokens.length === 1 && first?.t === 'star') {
    return { pattern, literal: null, test: (subject) => !subject.includes('/') };
  }
  if (tokens.length === 2 && first?.t === 'lit' && (second?.t === 'star' || second?.t === 'globstar')) {
    const prefix = first.s;
    const crossesSlash = second.t === 'globstar';
    return {
      pattern,
      literal: null,
      test: (subject) =>
        subject.startsWith(prefix) && (crossesSlash || !hasSlashFrom(subject, prefix.length, subject.length)),
    };
  }
  if (tokens.length === 2 && second?.t === 'lit' && (first?.t === 'star' || first?.t === 'globstar')) {
    const suffix = second.s;
    const crossesSlash = first.t === 'globstar';
    return {
      pattern,
      literal: null,
      test: (subject) =>
        subject.endsWith(suffix) && (crossesSlash || !hasSlashFrom(subject, 0, subject.length - suffix.length)),
    };
  }
  if (
    tokens.length === 3 &&
    first?.t === 'lit' &&
    third?.t === 'lit' &&
    (second?.t === 'star' || second?.t === 'globstar')
  ) {
    const prefix = first.s;
    const suffix = third.s;
    const crossesSlash = second.t === 'globstar';
    return {
      pattern,
      literal: null,
      test: (subject) =>
        subject.length >= prefix.length + suffix.length &&
        subject.startsWith(prefix) &&
        subject.endsWith(suffix) &&
        (crossesSlash || !hasSlashFrom(subject, prefix.length, subject.length - suffix.length)),
    };
  }
  return { pattern, literal: null, test: nfaMatcher(tokens) };
}

/** Expands literals to single characters and simulates all pattern positions at once. */
function nfaMatcher(tokens: readonly Token[]): (subject: string) => boolean {
  // kinds: 0 = literal char, 1 = one, 2 = star, 3 = globstar
  const kinds: number[] = [];
  const chars: string[] = [];
  for (const token of tokens) {
    if (token.t === 'lit') {
      for (const ch of token.s) {
        // Code points, not code units: a `?` must be able to match one astral character.
        kinds.push(0);
        chars.push(ch);
      }
    } else {
      kinds.push(token.t === 'one' ? 1 : token.t === 'star' ? 2 : 3);
      chars.push('');
    }
  }
  const size = kinds.length;
  const close = (states: Uint8Array): void => {
    for (let i = 0; i < size; i++) if (states[i] === 1 && (kinds[i] ?? 0) >= 2) states[i + 1] = 1;
  };
  return (subject) => {
    let current = new Uint8Array(size + 1);
    let next = new Uint8Array(size + 1);
    current[0] = 1;
    close(current);
    for (const ch of subject) {
      next.fill(0);
      let alive = false;
      for (let i = 0; i < size; i++) {
        if (current[i] !== 1) continue;
        const kind = kinds[i];
        let target: number;
        if (kind === 0) target = chars[i] === ch ? i + 1 : -1;
        else if (kind === 1) target = ch !== '/' ? i + 1 : -1;
        else if (kind === 2) target = ch !== '/' ? i : -1;
        else target = i;
        if (target >= 0) {
          next[target] = 1;
          alive = true;
        }
      }
      if (!alive) return false;
      close(next);
      [current, next] = [next, current];
    }
    return current[size] === 1;
  };
}
