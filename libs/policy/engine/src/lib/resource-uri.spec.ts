import { fileURLToPath } from 'node:url';
import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { describe, expect, it } from 'vitest';
import { compile } from './compile';
import { evaluate } from './evaluate';
import { canonicalResourcePattern, canonicalResourceUri } from './resource-uri';
import { tenantSource } from './testing.fixtures';

describe('canonicalResourceUri', () => {
  it('writes every spelling of one resource the same way', () => {
    const same = (...spellings: string[]) => expect(new Set(spellings.map(canonicalResourceUri)).size, spellings.join(' | ')).toBe(1);
    same('file:///srv/données/x', 'file:///srv/donn%C3%A9es/x', 'file:///srv/donn%c3%a9es/x');
    same('file:///srv/my file', 'file:///srv/my%20file');
    same('db://h/a%3aB', 'db://h/a%3AB');
    same('file:///srv/secret/key.pem', 'file:///srv/secret/key.pem#/', 'file:///srv/secret/key.pem#');
    expect(canonicalResourceUri('file:///srv/donn%C3%A9es/x')).toBe('file:///srv/données/x');
  });

  it('decodes the delimiters a file path gives no meaning (fileURLToPath decodes them), and only there', () => {
    expect(canonicalResourceUri('file:///srv/R%26D/c%2B%2B/a%40b/x%3Ay/%5Bdraft%5D;v=1')).toBe('file:///srv/R&D/c++/a@b/x:y/[draft];v=1');
    expect(canonicalResourceUri('FILE:///srv/R%26D')).toBe('FILE:///srv/R&D');
    expect(canonicalResourceUri('https://h/q?a=%26&b=c')).toBe('https://h/q?a=%26&b=c');
    expect(canonicalResourceUri('file:///srv/a%2Fb%3Fc%25d')).toBe('file:///srv/a%2Fb%3Fc%25d');
  });

  it('keeps structure, glob syntax, control characters and bytes that are not UTF-8 encoded (upper-case hex)', () => {
    expect(canonicalResourceUri('db://h/a%2fb%3fc%23d%25e')).toBe('db://h/a%2Fb%3Fc%23d%25e');
    expect(canonicalResourceUri('db://h/%2a%5c%00%7f')).toBe('db://h/%2A%5C%00%7F');
    // A lone continuation byte, an overlong "/" and a truncated sequence before a valid one.
    expect(canonicalResourceUri('db://h/%80%c0%af%e2%82%C3%A9')).toBe('db://h/%80%C0%AF%E2%82é');
    expect(canonicalResourceUri('db://h/plain?q=1')).toBe('db://h/plain?q=1');
  });
});

describe('policy on resource URIs spelled another way', () => {
  const rules: PolicyRuleSource[] = [
    { id: 'files', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: 'fs', uri: 'file:///srv/**' }], effect: 'allow' },
    { id: 'no-keys', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: 'fs', uri: 'file:///srv/secret/*.pem' }], effect: 'deny' },
    { id: 'no-data', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: 'fs', uri: 'file:///srv/données/**' }], effect: 'deny' },
    { id: 'no-archive', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: 'fs', uri: 'file:///srv/old%20archive/*' }], effect: 'deny' },
    { id: 'no-rnd', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: 'fs', uri: 'file:///srv/R&D/**' }], effect: 'deny' },
    { id: 'no-plus', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: 'fs', uri: 'file:///srv/c%2B%2B/**' }], effect: 'deny' },
  ];
  const compiled = compile(tenantSource(rules, 'deny'));
  if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
  const read = (uri: string) =>
    evaluate(compiled.snapshot, {
      principal: { agentClientId: 'ac-1' },
      target: { kind: 'resource', upstream: 'fs', name: uri },
      arguments: null,
      context: { time: new Date(), ip: null },
    });

  it('denies them as the rule\'s own spelling is denied', () => {
    for (const uri of [
      'file:///srv/secret/key.pem',
      'file:///srv/secret/key.pem#/',
      'file:///srv/données/x',
      'file:///srv/donn%C3%A9es/x',
      'file:///srv/donn%c3%a9es/x',
      'file:///srv/old archive/a',
      'file:///srv/old%20archive/a',
      'file:///srv/R%26D/plan.txt',
      'file:///srv/R&D/plan.txt',
      'file:///srv/c++/x',
      'file:///srv/c%2b%2b/x',
    ]) {
      expect(read(uri).effect, uri).toBe('deny');
    }
    expect(read('file:///srv/public/readme.md').effect).toBe('allow');
    expect(read('file:///srv/donn%C3%A9es-public/x').effect).toBe('allow');
  });
});

