import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { describe, expect, it } from 'vitest';
import { compile } from './compile';
import { evaluate, rememberedDecisions } from './evaluate';
import { runtimeOf } from './runtime';
import { tenantSource } from './testing.fixtures';
import type { PolicyInput, PolicySnapshot } from './types';

function build(rules: PolicyRuleSource[]): PolicySnapshot {
  const result = compile(tenantSource(rules, 'deny'));
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return result.snapshot;
}

const rules: PolicyRuleSource[] = [
  {
    id: 'ci-creates',
    subjects: [{ type: 'agent_client', agentClientId: 'ac-ci' }],
    targets: [{ kind: 'tool', upstream: 'tickets', name: 'create_ticket' }],
    effect: 'allow',
    rateLimit: { scope: ['agent_client'], requests: 10, windowSeconds: 60 },
  },
  {
    id: 'small-queries',
    subjects: [{ type: 'authenticated' }],
    targets: [{ kind: 'tool', upstream: 'db', name: 'query' }],
    effect: 'allow',
    condition: 'args.limit <= 100.0',
  },
];

const call = (principal: PolicyInput['principal'], upstream: string, name: string, args: Record<string, unknown> = {}): PolicyInput => ({
  principal,
  target: { kind: 'tool', upstream, name },
  arguments: args,
  context: { time: new Date(), ip: '10.0.0.1' },
});

/**
 * A policy of one rule per condition, each `effect` on tool `db`/<its id>, under `defaultEffect`; `decide` asks about a
 * call of that tool by a user with `args`.
 */
function conditionRules(conditions: Record<string, string>, effect: 'allow' | 'deny', defaultEffect: 'allow' | 'deny') {
  const compiled = compile(
    tenantSource(
      Object.entries(conditions).map(([id, condition]) => ({ id, subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'db', name: id }], effect, condition })),
      defaultEffect,
    ),
  );
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  return (id: string, args: Record<string, unknown>) =>
    evaluate(compiled.snapshot, { principal: { userId: 'u-carol' }, target: { kind: 'tool', upstream: 'db', name: id }, arguments: args, context: { time: new Date(), ip: null } });
}

