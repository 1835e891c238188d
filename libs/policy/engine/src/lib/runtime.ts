import type { IrRule, MemberRole, PolicyEffect, TargetKind } from '@portcullis/contracts/policy-ir';
import { compileCondition, type ConditionProgram } from './cel';
import { compileGlob, MAX_GLOB_LENGTH, type Glob } from './glob';
import { buildNameIndex, matchNameIndex, type NameIndex } from './name-index';
import { canonicalResourcePattern, canonicalResourceUri, isFileUri, namesFragment } from './resource-uri';
import type { DeepReadonly, PolicySnapshot } from './types';

/**
 * The in-memory form of a snapshot: rules in priority order with precompiled globs and CEL programs, and
 * indexes so a decision touches only the rules that can apply.
 *
 * Index layers:
 * 1. target: spelling (allow rules as written, restrictive ones case-folded) -> kind (resources: `file:` URIs or others,
 *    whose patterns may differ) -> exact upstream name, or the upstream globs that cover it (resolved once per upstream
 *    name) -> a `NameIndex` of the distinct name globs there, each with the rules naming it. Matching a name costs about
 *    its length plus what matches, not one test per pattern: thousands of `*_x1`-style patterns (free of the complexity
 *    budget) against a registry of thousands of tools cost the load no more than their size;
 * 2. per concrete target (kind, upstream, name), a cached `TargetEntry` that partitions the applicable rules by
 *    subject (user id, agent client id, role, group, any authenticated). Entries for every tool in the
 *    snapshot's registry are built when the snapshot loads; others are built on first use (bounded cache).
 */

export const EFFECT_RANK: Readonly<Record<PolicyEffect, number>> = { deny: 0, require_approval: 1, allow: 2 };

export interface RuleRuntime {
  /** Position in priority order (effect rank, then rule id). */
  readonly index: number;
  readonly rank: number;
  readonly rule: DeepReadonly<IrRule>;
  readonly condition: ConditionProgram | null;
}

/** The rules naming each distinct name glob (in priority order); a glob named by many rules is matched once. */
type NameGlobs = Map<Glob, RuleRuntime[]>;

/** Resource patterns may be matched in one form against `file:` URIs and in another against others (resourceGlobs). */
type MatchKind = 'tool' | 'prompt' | 'fileResource' | 'otherResource';

interface KindIndex {
  /** Targets on an upstream named without a wildcard, by that name. */
  readonly byUpstream: ReadonlyMap<string, NameIndex<RuleRuntime>>;
  /** Targets whose upstream is a glob, by distinct upstream glob. */
  readonly anyUpstream: readonly (readonly [Glob, NameGlobs])[];
  /** The index of the `anyUpstream` targets whose glob covers an upstream name, by that name (bounded). */
  readonly covering: Map<string, NameIndex<RuleRuntime>>;
  /** The same indexes by which upstream globs they hold: upstreams covered by the same globs share one (bounded). */
  readonly byCover: Map<string, NameIndex<RuleRuntime>>;
}

export interface TargetEntry {
  readonly authenticated: readonly RuleRuntime[];
  readonly byUser: ReadonlyMap<string, readonly RuleRuntime[]>;
  readonly byClient: ReadonlyMap<string, readonly RuleRuntime[]>;
  readonly byRole: ReadonlyMap<string, readonly RuleRuntime[]>;
  readonly byGroup: ReadonlyMap<string, readonly RuleRuntime[]>;
  /** True when no rule applies to this target at all. */
  readonly empty: boolean;
}

export interface MemberRuntime {
  readonly role: MemberRole;
  readonly groups: readonly string[];
}

export interface Runtime {
  readonly snapshot: PolicySnapshot;
  readonly rules: readonly RuleRuntime[];
  readonly members: ReadonlyMap<string, MemberRuntime>;
  entryFor(kind: TargetKind, upstream: string, name: string): TargetEntry;
}

/** Compiled pieces reused across rules (and between compile and load). */
export interface CompileCaches {
  readonly globs: Map<string, Glob>;
  readonly conditions: Map<string, ConditionProgram>;
}

