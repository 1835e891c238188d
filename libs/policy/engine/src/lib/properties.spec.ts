import fc from 'fast-check';
import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { describe, expect, it } from 'vitest';
import { compile } from './compile';
import { evaluate, visibleTools } from './evaluate';
import { tenantSource } from './testing.fixtures';
import type { PolicyInput, PolicySnapshot } from './types';

const subject = fc.constantFrom(
  { type: 'authenticated' as const },
  { type: 'group' as const, group: 'engineering' },
  { type: 'group' as const, group: 'support' },
  { type: 'role' as const, role: 'admin' as const },
  { type: 'role' as const, role: 'member' as const },
  { type: 'user' as const, userId: 'u-carol' },
  { type: 'agent_client' as const, agentClientId: 'ac-ci' },
);
const target = fc.record({
  kind: fc.constant('tool' as const),
  upstream: fc.constantFrom('tickets', 'db', '*', '**', 't*'),
  name: fc.constantFrom('*', 'create_ticket', 'delete_*', '?uery', '**'),
});
// Includes conditions that fail to evaluate (`args.missing`) for arguments without that key.
const condition = fc.option(fc.constantFrom('args.n > 5.0', 'has(args.n)', 'args.missing == 1.0', 'true', 'false'), {
  nil: undefined,
});
const ruleBody = fc.record({
  subjects: fc.array(subject, { minLength: 1, maxLength: 3 }),
  targets: fc.array(target, { minLength: 1, maxLength: 2 }),
  effect: fc.constantFrom('allow' as const, 'deny' as const, 'require_approval' as const),
  condition,
});
const ruleSet = fc
  .array(ruleBody, { maxLength: 12 })
  .map((bodies) => bodies.map((body, i): PolicyRuleSource => ({ id: `r-${String(i).padStart(2, '0')}`, ...body })));
const input: fc.Arbitrary<PolicyInput> = fc.record({
  principal: fc.constantFrom(
    { userId: 'u-carol' },
    { userId: 'u-bob' },
    { userId: 'u-alice', agentClientId: 'ac-ide' },
    { agentClientId: 'ac-ci' },
    { userId: 'u-stranger' },
  ),
  target: fc.record({
    kind: fc.constant('tool' as const),
    upstream: fc.constantFrom('tickets', 'db', 'other'),
    name: fc.constantFrom('create_ticket', 'delete_ticket', 'query', 'misc'),
  }),
  arguments: fc.constantFrom({}, { n: 3 }, { n: 9 }, { n: 'x' }),
  context: fc.constant({ time: '2026-11-23T10:00:00Z', ip: '10.0.0.1' }),
});
const defaultEffect = fc.constantFrom('allow' as const, 'deny' as const);

function build(rules: PolicyRuleSource[], effect: 'allow' | 'deny'): PolicySnapshot {
  const result = compile(tenantSource(rules, effect));
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return result.snapshot;
}

describe('policy properties', () => {
  it('deny overrides: an unconditional deny matching the request wins over any rule set', () => {
    fc.assert(
      fc.property(ruleSet, input, defaultEffect, (rules, request, fallback) => {
        const deny: PolicyRuleSource = {
          id: 'z-deny',
          subjects: [{ type: 'authenticated' }],
          targets: [{ kind: 'tool', upstream: request.target.upstream, name: request.target.name }],
          effect: 'deny',
        };
        const decision = evaluate(build([...rules, deny], fallback), request);
        expect(decision.effect).toBe('deny');
        expect(decision.ruleIds).toContain('z-deny');
      }),
      { numRuns: 300 },
    );
  });

  it('adding an allow rule never turns an allow into something else, nor relaxes a rule-based deny', () => {
    fc.assert(
      fc.property(ruleSet, ruleBody, input, defaultEffect, (rules, extra, request, fallback) => {
        const before = evaluate(build(rules, fallback), request);
        const after = evaluate(build([...rules, { id: 'z-extra', ...extra, effect: 'allow' }], fallback), request);
        if (before.effect === 'allow') expect(after.effect).toBe('allow');
        if (!before.defaulted && before.effect !== 'allow') expect(after.effect).toBe(before.effect);
      }),
      { numRuns: 300 },
    );
  });

  it('evaluate is pure: same inputs give equal decisions, inputs are not mutated, order of calls is irrelevant', () => {
    fc.assert(
      fc.property(ruleSet, fc.array(input, { minLength: 2, maxLength: 6 }), defaultEffect, (rules, requests, fallback) => {
        const snapshot = build(rules, fallback);
        const frozen = requests.map((r) => structuredClone(r));
        const first = requests.map((r) => evaluate(snapshot, r));
        const reversed = [...requests].reverse().map((r) => evaluate(snapshot, r)).reverse();
        expect(reversed).toEqual(first);
        expect(requests).toEqual(frozen);
        // A freshly compiled snapshot (cold caches) agrees too.
        expect(requests.map((r) => evaluate(build(rules, fallback), r))).toEqual(first);
      }),
      { numRuns: 150 },
    );
  });

  it('visibleTools never hides a tool that some request could call', () => {
    fc.assert(
      fc.property(ruleSet, input, defaultEffect, (rules, request, fallback) => {
        const snapshot = build(rules, fallback);
        const decision = evaluate(snapshot, request);
        const listed = visibleTools(snapshot, request.principal, [request.target]);
        if (decision.effect !== 'deny') expect(listed).toEqual([request.target]);
      }),
      { numRuns: 300 },
    );
  });
});