describe('resource rules naming a fragment', () => {
  const rule = (id: string, uri: string, effect: 'allow' | 'deny'): PolicyRuleSource => ({ id, subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: 'notes', uri }], effect });
  const decide = (rules: PolicyRuleSource[], uri: string) => {
    const compiled = compile(tenantSource(rules, 'deny'));
    if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
    return evaluate(compiled.snapshot, { principal: { agentClientId: 'ac-1' }, target: { kind: 'resource', upstream: 'notes', name: uri }, arguments: null, context: { time: new Date(), ip: null } }).effect;
  };

  it('still compile (stored rules must not block every later change of the tenant)', () => {
    for (const uri of ['notes://book#public', 'notes://book/\\#1', 'notes://**#*']) {
      expect(compile(tenantSource([rule('r', uri, 'allow')], 'deny')).ok, uri).toBe(true);
    }
  });

  it('deny or hold the whole resource, and allow nothing (cut, an allow would cover more than it names)', () => {
    expect(decide([rule('a', 'notes://book#public', 'allow')], 'notes://book#public')).toBe('deny');
    expect(decide([rule('a', 'notes://book#public', 'allow')], 'notes://book')).toBe('deny');
    const denyPrivate = [rule('all', 'notes://**', 'allow'), rule('no', 'notes://book#private', 'deny')];
    expect(decide(denyPrivate, 'notes://book#private')).toBe('deny');
    expect(decide(denyPrivate, 'notes://book')).toBe('deny');
    expect(decide(denyPrivate, 'notes://other')).toBe('allow');
    // require_approval restricts what an allow grants: like a deny it covers the whole resource.
    const approvePrivate = [rule('all', 'notes://**', 'allow'), { ...rule('hold', 'notes://book#private', 'allow'), effect: 'require_approval' as const }];
    expect(decide(approvePrivate, 'notes://book#private')).toBe('require_approval');
    expect(decide(approvePrivate, 'notes://book')).toBe('require_approval');
    expect(decide(approvePrivate, 'notes://other')).toBe('allow');
  });

  it('cut in their canonical form without breaking an escaped "#"', () => {
    expect(canonicalResourcePattern('notes://book/\\#1')).toBe('notes://book/');
    expect(canonicalResourcePattern('notes://book\\\\#x')).toBe('notes://book\\\\');
    expect(canonicalResourcePattern('file:///srv/R%26D/**')).toBe('file:///srv/R&D/**');
  });
});

describe('resource rules that do not start with a scheme', () => {
  it('match file: URIs in their file form and others in theirs', () => {
    const rules: PolicyRuleSource[] = [
      { id: 'all', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: 'fs', uri: '**' }], effect: 'allow' },
      { id: 'no-rnd', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: 'fs', uri: '**/R%26D/**' }], effect: 'deny' },
    ];
    const compiled = compile(tenantSource(rules, 'deny'));
    if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
    const read = (uri: string) =>
      evaluate(compiled.snapshot, { principal: { agentClientId: 'ac-1' }, target: { kind: 'resource', upstream: 'fs', name: uri }, arguments: null, context: { time: new Date(), ip: null } }).effect;
    // Before, the pattern kept %26 while file: URIs were decoded to "&": both spellings got past the deny.
    expect(read('file:///srv/R%26D/plan.txt')).toBe('deny');
    expect(read('file:///srv/R&D/plan.txt')).toBe('deny');
    expect(read('https://h/R%26D/x')).toBe('deny');
    // Outside file: an encoded "&" and a plain one may name different things: only the rule's spelling is denied.
    expect(read('https://h/R&D/x')).toBe('allow');
  });
});

