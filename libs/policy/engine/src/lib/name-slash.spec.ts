import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { describe, expect, it } from 'vitest';
import { compile } from './compile';
import { evaluate, visibleTools } from './evaluate';
import { tenantSource } from './testing.fixtures';

describe('tool and prompt name globs', () => {
  const everyone = [{ type: 'authenticated' as const }];
  const rules: PolicyRuleSource[] = [
    { id: 'no-db-prompts', subjects: everyone, targets: [{ kind: 'prompt', upstream: 'db', name: '*' }], effect: 'deny' },
    { id: 'no-admin-tools', subjects: everyone, targets: [{ kind: 'tool', upstream: 'db', name: 'admin*' }], effect: 'deny' },
    { id: 'docs', subjects: everyone, targets: [{ kind: 'resource', upstream: 'db', uri: 'file:///docs/*' }], effect: 'deny' },
  ];
  const compiled = compile(tenantSource(rules, 'allow'));
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  const snapshot = compiled.snapshot;
  const effect = (kind: 'tool' | 'prompt', name: string) =>
    evaluate(snapshot, { principal: { userId: 'u-carol' }, target: { kind, upstream: 'db', name }, arguments: null, context: { time: new Date(), ip: null } }).effect;

  it('match a name with a "/" as one name: "*" is any run of characters', () => {
    expect(effect('prompt', 'reset')).toBe('deny');
    expect(effect('prompt', 'admin/reset')).toBe('deny');
    expect(effect('tool', 'admin/drop')).toBe('deny');
    expect(effect('tool', 'ADMIN/a/b')).toBe('deny');
    expect(effect('tool', 'read')).toBe('allow');
    const listed = visibleTools(snapshot, { userId: 'u-carol' }, [
      { kind: 'prompt', upstream: 'db', name: 'admin/reset' },
      { kind: 'tool', upstream: 'db', name: 'admin/drop' },
      { kind: 'tool', upstream: 'db', name: 'read/all' },
    ]);
    expect(listed.map((target) => target.name)).toEqual(['read/all']);
  });

  it('keep path semantics for resource URIs', () => {
    const uri = (value: string) =>
      evaluate(snapshot, { principal: { userId: 'u-carol' }, target: { kind: 'resource', upstream: 'db', name: value }, arguments: null, context: { time: new Date(), ip: null } }).effect;
    expect(uri('file:///docs/a.md')).toBe('deny');
    expect(uri('file:///docs/private/a.md')).toBe('allow');
  });
});