export const newCaches = (): CompileCaches => ({ globs: new Map(), conditions: new Map() });

export class SnapshotLoadError extends Error {
  constructor(
    readonly code: 'IR_VERSION_UNSUPPORTED' | 'CHECKSUM_MISMATCH' | 'MALFORMED',
    message: string,
  ) {
    super(message);
    this.name = 'SnapshotLoadError';
  }
}

const MAX_LAZY_ENTRIES = 20_000;
/** Longest unknown target name kept in the entry cache (as the decision memo's bound in evaluate.ts). */
const MAX_LAZY_NAME_LENGTH = 512;
/**
 * Upstream names whose covering upstream globs are remembered, and distinct sets of covering globs whose name index is
 * kept, per kind index. Upstream names come from the registry and the tenant's configured upstreams; past the bounds,
 * the globs are tested again (and the index rebuilt) for each new entry.
 */
const MAX_COVERED_UPSTREAMS = 4_096;
const MAX_COVER_INDEXES = 64;
const EMPTY_INDEX: NameIndex<RuleRuntime> = buildNameIndex([]);
const EMPTY_ENTRY: TargetEntry = Object.freeze({
  authenticated: [],
  byUser: new Map(),
  byClient: new Map(),
  byRole: new Map(),
  byGroup: new Map(),
  empty: true,
});

function glob(caches: CompileCaches, pattern: string): Glob {
  let compiled = caches.globs.get(pattern);
  if (compiled === undefined) {
    // Case-folded and upstream forms of a valid pattern may be somewhat longer than the limit the policy was held to.
    compiled = compileGlob(pattern, 4 * MAX_GLOB_LENGTH);
    caches.globs.set(pattern, compiled);
  }
  return compiled;
}

/**
 * An upstream, tool or prompt name glob as matched: those names are not paths (`acme/github` is one name), so a single
 * `*` matches any run of characters, `/` included, as `**` does. Otherwise `upstream: "*"` in a deny rule would skip
 * every upstream whose name has a `/`, and `name: "*"` every tool or prompt whose name has one. Resource URIs keep
 * path semantics.
 */
export function upstreamPattern(pattern: string): string {
  if (!pattern.includes('*')) return pattern;
  let out = '';
  for (let at = 0; at < pattern.length; at++) {
    const ch = pattern[at] as string;
    if (ch === '\\') {
      out += pattern.slice(at, at + 2);
      at += 1;
    } else if (ch === '*') {
      const double = pattern[at + 1] === '*';
      out += '**';
      if (double) at += 1;
    } else out += ch;
  }
  return out;
}

/**
 * Whether a rule's `upstream` glob covers the upstream named `name`, as the runtime matches it (`*` crosses `/`). A
 * pattern that does not compile (never one a policy was saved with) covers the name it spells, and nothing else.
 */
export function upstreamGlobMatches(pattern: string, name: string): boolean {
  try {
    return compileGlob(upstreamPattern(pattern), 4 * MAX_GLOB_LENGTH).test(name);
  } catch {
    return pattern === name;
  }
}

/**
 * A resource rule's URI glob, matched against canonical URIs (resource-uri.ts): the glob `file:` URIs are matched
 * against, and the one other URIs are (`isFileUri` of the URI as matched), or null for none. URIs are matched without
 * their fragment: a deny or require_approval naming one applies to the whole resource (restrictions err wide), an allow
 * naming one matches nothing (cut, it would allow more than it says). A pattern that could match `file:` and other URIs
 * alike gets both canonical forms, each used for its kind of URI; one with a scheme, the form of its scheme for both.
 */
