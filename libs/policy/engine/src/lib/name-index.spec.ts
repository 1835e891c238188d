import fc from 'fast-check';
import type { IrRule, PolicyEffect, PolicyRuleSource, TargetKind } from '@portcullis/contracts/policy-ir';
import { describe, expect, it } from 'vitest';
import { compile } from './compile';
import { evaluate } from './evaluate';
import { compileGlob, MAX_GLOB_LENGTH, type Glob } from './glob';
import { buildNameIndex, matchNameIndex } from './name-index';
import { canonicalResourcePattern, canonicalResourceUri, isFileUri, namesFragment } from './resource-uri';
import { foldCase, runtimeOf, upstreamPattern } from './runtime';
import { tenantSource } from './testing.fixtures';
import type { DeepReadonly, PolicySnapshot } from './types';

const compiled = (pattern: string): Glob => compileGlob(pattern, 4 * MAX_GLOB_LENGTH);

/** The globs of `patterns` that match `subject`, found through the index. */
function indexed(patterns: readonly string[], subject: string): string[] {
  const index = buildNameIndex(patterns.map((pattern) => [compiled(pattern), [pattern]] as const));
  const found = new Set<string>();
  matchNameIndex(index, subject, (values) => values.forEach((value) => found.add(value)));
  return [...found].sort();
}

describe('name index', () => {
  it('finds each shape as its glob matches it: `*` stops at `/`, `**` does not, prefix and suffix never overlap', () => {
    const patterns = ['a*', 'a**', '*b', '**b', 'a*b', 'a**b', '*', '**', 'ab', 'a?b', 'ab*ab', 'a*/*b'];
    for (const subject of ['ab', 'a/b', 'aab', 'a', 'b', '', 'ab/ab', 'aXb', 'abab', 'a/x/b']) {
      expect(indexed(patterns, subject), subject).toEqual(patterns.filter((pattern) => compiled(pattern).test(subject)).sort());
    }
  });

  it('keeps every value of a glob listed twice or spelled two ways', () => {
    const index = buildNameIndex([
      [compiled('x*'), ['one']],
      [compiled('\\x*'), ['two']],
      [compiled('x*'), ['three']],
    ]);
    const found: string[] = [];
    matchNameIndex(index, 'xy', (values) => found.push(...values));
    expect(found.sort()).toEqual(['one', 'three', 'two']);
  });
});

// Patterns and names from a small alphabet (so that they meet), with `/`, case pairs, letters whose case folding is
// special (`ß`, `ſ`, `ı`, `İ`, the Kelvin sign, composed and decomposed `é`) and an astral character.
const letter = fc.constantFrom('a', 'b', 'A', 'B', '_', '/', '.', 'é', 'É', 'e\u0301', 'ß', 'ſ', 's', 'S', 'K', '\u212A', 'ı', 'i', 'I', 'İ', '😀');
const patternLetter = fc.oneof({ weight: 8, arbitrary: letter }, { weight: 1, arbitrary: fc.constantFrom('\\*', '\\?', '%41', '%2F', '%C3%A9', '%2a') });
const text = (unit: fc.Arbitrary<string>, minLength: number) => fc.array(unit, { minLength, maxLength: 4 }).map((units) => units.join(''));
const wildcard = fc.constantFrom('*', '**');
/** Every shape: literal, `*`/`**` alone, prefix, suffix, prefix and suffix, and patterns that run an automaton. */
const pattern = fc.oneof(
  text(patternLetter, 1),
  wildcard,
  fc.tuple(text(patternLetter, 1), wildcard).map(([prefix, star]) => prefix + star),
  fc.tuple(wildcard, text(patternLetter, 1)).map(([star, suffix]) => star + suffix),
  fc.tuple(text(patternLetter, 1), wildcard, text(patternLetter, 1)).map(([prefix, star, suffix]) => prefix + star + suffix),
  fc.tuple(text(patternLetter, 0), text(patternLetter, 0)).map(([before, after]) => `${before}?${after}`),
  fc.tuple(text(patternLetter, 0), wildcard, text(patternLetter, 1), wildcard, text(patternLetter, 0)).map((parts) => parts.join('')),
);
const scheme = fc.constantFrom('', 'file:///', 'FILE:///', 'fıle:///', 'https://h/', 'x:');
const resourcePattern = fc.tuple(scheme, pattern, fc.constantFrom('', '', '#f', '\\#f')).map((parts) => parts.join(''));
const upstreams = ['up', 'Up', 'a/b', 'upé'];
const upstreamGlob = fc.oneof(fc.constantFrom(...upstreams), pattern, fc.constantFrom('*', '**', 'u*', '*p', 'U?'));
const target = fc.oneof(
  fc.record({ kind: fc.constantFrom('tool' as const, 'prompt' as const), upstream: upstreamGlob, name: pattern }),
  fc.record({ kind: fc.constant('resource' as const), upstream: upstreamGlob, uri: resourcePattern }),
);
const rules = fc
  .array(fc.record({ targets: fc.array(target, { minLength: 1, maxLength: 4 }), effect: fc.constantFrom<PolicyEffect>('allow', 'deny', 'require_approval') }), { minLength: 1, maxLength: 12 })
  .map((bodies) => bodies.map((body, i): PolicyRuleSource => ({ id: `r-${String(i).padStart(2, '0')}`, subjects: [{ type: 'authenticated' }], ...body })));
