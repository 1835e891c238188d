import { describe, expect, it } from 'vitest';
import { counterKey, targetKey, TENANT_LIMIT_RULE } from './keys';

const subject = { tenantId: 't1', userId: 'u1', agentClientId: 'a1', tool: 'tickets__create_ticket' };

describe('counterKey', () => {
  it('builds one bucket per combination of the scope parts, in rule order', () => {
    expect(counterKey(subject, 'r1', ['tenant'])).toBe('t1:r1:t');
    expect(counterKey(subject, 'r1', ['user', 'tool'])).toBe('t1:r1:u=u1:x=tickets__create_ticket');
    expect(counterKey(subject, 'r1', ['agent_client'])).toBe('t1:r1:a=a1');
  });

  it('separates tenants and rules, and groups calls missing a scope part', () => {
    expect(counterKey({ ...subject, tenantId: 't2' }, 'r1', ['user'])).not.toBe(counterKey(subject, 'r1', ['user']));
    expect(counterKey(subject, 'r2', ['user'])).not.toBe(counterKey(subject, 'r1', ['user']));
    expect(counterKey({ ...subject, userId: null }, 'r1', ['user'])).toBe('t1:r1:u=-');
  });
});

describe('counterKey and rule ids', () => {
  it('keeps rule ids the tenant writes from sharing a counter with another rule or the tenant-wide limit', () => {
    const subject = { tenantId: 'T', userId: null, agentClientId: 'a1', tool: null };
    const keys = [
      counterKey(subject, 'a:t', ['user']),
      counterKey(subject, 'a', ['tenant', 'user']),
      counterKey(subject, '$tenant', ['tenant']),
      counterKey(subject, TENANT_LIMIT_RULE, ['tenant']),
      counterKey(subject, '%24tenant', ['tenant']),
      counterKey(subject, 'r!x', ['tenant']),
      counterKey(subject, 'r%21x', ['tenant']),
    ];
    expect(new Set(keys).size).toBe(keys.length);
    expect(counterKey(subject, 'rule-1.v2_x', ['agent_client'])).toBe('T:rule-1.v2_x:a=a1');
  });
});

describe('targetKey', () => {
  it('keeps short names as they are and keys long ones (resource URIs) by a hash: short, distinct, stable', () => {
    expect(targetKey('up1', 'tool', 'create_ticket')).toBe('up1/tool/create_ticket');
    const long = `file:///data/${'a'.repeat(8_000)}`;
    const other = `${long.slice(0, -1)}b`;
    const key = targetKey('up1', 'resource', long);
    expect(key.length).toBeLessThan(80);
    expect(key).toBe(targetKey('up1', 'resource', long));
    expect(key).not.toBe(targetKey('up1', 'resource', other));
    expect(key).not.toBe(targetKey('up2', 'resource', long));
    expect(targetKey('up1', 'resource', 'x'.repeat(200))).toBe(`up1/resource/${'x'.repeat(200)}`);
  });

  it('counts every spelling of one resource URI under one key (a fragment or an encoding cannot open a new counter)', () => {
    const key = targetKey('up1', 'resource', 'file:///srv/données/a.md');
    for (const spelling of ['file:///srv/donn%C3%A9es/a.md', 'file:///srv/donn%c3%a9es/a.md#1', 'file:///srv/données/a.md#2']) {
      expect(targetKey('up1', 'resource', spelling), spelling).toBe(key);
    }
    expect(targetKey('up1', 'resource', 'file:///srv/données/b.md')).not.toBe(key);
  });

  it('counts names that differ only in case under one key (an upstream may run either spelling as one tool)', () => {
    expect(targetKey('up1', 'tool', 'ECHO')).toBe(targetKey('up1', 'tool', 'echo'));
    expect(targetKey('up1', 'prompt', 'Triage')).toBe(targetKey('up1', 'prompt', 'triage'));
    expect(targetKey('up1', 'resource', 'file:///srv/A.md')).toBe(targetKey('up1', 'resource', 'file:///srv/a.md'));
    expect(targetKey('up1', 'tool', 'echo')).not.toBe(targetKey('up1', 'tool', 'echo2'));
  });

  // The policy engine matches these as one name (`foldCase`); lower case alone gave each spelling its own budget, and a
  // name with k letters s had 2^k of them (found in review).
  it('counts the spellings the policy treats as one under one key: the long s, composed and decomposed accents', () => {
    expect(targetKey('up1', 'resource', 'file:///srv/ſecret.pem')).toBe(targetKey('up1', 'resource', 'file:///srv/secret.pem'));
    expect(targetKey('up1', 'resource', 'file:///srv/donn%C3%A9es/r.csv')).toBe(targetKey('up1', 'resource', 'file:///srv/donne%CC%81es/r.csv'));
    expect(targetKey('up1', 'prompt', 'ſummary')).toBe(targetKey('up1', 'prompt', 'SUMMARY'));
    expect(targetKey('up1', 'prompt', 'café')).toBe(targetKey('up1', 'prompt', 'cafe\u0301'));
  });

  // The engine gives a limit to every spelling a full case fold takes as one (`ß` as `ss`); with a counter each, a
  // name with k `ss` had 2^k budgets (found in review).
  it('counts the spellings a full case fold takes as one under one key: ß and ss, ﬀ and ff', () => {
    const key = targetKey('up1', 'prompt', 'process_assessment');
    for (const spelling of ['proceß_aßeßment', 'process_aßessment', 'PROCESS_ASSEẞMENT']) expect(targetKey('up1', 'prompt', spelling), spelling).toBe(key);
    expect(targetKey('up1', 'prompt', 'oﬀboard')).toBe(targetKey('up1', 'prompt', 'offboard'));
    expect(targetKey('up1', 'resource', 'file:///srv/straße/a')).toBe(targetKey('up1', 'resource', 'file:///srv/STRASSE/a'));
  });
});
