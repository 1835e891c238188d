import { describe, expect, it } from 'vitest';
import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { compile } from './compile';
import { upstreamInUse } from './evaluate';
import { tenantSource } from './testing.fixtures';

function snapshot(rules: PolicyRuleSource[], defaultEffect: 'allow' | 'deny' = 'deny') {
  const result = compile(tenantSource(rules, defaultEffect));
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return result.snapshot;
}

const carol = { userId: 'u-carol' };
const alice = { userId: 'u-alice' };
const ci = { agentClientId: 'ac-ci' };
const everyone = [{ type: 'authenticated' as const }];

describe('upstreamInUse', () => {
  it('is true where a grant names something on the upstream, for its subjects only', () => {
    const rules = snapshot([
      { id: 'eng-db', subjects: [{ type: 'group', group: 'engineering' }], targets: [{ kind: 'tool', upstream: 'db', name: 'query' }], effect: 'allow' },
      { id: 'ci-tickets', subjects: [{ type: 'agent_client', agentClientId: 'ac-ci' }], targets: [{ kind: 'prompt', upstream: 'tick*', name: 'triage' }], effect: 'require_approval' },
    ]);
    expect(upstreamInUse(rules, carol, 'db')).toBe(true);
    expect(upstreamInUse(rules, alice, 'db')).toBe(false);
    expect(upstreamInUse(rules, carol, 'tickets')).toBe(false);
    expect(upstreamInUse(rules, ci, 'tickets')).toBe(true);
    expect(upstreamInUse(rules, ci, 'db')).toBe(false);
  });

  it('counts a conditional grant (some arguments, times or addresses may meet it)', () => {
    const rules = snapshot([
      { id: 'small', subjects: everyone, targets: [{ kind: 'tool', upstream: 'db', name: 'query' }], effect: 'allow', condition: 'size(args.sql) < 200' },
    ]);
    expect(upstreamInUse(rules, carol, 'db')).toBe(true);
  });

  it('under a default allow, is false only when unconditional denies close every kind on the upstream', () => {
    const toolsOnly = snapshot([{ id: 'no-db-tools', subjects: everyone, targets: [{ kind: 'tool', upstream: 'db', name: '*' }], effect: 'deny' }], 'allow');
    expect(upstreamInUse(toolsOnly, carol, 'db')).toBe(true);
    const whole = snapshot(
      [
        {
          id: 'no-db',
          subjects: everyone,
          targets: [
            { kind: 'tool', upstream: 'db', name: '*' },
            { kind: 'prompt', upstream: 'db', name: '*' },
            { kind: 'resource', upstream: 'db', uri: '**' },
          ],
          effect: 'deny',
        },
      ],
      'allow',
    );
    expect(upstreamInUse(whole, carol, 'db')).toBe(false);
    expect(upstreamInUse(whole, carol, 'tickets')).toBe(true);
    // A deny by name, or one with a condition, leaves the rest in use.
    const byName = snapshot([{ id: 'no-query', subjects: everyone, targets: [{ kind: 'tool', upstream: '*', name: 'query' }], effect: 'deny' }], 'allow');
    expect(upstreamInUse(byName, carol, 'db')).toBe(true);
  });

  it('lets a whole-kind deny outrank a grant of that kind, but not of another', () => {
    const rules = snapshot([
      { id: 'query', subjects: everyone, targets: [{ kind: 'tool', upstream: 'db', name: 'query' }], effect: 'allow' },
      { id: 'carol-out', subjects: [{ type: 'user', userId: 'u-carol' }], targets: [{ kind: 'tool', upstream: '*', name: '*' }], effect: 'deny' },
    ]);
    expect(upstreamInUse(rules, carol, 'db')).toBe(false);
    expect(upstreamInUse(rules, alice, 'db')).toBe(true);
    const other = snapshot([
      { id: 'prompts', subjects: everyone, targets: [{ kind: 'prompt', upstream: 'db', name: 'explain' }], effect: 'allow' },
      { id: 'carol-out', subjects: [{ type: 'user', userId: 'u-carol' }], targets: [{ kind: 'tool', upstream: '*', name: '*' }], effect: 'deny' },
    ]);
    expect(upstreamInUse(other, carol, 'db')).toBe(true);
  });

  it('is false for a principal with no identity and for an empty default-deny policy', () => {
    expect(upstreamInUse(snapshot([], 'allow'), {}, 'db')).toBe(false);
    expect(upstreamInUse(snapshot([]), carol, 'db')).toBe(false);
    expect(upstreamInUse(snapshot([], 'allow'), carol, 'db')).toBe(true);
  });
});