const nameLetter = fc.oneof({ weight: 8, arbitrary: letter }, { weight: 1, arbitrary: fc.constantFrom('*', '?', '%41', '%2F', '%2A', '#x') });
const probe = fc.record({
  kind: fc.constantFrom<TargetKind>('tool', 'prompt', 'resource'),
  upstream: fc.constantFrom(...upstreams, 'other'),
  name: fc.oneof(text(nameLetter, 1), fc.tuple(scheme, text(nameLetter, 0)).map(([prefix, rest]) => prefix + rest)),
});

/** Whether a rule's target applies to the request, by testing its globs (the engine's matching before the index). */
function naiveMatch(rule: DeepReadonly<IrRule>, kind: TargetKind, upstream: string, name: string): boolean {
  const allow = rule.effect === 'allow';
  const spelling = allow ? (value: string) => value : foldCase;
  return rule.targets.some((target) => {
    if (target.kind !== kind || !compiled(upstreamPattern(target.upstream)).test(upstream)) return false;
    if (kind !== 'resource') return compiled(upstreamPattern(spelling(target.name))).test(spelling(name));
    if (allow && namesFragment(target.name)) return false;
    const uri = spelling(canonicalResourceUri(name));
    const asFile = spelling(canonicalResourcePattern(target.name, true));
    const asOther = spelling(canonicalResourcePattern(target.name, false));
    if (/^file:/i.test(target.name)) return compiled(asFile).test(uri);
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(target.name)) return compiled(asOther).test(uri);
    return compiled(isFileUri(uri) ? asFile : asOther).test(uri);
  });
}

function build(source: PolicyRuleSource[], registry: readonly { kind: TargetKind; upstream: string; name: string }[]): PolicySnapshot | null {
  const policy = tenantSource(source, 'allow');
  const result = compile({
    ...policy,
    upstreams: upstreams.map((name) => ({
      name,
      tools: registry.filter((item) => item.upstream === name && item.name.length > 0).map((item) => ({ kind: item.kind, name: item.name })),
    })),
  }, { complexityBudget: false });
  return result.ok ? result.snapshot : null;
}

/** A name a pattern may match: its wildcards filled in with `filler`, its escapes dropped, in upper case or not. */
function instance(pattern: string, filler: string, upper: boolean): string {
  let out = '';
  for (let at = 0; at < pattern.length; at++) {
    const ch = pattern[at] as string;
    if (ch === '\\') out += pattern[++at] ?? '';
    else if (ch === '*') {
      if (pattern[at + 1] === '*') at++;
      out += filler;
    } else out += ch === '?' ? 'a' : ch;
  }
  return upper ? out.toUpperCase() : out;
}

describe('indexed target matching', () => {
  it('applies exactly the rules a test of every pattern applies, and so decides alike (allow and restrictive, tools, prompts, resources)', () => {
    fc.assert(
      fc.property(rules, fc.array(probe, { minLength: 1, maxLength: 12 }), text(nameLetter, 0), fc.boolean(), (source, random, filler, inRegistry) => {
        // Random names, and names made from the rules' own patterns (most random names match nothing).
        const probes = [
          ...random,
          ...source.flatMap((rule) =>
            rule.targets.flatMap((target) => {
              const name = target.kind === 'resource' ? target.uri : target.name;
              const upstream = upstreams.includes(target.upstream) ? target.upstream : 'up';
              return [false, true].map((upper) => ({ kind: target.kind, upstream, name: instance(name, filler, upper) }));
            }),
          ),
        ];
        const snapshot = build(source, inRegistry ? probes : []);
        fc.pre(snapshot !== null);
        if (snapshot === null) return;
        const runtime = runtimeOf(snapshot);
        for (const { kind, upstream, name } of probes) {
          const expected = snapshot.rules.filter((rule) => naiveMatch(rule, kind, upstream, name));
          const entry = runtime.entryFor(kind, upstream, name);
          expect(entry.authenticated.map((rule) => rule.rule.id).sort(), `${kind} ${upstream} ${name}`).toEqual(expected.map((rule) => rule.id).sort());

          const decision = evaluate(snapshot, { principal: { userId: 'u-carol' }, target: { kind, upstream, name }, arguments: {}, context: { time: '2026-01-01T00:00:00Z', ip: null } });
          const winning = (['deny', 'require_approval', 'allow'] as const).find((effect) => expected.some((rule) => rule.effect === effect));
          expect(decision.effect).toBe(winning ?? 'allow');
          expect(decision.defaulted).toBe(winning === undefined);
          expect(decision.ruleIds).toEqual(expected.filter((rule) => rule.effect === winning).map((rule) => rule.id).sort());
        }
      }),
      { numRuns: 250 },
    );
  }, 60_000);
});