function resourceGlobs(caches: CompileCaches, pattern: string, effect: string): { readonly file: Glob; readonly other: Glob } | null {
  if (namesFragment(pattern) && effect === 'allow') return null;
  const spelling = effect === 'allow' ? (text: string) => text : foldCase;
  const both = (compiled: Glob) => ({ file: compiled, other: compiled });
  try {
    const asFile = spelling(canonicalResourcePattern(pattern, true));
    const asOther = spelling(canonicalResourcePattern(pattern, false));
    if (asFile === asOther) return both(glob(caches, asFile));
    if (/^file:/i.test(pattern)) return both(glob(caches, asFile));
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(pattern)) return both(glob(caches, asOther));
    return { file: glob(caches, asFile), other: glob(caches, asOther) };
  } catch {
    // Canonical forms of a valid glob are valid globs; should one not be, the pattern as written still compiles.
    return both(glob(caches, spelling(pattern)));
  }
}

/** Whether every character is ASCII (where lower case is all folding does). */
const isAscii = (text: string): boolean => {
  for (let at = 0; at < text.length; at++) if (text.charCodeAt(at) > 0x7f) return false;
  return true;
};
const isOneCharacter = (text: string): boolean => {
  const first = text.codePointAt(0);
  return first !== undefined && text.length === (first > 0xffff ? 2 : 1);
};

/**
 * The spelling restrictive rules (deny, require_approval) are matched in: upper and lower case are one, and so are the
 * composed and decomposed forms of an accented letter. An upstream that looks names or paths up case-insensitively
 * runs `Delete_Repo` as `delete_repo`, so a deny written for one spelling must hold for all (restrictions err wide); an
 * allow still names exactly what it allows. Lower case alone is not enough: case-insensitive stores compare in upper
 * case too (NTFS, APFS, `equalsIgnoreCase`), where `ſ` is `S` and `ı` is `I`, which `toLowerCase` leaves alone; and
 * APFS and HFS+ take `é` and `e` + U+0301 as one name. So: NFC, then each character through upper case to lower case
 * (where its upper case is one character), then NFC again (case mapping can leave a sequence decomposed). Folding a
 * glob keeps it a glob: its only special characters (`*`, `?`, `\`) have no case and no decomposition, and no
 * character is folded into several (a `?` stands for what it stood for).
 */
export function foldCase(text: string): string {
  // Names are nearly always ASCII (NFC already), where lower case is all there is to it.
  if (isAscii(text)) return text.toLowerCase();
  const composed = text.normalize('NFC');
  let out = '';
  for (const ch of composed) {
    // One character stays one: `ß` is `SS` in upper case, and a `?` written for `ß` must still match it (restrictions
    // err wide). So through upper case where that keeps one character, else lower case alone, else unchanged (`İ`).
    const upper = ch.toUpperCase();
    const viaUpper = upper.toLowerCase();
    if (isOneCharacter(upper) && isOneCharacter(viaUpper)) out += viaUpper;
    else {
      const lower = ch.toLowerCase();
      out += isOneCharacter(lower) ? lower : ch;
    }
  }
  return out.normalize('NFC');
}

function condition(caches: CompileCaches, source: string): ConditionProgram {
  let program = caches.conditions.get(source);
  if (program === undefined) {
    const result = compileCondition(source);
    if (!result.ok) throw new SnapshotLoadError('MALFORMED', `snapshot has an invalid condition: ${result.message}`);
    program = result.program;
    caches.conditions.set(source, program);
  }
  return program;
}

/** Targets of one spelling and kind as collected: name globs by literal upstream name, and by upstream glob. */
interface KindTargets {
  readonly byUpstream: Map<string, NameGlobs>;
  readonly anyUpstream: Map<Glob, NameGlobs>;
}

function addTarget(targets: KindTargets, upstream: Glob, name: Glob, rule: RuleRuntime): void {
  const literal = upstream.literal;
  let names = literal === null ? targets.anyUpstream.get(upstream) : targets.byUpstream.get(literal);
  if (names === undefined) {
    names = new Map();
    if (literal === null) targets.anyUpstream.set(upstream, names);
    else targets.byUpstream.set(literal, names);
  }
  const rules = names.get(name);
  // Rules are added in priority order, so a rule naming one glob twice (`Foo*` and `foo*`, folded) is the last one.
  if (rules === undefined) names.set(name, [rule]);
  else if (rules[rules.length - 1] !== rule) rules.push(rule);
}

