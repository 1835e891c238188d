import { POLICY_IR_VERSION } from '@portcullis/contracts/policy-ir';
import { describe, expect, it } from 'vitest';
import { compile } from './compile';
import { evaluate } from './evaluate';
import { SnapshotLoadError } from './runtime';
import { loadSnapshot, serializeSnapshot, snapshotChecksum } from './snapshot';
import { tenantSource } from './testing.fixtures';
import type { PolicyRuleSource, PolicySource, PolicyTarget } from '@portcullis/contracts/policy-ir';

const rules: PolicyRuleSource[] = [
  {
    id: 'r-eng',
    subjects: [{ type: 'group', group: 'engineering' }, { type: 'role', role: 'admin' }],
    targets: [
      { kind: 'tool', upstream: 'tickets', name: '*' },
      { kind: 'tool', upstream: 'db', name: 'query' },
    ],
    effect: 'allow',
    condition: 'size(args) < 10',
    rateLimit: { scope: ['tool', 'user'], requests: 10, windowSeconds: 60 },
  },
  {
    id: 'r-ci',
    subjects: [{ type: 'agent_client', agentClientId: 'ac-ci' }],
    targets: [{ kind: 'tool', upstream: '**', name: 'delete_*' }],
    effect: 'deny',
  },
];

function compiled() {
  const result = compile(tenantSource(rules));
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return result.snapshot;
}

function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed;
  for (let i = out.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2147483648;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** Rebuilds an object with its keys in reverse order, recursively. */
function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(Object.entries(value).reverse().map(([key, child]) => [key, reverseKeys(child)]));
}

describe('snapshot', () => {
  it('is deep-frozen, versioned and checksummed', () => {
    const snapshot = compiled();
    expect(snapshot.irVersion).toBe(POLICY_IR_VERSION);
    expect(snapshot.checksum).toBe(snapshotChecksum(snapshot));
    expect(Object.isFrozen(snapshot)).toBe(true);
    expect(Object.isFrozen(snapshot.rules[0]?.targets[0])).toBe(true);
    expect(() => (snapshot.rules as unknown as unknown[]).push({})).toThrow();
  });

  it('is deterministic: shuffled rules, subjects, targets, directory and key order give the same bytes', () => {
    const reference = serializeSnapshot(compiled());
    for (let seed = 1; seed <= 20; seed++) {
      const base = tenantSource(rules);
      const source = {
        ...base,
        rules: shuffled(base.rules, seed).map((r) => ({
          ...r,
          subjects: shuffled(r.subjects, seed + 1),
          targets: shuffled(r.targets, seed + 2),
          ...(r.rateLimit === undefined ? {} : { rateLimit: { ...r.rateLimit, scope: shuffled(r.rateLimit.scope, seed) } }),
        })),
        directory: {
          members: shuffled(base.directory?.members ?? [], seed),
          groups: shuffled(base.directory?.groups ?? [], seed).map((g) => ({ ...g, members: shuffled(g.members, seed) })),
          agentClients: shuffled(base.directory?.agentClients ?? [], seed),
        },
        upstreams: shuffled(base.upstreams ?? [], seed).map((u) => ({ ...u, tools: shuffled(u.tools ?? [], seed) })),
      };
      const result = compile(reverseKeys(source));
      if (!result.ok) throw new Error(JSON.stringify(result.errors));
      expect(serializeSnapshot(result.snapshot)).toBe(reference);
    }
  });

  it('round-trips through JSON and decides the same way', () => {
    const snapshot = compiled();
    const loaded = loadSnapshot(JSON.stringify(snapshot));
    expect(loaded).toEqual(snapshot);
    const input = {
      principal: { userId: 'u-carol' },
      target: { kind: 'tool' as const, upstream: 'tickets', name: 'create_ticket' },
      arguments: { title: 'x' },
      context: { time: '2026-11-23T10:00:00Z' },
    };
    expect(evaluate(loaded, input)).toEqual(evaluate(snapshot, input));
    expect(evaluate(loaded, input).effect).toBe('allow');
  });

  it('refuses unknown IR versions loudly', () => {
    const json = JSON.parse(serializeSnapshot(compiled())) as Record<string, unknown>;
    for (const irVersion of [2, 0, '1', undefined]) {
      const attempt = () => loadSnapshot({ ...json, irVersion });
      expect(attempt).toThrow(SnapshotLoadError);
      expect(attempt).toThrow(/IR version .* is not supported/);
    }
  });

  it('refuses tampered, malformed and invalid snapshots', () => {
    const json = JSON.parse(serializeSnapshot(compiled())) as { defaultEffect: string; rules: { condition: string | null }[] };
    expect(() => loadSnapshot({ ...json, defaultEffect: 'allow' })).toThrow(/checksum mismatch/);
    expect(() => loadSnapshot('{not json')).toThrow(/not valid JSON/);
    expect(() => loadSnapshot({ ...json, rules: 'nope' })).toThrow(/does not match IR v1/);
    const badCondition = { ...json, rules: json.rules.map((r) => ({ ...r, condition: 'args.x >' })) };
    const forged = { ...badCondition, checksum: snapshotChecksum(badCondition as never) };
    expect(() => loadSnapshot(forged)).toThrow(/invalid condition/);
  });

  it('evaluate refuses plain objects that were not loaded', () => {
    const plain = JSON.parse(serializeSnapshot(compiled()));
    expect(() =>
      evaluate(plain, {
        principal: { userId: 'u-carol' },
        target: { kind: 'tool', upstream: 'db', name: 'query' },
        context: { time: new Date(0) },
      }),
    ).toThrow(/loadSnapshot/);
  });
});