describe('evaluate: remembered decisions', () => {
  it('answers the same principal and target with the same frozen decision when no applicable rule has a condition', () => {
    const snapshot = build(rules);
    const first = evaluate(snapshot, call({ agentClientId: 'ac-ci' }, 'tickets', 'create_ticket', { title: 'a' }));
    // Other arguments, time and address cannot change an unconditional decision: the same object answers.
    const again = evaluate(snapshot, { ...call({ agentClientId: 'ac-ci' }, 'tickets', 'create_ticket', { title: 'b' }), context: { time: '2030-01-01T00:00:00Z', ip: null } });
    expect(again).toBe(first);
    expect(first).toMatchObject({ effect: 'allow', ruleIds: ['ci-creates'] });
    expect(Object.isFrozen(first) && Object.isFrozen(first.ruleIds) && Object.isFrozen(first.rateLimits) && Object.isFrozen(first.rateLimits[0])).toBe(true);
    expect(() => (first.ruleIds as string[]).push('x')).toThrow(TypeError);
  });

  it('keeps principals, targets and snapshots apart', () => {
    const snapshot = build(rules);
    const ci = evaluate(snapshot, call({ agentClientId: 'ac-ci' }, 'tickets', 'create_ticket'));
    const ide = evaluate(snapshot, call({ agentClientId: 'ac-ide' }, 'tickets', 'create_ticket'));
    const user = evaluate(snapshot, call({ userId: 'u-carol' }, 'tickets', 'create_ticket'));
    const userViaCi = evaluate(snapshot, call({ userId: 'u-carol', agentClientId: 'ac-ci' }, 'tickets', 'create_ticket'));
    const otherTool = evaluate(snapshot, call({ agentClientId: 'ac-ci' }, 'tickets', 'delete_ticket'));
    expect([ci.effect, ide.effect, user.effect, userViaCi.effect, otherTool.effect]).toEqual(['allow', 'deny', 'deny', 'allow', 'deny']);
    expect(new Set([ci, ide, user, userViaCi, otherTool]).size).toBe(5);
    // Targets no rule applies to share the engine's empty entry, but not a decision: the reason names the target.
    const unruled = [call({ agentClientId: 'ac-ci' }, 'db', 'create_ticket'), call({ agentClientId: 'ac-ci' }, 'tickets', 'misc')].map((input) => evaluate(snapshot, input));
    expect(unruled.map((decision) => decision.reason)).toEqual([
      expect.stringContaining('"create_ticket" on upstream "db"'),
      expect.stringContaining('"misc" on upstream "tickets"'),
    ]);
    // A new snapshot (a policy change) decides afresh, with its own version.
    const next = build(rules);
    const fresh = evaluate(next, call({ agentClientId: 'ac-ci' }, 'tickets', 'create_ticket'));
    expect(fresh).not.toBe(ci);
    expect(fresh).toEqual(ci);
  });

  it('remembers at most 10,000 decisions a snapshot, and none for very long target names', () => {
    const snapshot = build(rules);
    const uri = (i: number, length = 20) => ({ ...call({ agentClientId: 'ac-ci' }, 'tickets', 'x'), target: { kind: 'resource' as const, upstream: 'docs', name: `file:///${String(i).padStart(length, '0')}` } });
    const long = evaluate(snapshot, uri(0, 600));
    expect(evaluate(snapshot, uri(0, 600))).not.toBe(long);
    expect(rememberedDecisions(snapshot)).toBe(0);
    for (let i = 0; i < 10_050; i++) evaluate(snapshot, uri(i));
    expect(rememberedDecisions(snapshot)).toBe(10_000);
    // Past the bound, decisions are still right, only computed each time.
    const late = evaluate(snapshot, uri(10_049));
    expect(late).toMatchObject({ effect: 'deny', defaulted: true });
    expect(late.reason).toContain('file:///00000000000000010049');
  });

  it('decides again every time a rule with a condition applies', () => {
    const snapshot = build(rules);
    const small = evaluate(snapshot, call({ agentClientId: 'ac-ci' }, 'db', 'query', { limit: 10 }));
    const large = evaluate(snapshot, call({ agentClientId: 'ac-ci' }, 'db', 'query', { limit: 1_000 }));
    const smallAgain = evaluate(snapshot, call({ agentClientId: 'ac-ci' }, 'db', 'query', { limit: 10 }));
    expect([small.effect, large.effect, smallAgain.effect]).toEqual(['allow', 'deny', 'allow']);
    expect(smallAgain).not.toBe(small);
    expect(Object.isFrozen(large) && Object.isFrozen(large.ruleIds)).toBe(true);
  });

  it('keeps unknown target names in the entry cache only up to 512 characters (the agent chooses their length)', () => {
    // A glob rule applies to any name, so each unknown name gets an entry of its own (not the shared empty one).
    const runtime = runtimeOf(
      build([{ id: 'any-ticket-tool', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'tickets', name: '*' }], effect: 'allow' }]),
    );
    const short = 'not_listed';
    expect(runtime.entryFor('tool', 'tickets', short)).toBe(runtime.entryFor('tool', 'tickets', short));
    const long = 'x'.repeat(513);
    expect(runtime.entryFor('tool', 'tickets', long)).not.toBe(runtime.entryFor('tool', 'tickets', long));
    expect(runtime.entryFor('tool', 'tickets', long)).toEqual(runtime.entryFor('tool', 'tickets', long));
  });

  it('does not run conditions on arguments holding more than 2,000 values: they fail safe, quickly', () => {
    const snapshot = build([
      ...rules,
      {
        id: 'only-allowed-ids',
        subjects: [{ type: 'authenticated' }],
        targets: [{ kind: 'tool', upstream: 'db', name: 'bulk' }],
        effect: 'allow',
        condition: 'has(args.ids) && args.ids.all(x, x in args.allowed)',
      },
    ]);
    const ci = { agentClientId: 'ac-ci', groups: [] };
    // Small enough: the condition runs and allows; exactly 2,000 values still are.
    expect(evaluate(snapshot, call(ci, 'db', 'bulk', { ids: ['a'], allowed: ['a', 'b'] })).effect).toBe('allow');
    // 2 entries, 1 id and 1,997 allowed: 2,000 values.
    const twoThousand = { ids: ['0'], allowed: Array.from({ length: 1_997 }, (_, i) => `${i}`) };
    expect(evaluate(snapshot, call(ci, 'db', 'bulk', twoThousand)).effect).toBe('allow');
    expect(evaluate(snapshot, call(ci, 'db', 'bulk', { ...twoThousand, extra: 1 })).effect).toBe('deny');
    // 64,000 values each side: quadratic in the condition (seconds); refused at once, the allow rule not applied.
    const many = Array.from({ length: 64_000 }, (_, i) => `id-${i}`);
    const started = performance.now();
    const decision = evaluate(snapshot, call(ci, 'db', 'bulk', { ids: many, allowed: many }));
    expect(performance.now() - started).toBeLessThan(500);
    expect(decision.effect).toBe('deny');
    expect(decision.conditionErrors).toEqual([expect.objectContaining({ ruleId: 'only-allowed-ids', countedAsMatched: false, message: expect.stringMatching(/too large for conditions/) })]);
    // Unconditional rules are unaffected by the size of the arguments.
    expect(evaluate(snapshot, call(ci, 'tickets', 'create_ticket', { blob: many })).effect).toBe('allow');
  });

  it('does not run conditions where few values carry much text, each to be taken to every other (seconds): they fail safe', () => {
    const snapshot = build([
      ...rules,
      {
        id: 'words-in-text',
        subjects: [{ type: 'authenticated' }],
        targets: [{ kind: 'tool', upstream: 'db', name: 'search' }],
        effect: 'allow',
        condition: 'has(args.words) && args.words.exists(w, args.text.contains(w))',
      },
    ]);
    const ci = { agentClientId: 'ac-ci', groups: [] };
    // One large value beside a few small ones (a file's content and its path): conditions still run.
    const content = 'lorem ipsum '.repeat(170_000);
    expect(evaluate(snapshot, call(ci, 'db', 'search', { words: ['ipsum'], text: content })).effect).toBe('allow');
    // 1,990 words of 501 characters against 1 MB of text: 10 s of a blocked event loop before the bound.
    const words = Array.from({ length: 1_990 }, (_, i) => `${i}`.padEnd(501, 'w'));
    const started = performance.now();
    const decision = evaluate(snapshot, call(ci, 'db', 'search', { words, text: 'x'.repeat(1_000_000) }));
    expect(performance.now() - started).toBeLessThan(500);
    expect(decision.effect).toBe('deny');
    expect(decision.conditionErrors).toEqual([expect.objectContaining({ ruleId: 'words-in-text', countedAsMatched: false, message: expect.stringMatching(/too large for conditions \(1992 values with \d+ characters of text\)/) })]);
  });

  // A condition can build text before it splits or searches it: `+` inside nested cel.binds copied a 500-character
  // argument 64 times, and the split of that searched through itself took 6 s (2,000 characters: 136 s).
  it('bounds a condition that builds text by the copies it can make: it fails safe, quickly, and runs on small input', () => {
    const condition =
      'has(args.s) && cel.bind(a, args.s + args.s + args.s + args.s, cel.bind(b, a + a + a + a, cel.bind(c, b + b + b + b, c.split("").exists(p, c.contains(p + "!")))))';
    const compiled = compile(
      tenantSource([{ id: 'amplified', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'db', name: 'q' }], effect: 'deny', condition }], 'allow'),
    );
    if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
    const decide = (s: string) =>
      evaluate(compiled.snapshot, { principal: { agentClientId: 'ac-ci' }, target: { kind: 'tool', upstream: 'db', name: 'q' }, arguments: { s }, context: { time: new Date(), ip: '10.0.0.1' } });
    // Three characters: 192 of text, as many values made; the condition runs (no `!` anywhere: it does not apply).
    expect(decide('abc')).toMatchObject({ effect: 'allow', conditionErrors: [] });
    expect(decide('ab!')).toMatchObject({ effect: 'deny', conditionErrors: [] });
    for (const length of [500, 2_000]) {
      const started = performance.now();
      const decision = decide('a'.repeat(length));
      expect(performance.now() - started, `${length} characters`).toBeLessThan(500);
      expect(decision.effect).toBe('deny');
      expect(decision.conditionErrors).toEqual([expect.objectContaining({ ruleId: 'amplified', countedAsMatched: true, message: expect.stringMatching(/for what this condition does with them/) })]);
    }
  });

  // Lists copy as text does: the agent's list copied 16 times and searched per element took 3.9 s for 1,000 numbers
  // (the bound counted the copies' characters only), and a list built from literals alone, 1.5 s with no arguments.
  it('bounds a condition that copies lists by the elements it can make, and refuses one that builds too much of literals', () => {
    const policyWith = (condition: string) =>
      compile(tenantSource([{ id: 'copies', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'db', name: 'q' }], effect: 'deny', condition }], 'allow'));
    const copied = policyWith('has(args.xs) && cel.bind(a, args.xs + args.xs, cel.bind(b, a + a, cel.bind(c, b + b, cel.bind(d, c + c, d.exists(x, -1 in d)))))');
    if (!copied.ok) throw new Error(JSON.stringify(copied.errors));
    const decide = (xs: number[]) =>
      evaluate(copied.snapshot, { principal: { agentClientId: 'ac-ci' }, target: { kind: 'tool', upstream: 'db', name: 'q' }, arguments: { xs }, context: { time: new Date(), ip: null } });
    expect(decide([1, 2, 3])).toMatchObject({ effect: 'allow', conditionErrors: [] });
    expect(decide([1, -1])).toMatchObject({ effect: 'deny', conditionErrors: [] });
    const started = performance.now();
    const big = decide(Array.from({ length: 1_000 }, (_, i) => i));
    expect(performance.now() - started).toBeLessThan(500);
    expect(big).toMatchObject({ effect: 'deny', conditionErrors: [expect.objectContaining({ countedAsMatched: true, message: expect.stringMatching(/for what this condition does with them/) })] });
    const literal = policyWith(
      'cel.bind(a, [0,0,0,0,0,0,0,0], cel.bind(b, a+a+a+a, cel.bind(c, b+b+b+b, cel.bind(d, c+c+c+c, cel.bind(e, d+d+d+d, cel.bind(f, e+e+e+e+e+e+e+e, f.exists(x, -1 in f)))))))',
    );
    expect(literal.ok ? [] : literal.errors.map((error) => error.message)).toEqual([expect.stringMatching(/builds too much out of its literals alone/)]);
  });

  // Found in review: a step may search the largest value many times over (a hundred `in`s in one body ran 100 times the
  // bound, 2.4 s), and a resource's name is seen canonical (a `*` in a `file:` URI is `%2A`, three times as long).
  it('counts every operation a step makes, and the target name as conditions see it', () => {
    const searches = Array.from({ length: 100 }, () => '"z" in l').join(' || ');
    const compiled = compile(
      tenantSource(
        [
          { id: 'no-z', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'docs', name: 'write' }], effect: 'deny', condition: `cel.bind(l, args.s.split(""), l.exists(x, ${searches}))` },
          { id: 'odd-names', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: 'files', uri: '**' }], effect: 'deny', condition: 'cel.bind(l, target.name.split(""), l.exists(x, "z" in l))' },
        ],
        'allow',
      ),
    );
    if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
    const decide = (target: PolicyInput['target'], args: Record<string, unknown>) =>
      evaluate(compiled.snapshot, { principal: { agentClientId: 'ac-ci' }, target, arguments: args, context: { time: new Date(), ip: null } });
    const tooLarge = (decision: ReturnType<typeof decide>) => decision.conditionErrors.some((error) => error.message.startsWith('arguments too large'));
    const started = performance.now();
    expect(tooLarge(decide({ kind: 'tool', upstream: 'docs', name: 'write' }, { s: 'a'.repeat(2_200) }))).toBe(true);
    expect(performance.now() - started).toBeLessThan(500);
    expect(decide({ kind: 'tool', upstream: 'docs', name: 'write' }, { s: 'abc' })).toMatchObject({ effect: 'allow', conditionErrors: [] });
    // 2,208 characters as written, 6,608 as the condition sees them: bounded as the latter.
    expect(tooLarge(decide({ kind: 'resource', upstream: 'files', name: `file:///${'*'.repeat(2_200)}` }, {}))).toBe(true);
    expect(decide({ kind: 'resource', upstream: 'files', name: 'file:///a*b' }, {})).toMatchObject({ effect: 'allow', conditionErrors: [] });
  });

  // Conditions that only read were bounded by values × characters alone, one pass over the text per value: a blocklist
  // of 80 literal terms searched in 4 MB took 2 s, twenty `size()`s a step over 2,000 values 2.1 s, and 120 `in`s of
  // values in values (no characters at all) 1.3 s. A per-user prefix over a batch still runs.
  it('bounds what a reading condition does, by its steps, operations and largest value: it fails safe, quickly', () => {
    const terms = Array.from({ length: 80 }, (_, i) => JSON.stringify(`w${i}x`)).join(', ');
    const conditions: Record<string, string> = {
      blocklist: `![${terms}].exists(w, args.sql.contains(w))`,
      sizes: `args.items.exists(i, ${Array.from({ length: 20 }, () => 'size(args.note) < 0').join(' || ')})`,
      'values-in-values': `cel.bind(y, args.ys, args.xs.exists(x, ${Array.from({ length: 120 }, () => 'x in y').join(' || ')}))`,
      'own-home': 'args.paths.all(p, p.startsWith("/home/" + principal.userId + "/"))',
    };
    const decide = conditionRules(conditions, 'allow', 'deny');
    const heavy: Record<string, Record<string, unknown>> = {
      blocklist: { sql: 'w'.repeat(4_000_000) },
      sizes: { items: Array.from({ length: 1_997 }, (_, i) => i), note: 'a'.repeat(9_990) },
      'values-in-values': { xs: Array.from({ length: 999 }, () => ({})), ys: Array.from({ length: 999 }, () => []) },
    };
    for (const [id, args] of Object.entries(heavy)) {
      const started = performance.now();
      const decision = decide(id, args);
      expect(performance.now() - started, id).toBeLessThan(500);
      expect(decision, id).toMatchObject({ effect: 'deny', conditionErrors: [expect.objectContaining({ ruleId: id, message: expect.stringMatching(/for what this condition does with them/) })] });
    }
    // Within bounds they run, and decide.
    expect(decide('blocklist', { sql: 'SELECT 1' })).toMatchObject({ effect: 'allow', conditionErrors: [] });
    expect(decide('blocklist', { sql: 'SELECT w3x' })).toMatchObject({ effect: 'deny', conditionErrors: [] });
    expect(decide('sizes', { items: [1, 2], note: 'n' })).toMatchObject({ effect: 'deny', conditionErrors: [] });
    const paths = Array.from({ length: 100 }, (_, i) => `/home/u-carol/projects/report-${String(i).padStart(3, '0')}.txt`);
    expect(decide('own-home', { paths })).toMatchObject({ effect: 'allow', conditionErrors: [] });
    expect(decide('own-home', { paths: [...paths, '/home/u-dave/x'] })).toMatchObject({ effect: 'deny', conditionErrors: [] });
  });

  // Found in review: one `in` of a map in a list of maps reads both maps' keys per element (list × map: 6.5 s for ~11 KB
  // under a comprehension), decoding JSON costs far more a character than a comparison (five decodings of 4 MB, 2.8 s),
  // and bytes() of non-ASCII text is up to three bytes a character (the same 4 MB of UTF-8 ran as `€`, not as ASCII).
  it('counts what an `in` compares, heavy decoding, and UTF-8 bytes: each fails safe, quickly', () => {
    const conditions: Record<string, string> = {
      'map-in-maps': 'args.xs.exists(x, args.big in args.list)',
      'maps-bound': `cel.bind(b, args.big, cel.bind(l, args.list, ${Array.from({ length: 90 }, () => '!(b in l)').join(' && ')}))`,
      decoded: Array.from({ length: 5 }, () => 'size(bytes(args.s).json()) == 0').join(' || '),
      'utf8-hex': Array.from({ length: 15 }, () => 'size(bytes(args.s).hex()) == 0').join(' || '),
    };
    const decide = conditionRules(conditions, 'allow', 'deny');
    const mapOf = (keys: number) => Object.fromEntries(Array.from({ length: keys }, (_, i) => [`k${i}`, i]));
    const heavy: Record<string, Record<string, unknown>> = {
      'map-in-maps': { big: mapOf(666), list: Array.from({ length: 666 }, () => ({})), xs: Array.from({ length: 660 }, (_, i) => i) },
      'maps-bound': { big: mapOf(1_000), list: Array.from({ length: 998 }, () => ({})) },
      decoded: { s: `{"a":[${'{},'.repeat(1_333_000)}0]}` },
      'utf8-hex': { s: '€'.repeat(1_333_000) },
    };
    for (const [id, args] of Object.entries(heavy)) {
      const started = performance.now();
      const decision = decide(id, args);
      expect(performance.now() - started, id).toBeLessThan(500);
      expect(decision.conditionErrors, id).toEqual([expect.objectContaining({ ruleId: id, message: expect.stringMatching(/for what this condition does with them/) })]);
    }
    // Small: they run.
    expect(decide('map-in-maps', { big: { a: 1 }, list: [{ a: 1 }], xs: [1] })).toMatchObject({ effect: 'allow', conditionErrors: [] });
    expect(decide('decoded', { s: '{"a":1}' })).toMatchObject({ effect: 'deny', conditionErrors: [] });
    expect(decide('utf8-hex', { s: '€uro' })).toMatchObject({ effect: 'deny', conditionErrors: [] });
  });

  // `split` and `bytes.json` make values out of one string value, which the arguments' count of values did not include:
  // a split string compared with itself element by element took 1 s for 32 KB of arguments and 19 s for 80 KB.
  it('counts each character as a value for a condition that splits or decodes text: it fails safe, quickly', () => {
    const conditions = {
      'split-each-in-text': 'has(args.s) && cel.bind(parts, args.s.split(","), parts.exists(p, args.s.contains(p + ";")))',
      'decoded-in-text': 'has(args.s) && bytes(args.s).json().exists(k, args.s.contains(k + ";"))',
    };
    const decide = conditionRules(conditions, 'deny', 'allow');
    // Small text: the conditions run (and apply where a part is followed by `;`).
    expect(decide('split-each-in-text', { s: 'a,b' })).toMatchObject({ effect: 'allow', conditionErrors: [] });
    expect(decide('split-each-in-text', { s: 'a,a;' })).toMatchObject({ effect: 'deny', conditionErrors: [] });
    expect(decide('decoded-in-text', { s: '{"a":1}' })).toMatchObject({ effect: 'allow', conditionErrors: [] });
    // One string value of 32,000 (or 88,000) characters, within the bound for other conditions (1 value × its characters),
    // each of its 16,000 (8,000) parts searched for through all of it: seconds before the fix.
    const texts = { 'split-each-in-text': 'x,'.repeat(16_000), 'decoded-in-text': JSON.stringify(Object.fromEntries(Array.from({ length: 8_000 }, (_, i) => [`k${i}`, 0]))) };
    for (const [id, text] of Object.entries(texts)) {
      const started = performance.now();
      const decision = decide(id, { s: text });
      expect(performance.now() - started, id).toBeLessThan(500);
      expect(decision.effect, id).toBe('deny');
      expect(decision.conditionErrors, id).toEqual([expect.objectContaining({ ruleId: id, countedAsMatched: true, message: expect.stringMatching(/too large for conditions .*for what this condition does with them/) })]);
    }
  });
});

describe('evaluate: reasons naming a resource', () => {
  it('name a resource URI with its credentials redacted, also when the reason is cut to its bound', () => {
    const uri = 'postgres://app:hunter2secret@db.internal/prod?access_token=tok_abcdef123456';
    // Enough matching rules that the list of their ids alone nearly fills the reason before the URI comes.
    const many: PolicyRuleSource[] = Array.from({ length: 60 }, (_, i) => ({
      id: `allow-db-resources-rule-number-${String(i).padStart(3, '0')}`,
      subjects: [{ type: 'authenticated' }],
      targets: [{ kind: 'resource', upstream: 'db', uri: 'postgres://*' }],
      effect: 'allow',
    }));
    for (const snapshot of [build(many.slice(0, 1)), build(many)]) {
      const decision = evaluate(snapshot, {
        principal: { userId: 'u1', agentClientId: null },
        target: { kind: 'resource', upstream: 'db', name: uri },
        arguments: {},
        context: { time: new Date(), ip: '10.0.0.1' },
      });
      expect(decision.reason).not.toContain('hunter2');
      expect(decision.reason).not.toContain('tok_abcdef');
    }
  });
});
