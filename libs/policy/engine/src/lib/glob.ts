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
  /**
   * Positions of the automaton the pattern runs (0 for the shapes that compile to string comparisons): what a test
   * costs per subject character, in 32-position words. Policies bound the sum (`MAX_POLICY_AUTOMATON_POSITIONS`).
   */
  readonly automaton: number;
}

export class GlobSyntaxError extends Error {
  constructor(pattern: string, reason: string) {
    super(`invalid glob ${JSON.stringify(pattern)}: ${reason}`);
    this.name = 'GlobSyntaxError';
  }
}

export const MAX_GLOB_LENGTH = 512;
/**
 * The most automaton positions a policy's patterns may have in all (see `Glob.automaton`): with it, a test of every
 * pattern against an 8 KiB URI is a few milliseconds in the worst case, whatever the policy. Patterns of common shapes
 * (`name`, `prefix*`, `*suffix`, `prefix*suffix`) cost none.
 */
export const MAX_POLICY_AUTOMATON_POSITIONS = 4_096;

function tokenize(pattern: string, maxLength: number): Token[] {
  if (pattern.length === 0) throw new GlobSyntaxError(pattern, 'empty pattern');
  if (pattern.length > maxLength) throw new GlobSyntaxError(pattern, `longer than ${maxLength}`);
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

/**
 * Compiles a glob, or throws `GlobSyntaxError`. `maxLength` is for patterns derived from valid ones (case-folded,
 * rewritten for upstream names), which may grow a little past MAX_GLOB_LENGTH.
 */
export function compileGlob(pattern: string, maxLength: number = MAX_GLOB_LENGTH): Glob {
  const tokens = tokenize(pattern, maxLength);
  const [first, second, third] = tokens;
  if (tokens.length === 1 && first?.t === 'lit') {
    const s = first.s;
    return { pattern, literal: s, test: (subject) => subject === s, automaton: 0 };
  }
  if (tokens.length === 1 && first?.t === 'globstar') return { pattern, literal: null, test: () => true, automaton: 0 };
  if (tokens.length === 1 && first?.t === 'star') {
    return { pattern, literal: null, test: (subject) => !subject.includes('/'), automaton: 0 };
  }
  if (tokens.length === 2 && first?.t === 'lit' && (second?.t === 'star' || second?.t === 'globstar')) {
    const prefix = first.s;
    const crossesSlash = second.t === 'globstar';
    return {
      pattern,
      literal: null,
      test: (subject) =>
        subject.startsWith(prefix) && (crossesSlash || !hasSlashFrom(subject, prefix.length, subject.length)),
      automaton: 0,
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
      automaton: 0,
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
      automaton: 0,
    };
  }
  const automaton = nfaMatcher(tokens);
  return { pattern, literal: null, test: automaton.test, automaton: automaton.positions };
}

/**
 * Expands literals to single characters (code points) and simulates all pattern positions at once, bit-parallel
 * (shift-and): the set of live positions is a bit set of 32-bit words, and one subject character costs a few word
 * operations per 32 positions, never a backtrack. With MAX_GLOB_LENGTH positions (16 words), an 8 KiB subject is a
 * few hundred thousand word operations in the worst case; a subject lacking one of the pattern's literal runs is
 * refused before any of that.
 */
function nfaMatcher(tokens: readonly Token[]): { readonly test: (subject: string) => boolean; readonly positions: number } {
  const literals: string[] = [];
  // Position i of the automaton is "before pattern element i"; `size` is the accepting position.
  const elements: ({ readonly kind: 'char'; readonly ch: string } | { readonly kind: Exclude<Token['t'], 'lit'> })[] = [];
  for (const token of tokens) {
    if (token.t === 'lit') {
      literals.push(token.s);
      // Code points, not code units: a `?` must be able to match one astral character.
      for (const ch of token.s) elements.push({ kind: 'char', ch });
    } else elements.push({ kind: token.t });
  }
  const size = elements.length;
  const words = Math.ceil((size + 1) / 32);
  const bit = (set: Uint32Array, at: number) => (set[at >>> 5] = ((set[at >>> 5] ?? 0) | (1 << (at & 31))) >>> 0);
  /** Positions a character equal to the key moves on from (literal characters). */
  const byChar = new Map<string, Uint32Array>();
  const one = new Uint32Array(words);
  const star = new Uint32Array(words);
  const globstar = new Uint32Array(words);
  elements.forEach((element, at) => {
    if (element.kind === 'char') {
      let mask = byChar.get(element.ch);
      if (mask === undefined) byChar.set(element.ch, (mask = new Uint32Array(words)));
      bit(mask, at);
    } else bit(element.kind === 'one' ? one : element.kind === 'star' ? star : globstar, at);
  });
  const wild = star.map((w, i) => w | (globstar[i] ?? 0));
  const none = new Uint32Array(words);
  const accept = size;
  const test = (subject: string): boolean => {
    for (const literal of literals) if (!subject.includes(literal)) return false;
    let current = new Uint32Array(words);
    let next = new Uint32Array(words);
    current[0] = 1;
    closeOver(current, wild, words);
    for (const ch of subject) {
      const moving = byChar.get(ch) ?? none;
      const slash = ch === '/';
      let carry = 0;
      let alive = 0;
      for (let w = 0; w < words; w++) {
        const live = current[w] as number;
        // Positions that consume `ch` and move on (literal equal to it, or `?` if it is not `/`), shifted by one.
        const step = live & ((moving[w] as number) | (slash ? 0 : (one[w] as number)));
        // Wildcards stay where they are: `*` on anything but `/`, `**` on anything.
        const stay = live & ((globstar[w] as number) | (slash ? 0 : (star[w] as number)));
        const value = ((step << 1) | carry | stay) >>> 0;
        carry = step >>> 31;
        next[w] = value;
        alive |= value;
      }
      if (alive === 0) return false;
      closeOver(next, wild, words);
      [current, next] = [next, current];
    }
    return (((current[accept >>> 5] as number) >>> (accept & 31)) & 1) === 1;
  };
  return { test, positions: size + 1 };
}

/** A live wildcard position may match nothing: the position after it is live too (wildcards are never adjacent). */
function closeOver(set: Uint32Array, wild: Uint32Array, words: number): void {
  let carry = 0;
  for (let w = 0; w < words; w++) {
    const live = set[w] as number;
    const from = live & (wild[w] as number);
    set[w] = (live | (from << 1) | carry) >>> 0;
    carry = from >>> 31;
  }
}