/**
 * A policy well under the control plane's 1 MiB body limit, of 50 deny rules × 200 targets in the glob shapes the docs
 * call free ("Common shapes are free, however many"), for a tenant whose upstreams list 20,000 tools in all (10
 * upstreams × 2,000; the schema allows 20,000 per upstream). Compiling it blocks the control plane; loading it runs
 * synchronously on every gateway replica (SnapshotCache.apply → loadSnapshot), blocking every tenant's calls there. Each
 * used to test every pattern against every tool: 4.5 s or more each.
 */
function bigPolicy(target: (i: number) => PolicyTarget): { source: PolicySource; bodyBytes: number } {
  const upstreams = Array.from({ length: 10 }, (_, u) => ({
    name: `up${u}`,
    tools: Array.from({ length: 2_000 }, (_, i) => ({ kind: 'tool' as const, name: `tool_${i}_name` })),
  }));
  const targets = Array.from({ length: 200 }, (_, i) => target(i));
  const bigRules = Array.from({ length: 50 }, (_, r): PolicyRuleSource => ({ id: `r${r}`, subjects: [{ type: 'authenticated' }], targets, effect: 'deny' }));
  const source: PolicySource = { ...tenantSource(bigRules, 'allow'), upstreams };
  return { source, bodyBytes: JSON.stringify({ defaultEffect: 'allow', rules: bigRules }).length };
}

function timedLoad(source: PolicySource): { compileMs: number; loadMs: number; loaded: ReturnType<typeof loadSnapshot> } {
  let started = performance.now();
  const result = compile(source, { complexityBudget: true });
  const compileMs = performance.now() - started;
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  const text = serializeSnapshot(result.snapshot);
  started = performance.now();
  const loaded = loadSnapshot(JSON.parse(text));
  return { compileMs, loadMs: performance.now() - started, loaded };
}

const denied = (snapshot: ReturnType<typeof loadSnapshot>, upstream: string, name: string): boolean =>
  evaluate(snapshot, { principal: { userId: 'u-carol' }, target: { kind: 'tool', upstream, name }, context: { time: new Date(0) } }).effect === 'deny';

describe('snapshot cost of many free glob shapes (a large registry)', () => {
  // Each took 5 to 8 s when every pattern was tested against every tool, and takes 0.2 to 0.5 s on a quiet machine: the
  // bound leaves room for a busy one (two shared cores ran these at over 1 s).
  const BOUND_MS = 3_000;

  it('compiles and loads 10,000 `*_x<i>` targets on upstream `*` without a test of each pattern against each tool', () => {
    const { source, bodyBytes } = bigPolicy((i) => ({ kind: 'tool', upstream: '*', name: `*_x${i}` }));
    expect(bodyBytes).toBeLessThan(1024 * 1024);
    const { compileMs, loadMs, loaded } = timedLoad(source);
    expect(compileMs).toBeLessThan(BOUND_MS);
    expect(loadMs).toBeLessThan(BOUND_MS);
    expect(denied(loaded, 'up3', 'tool_7_name')).toBe(false);
    expect(denied(loaded, 'up3', 'TOOL_X7')).toBe(true);
  }, 60_000);

  it('does as well with prefixes, prefix and suffix, and many upstream globs', () => {
    const shapes = [
      (i: number): PolicyTarget => ({ kind: 'tool', upstream: `up${i % 10}*`, name: `tool_${i}*` }),
      (i: number): PolicyTarget => ({ kind: 'tool', upstream: '*', name: `t*_y${i}` }),
      (i: number): PolicyTarget => ({ kind: 'tool', upstream: `*${i}`, name: `tool_${i}_**` }),
      (i: number): PolicyTarget => ({ kind: 'resource', upstream: '**', uri: `file:///srv/${i}/*` }),
    ];
    const { source } = bigPolicy((i) => (shapes[i % shapes.length] as (i: number) => PolicyTarget)(i));
    const { compileMs, loadMs, loaded } = timedLoad(source);
    expect(compileMs).toBeLessThan(BOUND_MS);
    expect(loadMs).toBeLessThan(BOUND_MS);
    expect(denied(loaded, 'up0', 'tool_40_name')).toBe(true); // `tool_40*` on `up0*`
    expect(denied(loaded, 'up1', 'tool_40_name')).toBe(false);
    expect(denied(loaded, 'up2', 'Tool_1_Y5')).toBe(true); // `t*_y5`, folded
    expect(denied(loaded, 'up6', 'tool_6_x')).toBe(true); // `tool_6_**` on `*6`
  }, 60_000);
});
