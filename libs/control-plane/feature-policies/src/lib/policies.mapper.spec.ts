import { describe, expect, it } from 'vitest';
import { parseIfMatch } from '@portcullis/control-plane/http';
import { policyEtag, toRuleRow, toRuleSource, type RuleRow } from './policies.mapper';

describe('ETags', () => {
  it('are the quoted policy version, which If-Match parses back', () => {
    expect(policyEtag(3)).toBe('"3"');
    expect(parseIfMatch(policyEtag(3))).toBe(3);
  });
});

describe('rules as rows', () => {
  it('round-trip through the stored form (the rule id is the row name, order is the position)', () => {
    const rule = {
      id: 'r-1',
      description: 'tickets for engineering',
      enabled: false,
      subjects: [{ type: 'group' as const, group: 'eng' }],
      targets: [{ kind: 'tool' as const, upstream: 'tickets', name: '*' }],
      effect: 'require_approval' as const,
      condition: 'args.priority == "high"',
      rateLimit: { scope: ['user' as const], requests: 5, windowSeconds: 60 },
    };
    const row = toRuleRow(rule, 1);
    expect(row).toMatchObject({ position: 1, name: 'r-1', enabled: false });
    const { position: _position, ...stored } = row;
    // What Postgres hands back: the JSON columns as plain JSON.
    const read = JSON.parse(JSON.stringify({ ...stored, rateLimit: rule.rateLimit })) as RuleRow;
    expect(toRuleSource(read, 0)).toEqual(rule);
  });
});
