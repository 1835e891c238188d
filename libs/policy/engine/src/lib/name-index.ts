import type { Glob } from './glob';

/**
 * Name globs indexed so that finding those that match one subject costs about the subject's length plus what matches,
 * however many patterns of the common shapes there are (docs/policy.md: "Common shapes are free, however many"):
 *
 * - literals are a map;
 * - patterns with one wildcard (`Glob.shape`: `prefix*`, `*suffix`, `prefix*suffix`, `*`, and their `**` forms) sit
 *   in a trie of their prefixes, each node of which holds a trie of the reversed suffixes of the patterns with that
 *   prefix: a subject walks the first along its start and, at each node on the way, the second from its end;
 * - other patterns run an automaton each (the compiler bounds their sum, `MAX_POLICY_AUTOMATON_POSITIONS`) and are
 *   tested one by one.
 *
 * Tries are keyed by UTF-16 code units, as `startsWith` and `endsWith` compare.
 */
export interface NameIndex<T> {
  readonly exact: ReadonlyMap<string, readonly T[]>;
  readonly prefixes: PrefixNode<T>;
  readonly tested: readonly { readonly glob: Glob; readonly values: readonly T[] }[];
}

interface PrefixNode<T> {
  readonly next: Map<number, PrefixNode<T>>;
  /** Patterns whose prefix ends here, by their reversed suffix. */
  suffixes: SuffixNode<T> | null;
}

interface SuffixNode<T> {
  readonly next: Map<number, SuffixNode<T>>;
  /** Values of patterns ending here whose wildcard is `*` (no `/` between prefix and suffix). */
  star: T[] | null;
  /** Values of patterns ending here whose wildcard is `**`. */
  globstar: T[] | null;
}

const newPrefixNode = <T>(): PrefixNode<T> => ({ next: new Map(), suffixes: null });
const newSuffixNode = <T>(): SuffixNode<T> => ({ next: new Map(), star: null, globstar: null });

const append = <T>(list: T[], values: readonly T[]): void => {
  for (const value of values) list.push(value);
};

/** Indexes each glob with its values (a glob listed twice, or two globs of one meaning, keep all their values). */
export function buildNameIndex<T>(globs: Iterable<readonly [Glob, readonly T[]]>): NameIndex<T> {
  const exact = new Map<string, T[]>();
  const prefixes = newPrefixNode<T>();
  const tested: { glob: Glob; values: T[] }[] = [];
  const testedAt = new Map<Glob, T[]>();
  for (const [glob, values] of globs) {
    if (glob.literal !== null) {
      let list = exact.get(glob.literal);
      if (list === undefined) exact.set(glob.literal, (list = []));
      append(list, values);
    } else if (glob.shape !== null) {
      const { prefix, suffix, crossesSlash } = glob.shape;
      let node = prefixes;
      for (let at = 0; at < prefix.length; at++) {
        const code = prefix.charCodeAt(at);
        let next = node.next.get(code);
        if (next === undefined) node.next.set(code, (next = newPrefixNode()));
        node = next;
      }
      let leaf = (node.suffixes ??= newSuffixNode());
      for (let at = suffix.length - 1; at >= 0; at--) {
        const code = suffix.charCodeAt(at);
        let next = leaf.next.get(code);
        if (next === undefined) leaf.next.set(code, (next = newSuffixNode()));
        leaf = next;
      }
      append(crossesSlash ? (leaf.globstar ??= []) : (leaf.star ??= []), values);
    } else {
      let list = testedAt.get(glob);
      if (list === undefined) {
        testedAt.set(glob, (list = []));
        tested.push({ glob, values: list });
      }
      append(list, values);
    }
  }
  return { exact, prefixes, tested };
}

/** Calls `found` with the values of every glob in the index that matches `subject` (a value may come more than once). */
export function matchNameIndex<T>(index: NameIndex<T>, subject: string, found: (values: readonly T[]) => void): void {
  const exact = index.exact.get(subject);
  if (exact !== undefined) found(exact);
  // Prefixes of the subject, shortest first; `from` is where the wildcard's run starts, `slash` the first `/` from there.
  let node: PrefixNode<T> | undefined = index.prefixes;
  let slash = subject.indexOf('/');
  for (let from = 0; node !== undefined; from++) {
    if (slash !== -1 && slash < from) slash = subject.indexOf('/', from);
    if (node.suffixes !== null) matchSuffixes(node.suffixes, subject, from, slash, found);
    if (from === subject.length) break;
    node = node.next.get(subject.charCodeAt(from));
  }
  for (const { glob, values } of index.tested) if (glob.test(subject)) found(values);
}

/**
 * The patterns of one prefix (ending at `from`) whose suffix ends the subject without overlapping the prefix. A `*`
 * matches the run subject[from, end) when it holds no `/`: when `slash`, the first `/` from `from`, is at `end` or later.
 * Each trie node is visited at most once per subject, so a subject costs at most its length plus the policy's pattern
 * characters, whatever it is.
 */
function matchSuffixes<T>(root: SuffixNode<T>, subject: string, from: number, slash: number, found: (values: readonly T[]) => void): void {
  let node: SuffixNode<T> | undefined = root;
  for (let end = subject.length; node !== undefined; end--) {
    if (node.globstar !== null) found(node.globstar);
    if (node.star !== null && (slash === -1 || slash >= end)) found(node.star);
    if (end === from) break;
    node = node.next.get(subject.charCodeAt(end - 1));
  }
}