function kindIndex(targets: KindTargets): KindIndex {
  const byUpstream = new Map<string, NameIndex<RuleRuntime>>();
  for (const [upstream, names] of targets.byUpstream) byUpstream.set(upstream, buildNameIndex(names));
  return { byUpstream, anyUpstream: [...targets.anyUpstream], covering: new Map(), byCover: new Map() };
}

/** The name index of the targets whose upstream glob covers `upstream`; each distinct glob is tested once per name. */
function coveringIndex(index: KindIndex, upstream: string): NameIndex<RuleRuntime> {
  if (index.anyUpstream.length === 0) return EMPTY_INDEX;
  const known = index.covering.get(upstream);
  if (known !== undefined) return known;
  const covering: number[] = [];
  index.anyUpstream.forEach(([glob], at) => {
    if (glob.test(upstream)) covering.push(at);
  });
  const cover = covering.join(',');
  let built = index.byCover.get(cover);
  if (built === undefined) {
    const merged = new Map<Glob, RuleRuntime[]>();
    for (const at of covering) {
      for (const [name, rules] of (index.anyUpstream[at] as readonly [Glob, NameGlobs])[1]) {
        const list = merged.get(name);
        merged.set(name, list === undefined ? rules : [...list, ...rules]);
      }
    }
    built = covering.length === 0 ? EMPTY_INDEX : buildNameIndex(merged);
    if (index.byCover.size < MAX_COVER_INDEXES) index.byCover.set(cover, built);
  }
  if (index.covering.size < MAX_COVERED_UPSTREAMS) index.covering.set(upstream, built);
  return built;
}

function pushTo<K>(map: Map<K, RuleRuntime[]>, key: K, rule: RuleRuntime): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [rule]);
  else list.push(rule);
}

