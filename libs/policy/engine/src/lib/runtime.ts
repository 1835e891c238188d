import type { IrRule, MemberRole, PolicyEffect, TargetKind } from '@portcullis/contracts/policy-ir';
import { compileCondition, type ConditionProgram } from './cel';
import { compileGlob, MAX_GLOB_LENGTH, type Glob } from './glob';
import { canonicalResourcePattern, canonicalResourceUri, isFileUri, namesFragment } from './resource-uri';
import type { DeepReadonly, PolicySnapshot } from './types';

/**
 * The in-memory form of a snapshot: rules in priority order with precompiled globs and CEL programs, and
 * indexes so a decision touches only the rules that can apply.
 *
 * Index layers:
 * 1. target: kind -> exact upstream name (or the list of upstream globs) -> exact tool name (or name globs);
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

interface TargetMatcher {
  readonly rule: RuleRuntime;
  readonly upstream: Glob;
  readonly name: Glob;
}

/**
 * Targets of one bucket sharing an upstream glob and a name glob, tested once for all their rules: a policy naming the
 * same shapes in many rules (50 rules × the same 200 `*_x<i>` targets) costs its distinct globs, not its targets.
 */
interface PatternGroup {
  readonly upstream: Glob;
  readonly name: Glob;
  readonly rules: RuleRuntime[];
}

interface Bucket {
  readonly byName: Map<string, TargetMatcher[]>;
  readonly patterns: PatternGroup[];
  /** `patterns` by `upstream glob \n name glob`, while the runtime is built. */
  readonly groups: Map<string, PatternGroup>;
}

interface KindIndex {
  readonly byUpstream: Map<string, Bucket>;
  /** Targets whose upstream is a glob; their upstream must be tested. */
  readonly anyUpstream: Bucket;
}

