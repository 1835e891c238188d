import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { describe, expect, it } from 'vitest';
import { compile } from './compile';
import { evaluate } from './evaluate';
import { tenantSource } from './testing.fixtures';

describe('upstream globs', () => {
  const rules: PolicyRuleSource[] = [
    { id: 'no-deletes', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: '*', name: 'delete_*' }], effect: 'deny' },
    { id: 'acme-only', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'acme*', name: 'read' }], effect: 'deny' },
    { id: 'literal-star', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'odd\\*name', name: 'read' }], effect: 'deny' },
  ];
  const compiled = compile(tenantSource(rules, 'allow'));
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  const call = (upstream: string, name: string) =>
    evaluate(compiled.snapshot, {
      principal: { agentClientId: 'ac-1' },
      target: { kind: 'tool', upstream, name },
      arguments: {},
      context: { time: new Date(), ip: null },
    }).effect;

  it('match upstream names with a "/" like any other: "*" is any run of characters in an upstream name', () => {
    // Before, `*` stopped at `/`: the tenant-wide deny skipped `acme/github`.
    expect(call('acme/github', 'delete_repo')).toBe('deny');
    expect(call('github', 'delete_repo')).toBe('deny');
    expect(call('acme/eu/github', 'read')).toBe('deny');
    expect(call('other/acme', 'read')).toBe('allow');
  });

  it('keep an escaped "*" literal', () => {
    expect(call('odd*name', 'read')).toBe('deny');
    expect(call('oddXname', 'read')).toBe('allow');
  });
});