export function buildRuntime(snapshot: PolicySnapshot, caches: CompileCaches = newCaches()): Runtime {
  const ordered = snapshot.rules
    .map((rule) => ({ rule, rank: EFFECT_RANK[rule.effect] }))
    .sort((a, b) => a.rank - b.rank || (a.rule.id < b.rule.id ? -1 : a.rule.id > b.rule.id ? 1 : 0));
  const rules: RuleRuntime[] = ordered.map(({ rule, rank }, index) => ({
    index,
    rank,
    rule,
    condition: rule.condition === null ? null : condition(caches, rule.condition),
  }));

  const newKinds = (): Record<MatchKind, KindTargets> => ({
    tool: { byUpstream: new Map(), anyUpstream: new Map() },
    prompt: { byUpstream: new Map(), anyUpstream: new Map() },
    fileResource: { byUpstream: new Map(), anyUpstream: new Map() },
    otherResource: { byUpstream: new Map(), anyUpstream: new Map() },
  });
  // Allow rules, matched against names as spelled; restrictive rules, matched against names in `foldCase`.
  const spelledTargets = newKinds();
  const foldedTargets = newKinds();
  for (const runtimeRule of rules) {
    const effect = runtimeRule.rule.effect;
    const targets = effect === 'allow' ? spelledTargets : foldedTargets;
    for (const target of runtimeRule.rule.targets) {
      const upstream = glob(caches, upstreamPattern(target.upstream));
      if (target.kind === 'resource') {
        const uris = resourceGlobs(caches, target.name, effect);
        if (uris === null) continue;
        addTarget(targets.fileResource, upstream, uris.file, runtimeRule);
        addTarget(targets.otherResource, upstream, uris.other, runtimeRule);
      } else {
        const name = glob(caches, upstreamPattern(effect === 'allow' ? target.name : foldCase(target.name)));
        addTarget(targets[target.kind], upstream, name, runtimeRule);
      }
    }
  }
  const indexes = (targets: Record<MatchKind, KindTargets>): Record<MatchKind, KindIndex> => ({
    tool: kindIndex(targets.tool),
    prompt: kindIndex(targets.prompt),
    fileResource: kindIndex(targets.fileResource),
    otherResource: kindIndex(targets.otherResource),
  });
  const bySpelling = indexes(spelledTargets);
  const byFolded = indexes(foldedTargets);

  const members = new Map<string, MemberRuntime>();
  for (const member of snapshot.directory.members) {
    members.set(member.userId, { role: member.role, groups: member.groups });
  }

  const buildEntry = (kind: TargetKind, upstream: string, name: string): TargetEntry => {
    const applicable = new Set<RuleRuntime>();
    const found = (list: readonly RuleRuntime[]): void => {
      for (const rule of list) applicable.add(rule);
    };
    // Every spelling of one resource URI is matched as one (resource-uri.ts).
    const spelled = kind === 'resource' ? canonicalResourceUri(name) : name;
    for (const [indexes, subject] of [
      [bySpelling, spelled],
      [byFolded, foldCase(spelled)],
    ] as const) {
      const index = indexes[kind === 'resource' ? (isFileUri(subject) ? 'fileResource' : 'otherResource') : kind];
      const named = index.byUpstream.get(upstream);
      if (named !== undefined) matchNameIndex(named, subject, found);
      matchNameIndex(coveringIndex(index, upstream), subject, found);
    }
    if (applicable.size === 0) return EMPTY_ENTRY;

    const sorted = [...applicable].sort((a, b) => a.index - b.index);
    const authenticated: RuleRuntime[] = [];
    const byUser = new Map<string, RuleRuntime[]>();
    const byClient = new Map<string, RuleRuntime[]>();
    const byRole = new Map<string, RuleRuntime[]>();
    const byGroup = new Map<string, RuleRuntime[]>();
    for (const r of sorted) {
      const subjects = r.rule.subjects;
      // A rule for "any authenticated principal" needs no other subject key.
      if (subjects.authenticated) {
        authenticated.push(r);
        continue;
      }
      for (const id of subjects.userIds) pushTo(byUser, id, r);
      for (const id of subjects.agentClientIds) pushTo(byClient, id, r);
      for (const role of subjects.roles) pushTo(byRole, role, r);
      for (const group of subjects.groups) pushTo(byGroup, group, r);
    }
    return { authenticated, byUser, byClient, byRole, byGroup, empty: false };
  };

  // kind -> upstream -> name -> entry
  const entries = new Map<TargetKind, Map<string, Map<string, TargetEntry>>>();
  let lazyEntries = 0;
  const store = (kind: TargetKind, upstream: string, name: string, entry: TargetEntry): void => {
    let byUpstream = entries.get(kind);
    if (byUpstream === undefined) entries.set(kind, (byUpstream = new Map()));
    let byName = byUpstream.get(upstream);
    if (byName === undefined) byUpstream.set(upstream, (byName = new Map()));
    byName.set(name, entry);
  };
  for (const tool of snapshot.registry) store(tool.kind, tool.upstream, tool.name, buildEntry(tool.kind, tool.upstream, tool.name));

  return {
    snapshot,
    rules,
    members,
    entryFor(kind, upstream, name) {
      const cached = entries.get(kind)?.get(upstream)?.get(name);
      if (cached !== undefined) return cached;
      const entry = buildEntry(kind, upstream, name);
      // Unknown targets (an agent can invent resource URIs) are cached up to a bound, then computed each time; a long
      // name never is (the agent chooses its length: 20,000 of them could be gigabytes).
      if (lazyEntries < MAX_LAZY_ENTRIES && name.length <= MAX_LAZY_NAME_LENGTH) {
        lazyEntries++;
        store(kind, upstream, name, entry);
      }
      return entry;
    },
  };
}

// Snapshots are frozen plain data; their runtimes are attached here, so nothing internal leaks into JSON.
const runtimes = new WeakMap<object, Runtime>();

export function attachRuntime(snapshot: PolicySnapshot, runtime: Runtime): void {
  runtimes.set(snapshot, runtime);
}

export function runtimeOf(snapshot: PolicySnapshot): Runtime {
  const runtime = runtimes.get(snapshot);
  if (runtime === undefined) {
    throw new TypeError('not a loaded policy snapshot: obtain it from compile() or loadSnapshot()');
  }
  return runtime;
}