describe('resource rules naming a file whose name holds "*", "?", "#" or "%"', () => {
  const rules = (uri: string): PolicyRuleSource[] => [
    { id: 'all', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: '*', uri: '**' }], effect: 'allow' },
    { id: 'no', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: '*', uri }], effect: 'deny' },
  ];
  const read = (pattern: string, uri: string) => {
    const compiled = compile(tenantSource(rules(pattern)));
    if (!compiled.ok) throw new Error(JSON.stringify(compiled.errors));
    return evaluate(compiled.snapshot, { principal: { userId: 'u-carol' }, target: { kind: 'resource', upstream: 'files', name: uri }, arguments: null, context: { time: '2026-01-01T10:00:00Z', ip: null } }).effect;
  };

  // Before, the rule's literal character stayed literal while the URI's escape stayed encoded: the deny missed the file.
  it.each([
    ['file:///srv/\\*.pem', 'file:///srv/%2A.pem', '/srv/*.pem'],
    ['file:///srv/\\*.pem', 'file:///srv/%2a.pem', '/srv/*.pem'],
    ['file:///srv/\\*.pem', 'file:///srv/*.pem', '/srv/*.pem'],
    ['file:///srv/%2A.pem', 'file:///srv/*.pem', '/srv/*.pem'],
    ['file:///srv/what\\?.txt', 'file:///srv/what%3F.txt', '/srv/what?.txt'],
    ['file:///srv/100%.txt', 'file:///srv/100%25.txt', '/srv/100%.txt'],
    ['file:///srv/100\\%.txt', 'file:///srv/100%25.txt', '/srv/100%.txt'],
    ['file:///srv/a\\#b', 'file:///srv/a%23b', '/srv/a#b'],
    ['**/what\\?.txt', 'file:///srv/what%3F.txt', '/srv/what?.txt'],
    ['FILE:///srv/100%', 'file:///srv/100%25', '/srv/100%'],
  ])('deny %s covers %s (the upstream reads %s)', (pattern, uri, path) => {
    expect(fileURLToPath(uri)).toBe(path);
    expect(read(pattern, uri)).toBe('deny');
  });

  it('leaves unescaped "*" and "?" wildcards, and other files alone', () => {
    expect(read('file:///srv/*.pem', 'file:///srv/%2A.pem')).toBe('deny');
    expect(read('file:///srv/*.pem', 'file:///srv/key.pem')).toBe('deny');
    expect(read('file:///srv/what?.txt', 'file:///srv/whatx.txt')).toBe('deny');
    expect(read('file:///srv/\\*.pem', 'file:///srv/key.pem')).toBe('allow');
    expect(read('file:///srv/what\\?.txt', 'file:///srv/whatx.txt')).toBe('allow');
    expect(read('file:///srv/a\\#b', 'file:///srv/a')).toBe('allow');
    expect(read('file:///srv/100%.txt', 'file:///srv/100.txt')).toBe('allow');
  });

  it('writes them encoded in the file: form, and as written elsewhere', () => {
    expect(canonicalResourcePattern('file:///srv/\\*\\?\\#\\%/100%/%2a%41/R%26D/*?\\a#frag')).toBe('file:///srv/%2A%3F%23%25/100%25/%2AA/R&D/*?\\a');
    expect(canonicalResourcePattern('**/\\*%', true)).toBe('**/%2A%25');
    expect(canonicalResourcePattern('**/\\*%', false)).toBe('**/\\*%');
    expect(canonicalResourcePattern('https://h/q\\?a=\\*%2a')).toBe('https://h/q\\?a=\\*%2A');
    expect(canonicalResourcePattern('notes://book/\\#1')).toBe('notes://book/');
    expect(canonicalResourceUri('file:///srv/*.pem')).toBe('file:///srv/%2A.pem');
    expect(canonicalResourceUri('https://h/*')).toBe('https://h/*');
  });

  it('keeps "\\?" the query delimiter outside file:', () => {
    expect(read('https://h/search\\?q=1', 'https://h/search?q=1')).toBe('deny');
    expect(read('https://h/search\\?q=1', 'https://h/search%3Fq=1')).toBe('allow');
  });
});