export interface TargetEntry {
  readonly authenticated: readonly RuleRuntime[];
  readonly byUser: ReadonlyMap<string, readonly RuleRuntime[]>;
  readonly byClient: ReadonlyMap<string, readonly RuleRuntime[]>;
  readonly byRole: ReadonlyMap<string, readonly RuleRuntime[]>;
  readonly byGroup: ReadonlyMap<string, readonly RuleRuntime[]>;
  /** True when no rule applies to this target at all. */
  readonly empty: boolean;
  /**
   * Allow rules with a rate limit that name this target only in another case (`CREATE_TICKET` for `create_ticket`):
   * they grant nothing here, but their limits count the call (undefined: none). The rate limiter counts every spelling
   * of a name as one (`foldCase`), as an upstream that looks names up case-insensitively runs them as one: without
   * this, another spelling admitted by a broader allow or the default escaped the limit altogether.
   */
  readonly limitsOnly?: TargetEntry;
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
  /** `upstreamGlobMatches` of a rule target's upstream glob, with the glob compiled at load. */
  upstreamMatches(pattern: string, upstream: string): boolean;
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

const NOTHING = (pattern: string): Glob => ({ pattern, literal: null, test: () => false, automaton: 0 });

/**
 * A resource rule's URI glob, matched against canonical URIs (resource-uri.ts). URIs are matched without their
 * fragment: a deny or require_approval naming one applies to the whole resource (restrictions err wide), an allow
 * naming one matches nothing (cut, it would allow more than it says). A pattern that could match `file:` and other URIs alike gets both
 * canonical forms, each used for its kind of URI.
 */
function resourceGlob(caches: CompileCaches, pattern: string, effect: string): Glob {
  if (namesFragment(pattern) && effect === 'allow') return NOTHING(pattern);
  const spelling = effect === 'allow' ? (text: string) => text : foldCase;
  try {
    const asFile = spelling(canonicalResourcePattern(pattern, true));
    const asOther = spelling(canonicalResourcePattern(pattern, false));
    if (asFile === asOther) return glob(caches, asFile);
    if (/^file:/i.test(pattern)) return glob(caches, asFile);
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(pattern)) return glob(caches, asOther);
    const files = glob(caches, asFile);
    const others = glob(caches, asOther);
    return { pattern, literal: null, test: (uri) => (isFileUri(uri) ? files.test(uri) : others.test(uri)), automaton: files.automaton + others.automaton };
  } catch {
    // Canonical forms of a valid glob are valid globs; should one not be, the pattern as written still compiles.
    return glob(caches, spelling(pattern));
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

/**
 * A whole name (or URI) as the widest case-insensitive comparison takes it: `foldCase`, then, past ASCII, through upper
 * case once more, so that `ß` is `ss` and `ﬀ` is `ff` (full case folding: Python's `casefold`, ICU). Not for globs
 * (`foldCase` keeps each character one, for their `?`): restrictions compare a name this way as well, the rate
 * limiter counts its spellings under one key, and tool pinning takes them as one name.
 */
export function foldCaseWide(text: string): string {
  const folded = foldCase(text);
  return isAscii(folded) ? folded : foldCase(folded.toUpperCase());
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

const newBucket = (): Bucket => ({ byName: new Map(), patterns: [], groups: new Map() });

function addToBucket(bucket: Bucket, matcher: TargetMatcher): void {
  if (matcher.name.literal !== null) {
    const list = bucket.byName.get(matcher.name.literal);
    if (list === undefined) bucket.byName.set(matcher.name.literal, [matcher]);
    else list.push(matcher);
  } else {
    const key = `${matcher.upstream.pattern}\n${matcher.name.pattern}`;
    const group = bucket.groups.get(key);
    if (group === undefined) {
      const created: PatternGroup = { upstream: matcher.upstream, name: matcher.name, rules: [matcher.rule] };
      bucket.groups.set(key, created);
      bucket.patterns.push(created);
    } else if (group.rules.at(-1) !== matcher.rule) {
      group.rules.push(matcher.rule);
    }
  }
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

  const newKinds = (): Record<TargetKind, KindIndex> => ({
    tool: { byUpstream: new Map(), anyUpstream: newBucket() },
    prompt: { byUpstream: new Map(), anyUpstream: newBucket() },
    resource: { byUpstream: new Map(), anyUpstream: newBucket() },
  });
  // Allow rules, matched against names as spelled; restrictive rules, matched against names in `foldCase`; allow rules
  // with a rate limit once more in `foldCase`, for their limits alone (`TargetEntry.limitsOnly`).
  const bySpelling = newKinds();
  const byFolded = newKinds();
  const limitsFolded = newKinds();
  // Each target's upstream glob as written -> compiled (the matchers' own). `upstreamInUse` asks, for every upstream
  // message outside a call, about each target of each rule: compiled anew each time, 10,000 targets cost 3.9 ms.
  const upstreamGlobs = new Map<string, Glob>();
  const place = (index: KindIndex, matcher: TargetMatcher): void => {
    if (matcher.upstream.literal === null) {
      addToBucket(index.anyUpstream, matcher);
      return;
    }
    let bucket = index.byUpstream.get(matcher.upstream.literal);
    if (bucket === undefined) {
      bucket = newBucket();
      index.byUpstream.set(matcher.upstream.literal, bucket);
    }
    addToBucket(bucket, matcher);
  };
  for (const runtimeRule of rules) {
    const effect = runtimeRule.rule.effect;
    for (const target of runtimeRule.rule.targets) {
      let name: Glob;
      if (target.kind === 'resource') name = resourceGlob(caches, target.name, effect);
      else name = glob(caches, upstreamPattern(effect === 'allow' ? target.name : foldCase(target.name)));
      const matcher: TargetMatcher = { rule: runtimeRule, upstream: glob(caches, upstreamPattern(target.upstream)), name };
      upstreamGlobs.set(target.upstream, matcher.upstream);
      place((effect === 'allow' ? bySpelling : byFolded)[target.kind], matcher);
      // A limit is a restriction, and restrictions err wide: its allow's target in `foldCase` too (an allow naming a
      // URI fragment matches nothing, its limit nothing either).
      if (effect === 'allow' && runtimeRule.rule.rateLimit !== null && !(target.kind === 'resource' && namesFragment(target.name))) {
        const folded = target.kind === 'resource' ? resourceGlob(caches, target.name, 'deny') : glob(caches, upstreamPattern(foldCase(target.name)));
        place(limitsFolded[target.kind], { ...matcher, name: folded });
      }
    }
  }

  const members = new Map<string, MemberRuntime>();
  for (const member of snapshot.directory.members) {
    members.set(member.userId, { role: member.role, groups: member.groups });
  }

  const buildEntry = (kind: TargetKind, upstream: string, name: string): TargetEntry => {
    const applicable = new Set<RuleRuntime>();
    // Every spelling of one resource URI is matched as one (resource-uri.ts).
    const spelled = kind === 'resource' ? canonicalResourceUri(name) : name;
    const folded = foldCase(spelled);
    const scan = (into: Set<RuleRuntime>, index: KindIndex, subject: string): void => {
      for (const [bucket, testUpstream] of [
        [index.byUpstream.get(upstream), false],
        [index.anyUpstream, true],
      ] as const) {
        if (bucket === undefined) continue;
        const exact = bucket.byName.get(subject);
        if (exact !== undefined) {
          for (const m of exact) if (!testUpstream || m.upstream.test(upstream)) into.add(m.rule);
        }
        for (const group of bucket.patterns) {
          if ((!testUpstream || group.upstream.test(upstream)) && group.name.test(subject)) for (const rule of group.rules) into.add(rule);
        }
      }
    };
    scan(applicable, bySpelling[kind], spelled);
    scan(applicable, byFolded[kind], folded);
    // Past ASCII, restrictions also take the name as a full case fold would (Python's `casefold`, ICU; tool pinning's
    // spelling): `oﬀboard` and `straße` are `offboard` and `strasse` to an upstream that folds names so. `foldCase`
    // keeps each character one for its globs' `?`; here the whole name is compared once more, the wider way.
    const wide = isAscii(folded) ? folded : foldCaseWide(folded);
    if (wide !== folded) scan(applicable, byFolded[kind], wide);
    const limits = new Set<RuleRuntime>();
    scan(limits, limitsFolded[kind], folded);
    if (wide !== folded) scan(limits, limitsFolded[kind], wide);
    for (const rule of applicable) limits.delete(rule);
    if (applicable.size === 0 && limits.size === 0) return EMPTY_ENTRY;
    const entry = grouped(applicable);
    return limits.size === 0 ? entry : { ...entry, limitsOnly: grouped(limits) };
  };

  /** `rules` by the subjects they name, each list in priority order. */
  const grouped = (rules: ReadonlySet<RuleRuntime>): TargetEntry => {
    if (rules.size === 0) return EMPTY_ENTRY;
    const sorted = [...rules].sort((a, b) => a.index - b.index);
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
  // The registry's entries are made when first asked for, and kept: made at load, every name of a large registry was
  // matched against every pattern while the event loop waited (seconds, on every replica, at each snapshot change).
  const registered = new Set(snapshot.registry.map((tool) => `${tool.kind}\n${tool.upstream}\n${tool.name}`));

  return {
    snapshot,
    rules,
    members,
    entryFor(kind, upstream, name) {
      const cached = entries.get(kind)?.get(upstream)?.get(name);
      if (cached !== undefined) return cached;
      const entry = buildEntry(kind, upstream, name);
      if (registered.has(`${kind}\n${upstream}\n${name}`)) {
        store(kind, upstream, name, entry);
        return entry;
      }
      // Unknown targets (an agent can invent resource URIs) are cached up to a bound, then computed each time; a long
      // name never is (the agent chooses its length: 20,000 of them could be gigabytes).
      if (lazyEntries < MAX_LAZY_ENTRIES && name.length <= MAX_LAZY_NAME_LENGTH) {
        lazyEntries++;
        store(kind, upstream, name, entry);
      }
      return entry;
    },
    upstreamMatches(pattern, upstream) {
      // Held in memory as long as the snapshot is, as the matchers are: a memo of answers per upstream name grew with
      // upstreams × globs (hundreds of megabytes for a policy the limits allow).
      const compiled = upstreamGlobs.get(pattern);
      return compiled === undefined ? upstreamGlobMatches(pattern, upstream) : compiled.test(upstream);
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
