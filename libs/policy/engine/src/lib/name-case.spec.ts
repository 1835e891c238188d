import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { describe, expect, it } from 'vitest';
import { compile } from './compile';
import { evaluate, visibleTools } from './evaluate';
import { loadSnapshot, serializeSnapshot } from './snapshot';
import { tenantSource } from './testing.fixtures';

const everyone = [{ type: 'authenticated' as const }];
const carol = { userId: 'u-carol' };
const context = { time: new Date('2026-12-04T10:00:00Z'), ip: null };

function snapshot(rules: PolicyRuleSource[], defaultEffect: 'allow' | 'deny') {
  const result = compile(tenantSource(rules, defaultEffect));
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return result.snapshot;
}

const effectOf = (rules: ReturnType<typeof snapshot>, kind: 'tool' | 'prompt' | 'resource', upstream: string, name: string) =>
  evaluate(rules, { principal: carol, target: { kind, upstream, name }, arguments: null, context }).effect;

// An upstream that looks names up case-insensitively runs `Delete_Ticket` as `delete_ticket`: a restriction written for
// one spelling holds for every spelling, and an allow still names exactly what it allows.
describe('rule names and upper and lower case', () => {
  it('a deny applies to every spelling of the tool it names, as a literal and as a glob', () => {
    const rules = snapshot(
      [
        { id: 'no-delete', subjects: everyone, targets: [{ kind: 'tool', upstream: 'tickets', name: 'delete_ticket' }], effect: 'deny' },
        { id: 'no-drop', subjects: everyone, targets: [{ kind: 'tool', upstream: 'db', name: 'drop_*' }], effect: 'deny' },
      ],
      'allow',
    );
    for (const name of ['delete_ticket', 'Delete_Ticket', 'DELETE_TICKET', 'delete_TICKET']) expect(effectOf(rules, 'tool', 'tickets', name)).toBe('deny');
    for (const name of ['drop_table', 'DROP_table', 'Drop_Everything']) expect(effectOf(rules, 'tool', 'db', name)).toBe('deny');
    // Only the case folds: other names are untouched.
    expect(effectOf(rules, 'tool', 'tickets', 'delete_tickets')).toBe('allow');
    expect(effectOf(rules, 'tool', 'db', 'dropped')).toBe('allow');
    // The same through a serialised snapshot, as gateways load it.
    const loaded = loadSnapshot(serializeSnapshot(rules));
    expect(effectOf(loaded, 'tool', 'tickets', 'DELETE_TICKET')).toBe('deny');
  });

  it('a rule pattern written in capitals restricts the lower-case spelling too', () => {
    const rules = snapshot([{ id: 'hold-deploy', subjects: everyone, targets: [{ kind: 'tool', upstream: 'db', name: 'Deploy*' }], effect: 'require_approval' }], 'allow');
    expect(effectOf(rules, 'tool', 'db', 'deploy_prod')).toBe('require_approval');
    expect(effectOf(rules, 'tool', 'db', 'DEPLOY')).toBe('require_approval');
    expect(effectOf(rules, 'tool', 'db', 'query')).toBe('allow');
  });

  it('an allow matches only its own spelling, so another spelling falls to the default deny', () => {
    const rules = snapshot([{ id: 'query', subjects: everyone, targets: [{ kind: 'tool', upstream: 'db', name: 'query' }], effect: 'allow' }], 'deny');
    expect(effectOf(rules, 'tool', 'db', 'query')).toBe('allow');
    expect(effectOf(rules, 'tool', 'db', 'QUERY')).toBe('deny');
  });

  it('prompts and resource URIs: restrictions fold case, allows do not', () => {
    const rules = snapshot(
      [
        { id: 'no-secrets', subjects: everyone, targets: [{ kind: 'resource', upstream: 'db', uri: 'file:///srv/secret/**' }], effect: 'deny' },
        { id: 'files', subjects: everyone, targets: [{ kind: 'resource', upstream: 'db', uri: 'file:///srv/**' }], effect: 'allow' },
        { id: 'no-admin-prompt', subjects: everyone, targets: [{ kind: 'prompt', upstream: 'db', name: 'admin' }], effect: 'deny' },
      ],
      'deny',
    );
    expect(effectOf(rules, 'resource', 'db', 'file:///srv/SECRET/keys.txt')).toBe('deny');
    expect(effectOf(rules, 'resource', 'db', 'file:///srv/Secret/keys.txt')).toBe('deny');
    expect(effectOf(rules, 'resource', 'db', 'file:///srv/public/readme.md')).toBe('allow');
    expect(effectOf(rules, 'resource', 'db', 'file:///SRV/public/readme.md')).toBe('deny');
    expect(effectOf(rules, 'prompt', 'db', 'ADMIN')).toBe('deny');
  });

  it('listings hide every spelling a deny names', () => {
    const rules = snapshot([{ id: 'no-delete', subjects: everyone, targets: [{ kind: 'tool', upstream: 'tickets', name: 'delete_ticket' }], effect: 'deny' }], 'allow');
    const listed = ['create_ticket', 'Delete_Ticket', 'delete_ticket'].map((name) => ({ kind: 'tool' as const, upstream: 'tickets', name }));
    expect(visibleTools(rules, carol, listed).map((item) => item.name)).toEqual(['create_ticket']);
  });

  it('a restriction holds for spellings that only upper-case comparison or Unicode normalisation make one', () => {
    const rules = snapshot(
      [
        { id: 'no-secret', subjects: everyone, targets: [{ kind: 'resource', upstream: 'files', uri: 'file:///srv/secret.pem' }], effect: 'deny' },
        { id: 'no-data', subjects: everyone, targets: [{ kind: 'resource', upstream: 'files', uri: 'file:///srv/donn\u00e9es/**' }], effect: 'deny' },
        { id: 'files', subjects: everyone, targets: [{ kind: 'resource', upstream: 'files', uri: 'file:///srv/**' }], effect: 'allow' },
      ],
      'deny',
    );
    // U+017F (long s) is S in upper case, as NTFS, APFS and equalsIgnoreCase compare; raw and percent-encoded.
    for (const uri of ['file:///srv/\u017fecret.pem', 'file:///srv/%C5%BFecret.pem', 'file:///srv/SECRET.pem']) expect(effectOf(rules, 'resource', 'files', uri)).toBe('deny');
    // The decomposed spelling of the accented letter (e + U+0301), raw and percent-encoded.
    for (const uri of ['file:///srv/donne\u0301es/x', 'file:///srv/donne%CC%81es/x', 'file:///srv/DONN\u00c9ES/x']) expect(effectOf(rules, 'resource', 'files', uri)).toBe('deny');
    expect(effectOf(rules, 'resource', 'files', 'file:///srv/public.txt')).toBe('allow');
  });

  it('a restriction whose matched form grows past the pattern length limit still compiles and applies', () => {
    // U+0130 lower-cases to two code units (600 for 300): folding keeps it one character.
    const name = '\u0130'.repeat(300);
    const rules = snapshot([{ id: 'no-dots', subjects: everyone, targets: [{ kind: 'prompt', upstream: 'db', name }], effect: 'deny' }], 'allow');
    expect(effectOf(loadSnapshot(serializeSnapshot(rules)), 'prompt', 'db', name)).toBe('deny');
    const upstreams = snapshot([{ id: 'no-a', subjects: everyone, targets: [{ kind: 'tool', upstream: '*a'.repeat(256), name: 'x' }], effect: 'deny' }], 'allow');
    expect(effectOf(loadSnapshot(serializeSnapshot(upstreams)), 'tool', 'a'.repeat(256), 'x')).toBe('deny');
  });

  it('conditions see a resource URI in the spelling rules match, so an escaped spelling does not step around them', () => {
    const rules = snapshot(
      [
        { id: 'no-secret-paths', subjects: everyone, targets: [{ kind: 'resource', upstream: 'files', uri: 'file:///**' }], effect: 'deny', condition: 'target.name.contains("/secret/")' },
        { id: 'files', subjects: everyone, targets: [{ kind: 'resource', upstream: 'files', uri: 'file:///**' }], effect: 'allow' },
      ],
      'deny',
    );
    for (const uri of ['file:///srv/secret/a.pem', 'file:///srv/%73ecret/a.pem', 'file:///srv/secre%74/a.pem#x']) expect(effectOf(rules, 'resource', 'files', uri)).toBe('deny');
    expect(effectOf(rules, 'resource', 'files', 'file:///srv/public/a.txt')).toBe('allow');
  });

  it('folding never turns one character into several, so a ? written for it still matches (ß is SS in upper case)', () => {
    const rules = snapshot(
      [
        { id: 'no-strasse', subjects: everyone, targets: [{ kind: 'resource', upstream: 'files', uri: 'file:///docs/stra?e.pdf' }], effect: 'deny' },
        { id: 'files', subjects: everyone, targets: [{ kind: 'resource', upstream: 'files', uri: 'file:///**' }], effect: 'allow' },
      ],
      'deny',
    );
    for (const uri of ['file:///docs/stra\u00dfe.pdf', 'file:///docs/stra%C3%9Fe.pdf', 'file:///docs/STRA\u00dfE.pdf']) expect(effectOf(rules, 'resource', 'files', uri)).toBe('deny');
  });
});

// Tool pinning takes `oﬀboard` (U+FB00) as `offboard` and `straße` as `strasse` (a full case fold, as Python's
// `casefold` and ICU make), and so may an upstream: before, a deny on `offboard` let `oﬀboard` through.
describe('a deny and the spellings a full case fold takes as one name', () => {
  it('stops `oﬀboard` and `ſtrasse` under a deny on `offboard` / `strasse`, and a URI with `ß` under one on `strasse`', () => {
    const rules = snapshot(
      [
        { id: 'no-offboard', subjects: everyone, targets: [{ kind: 'prompt', upstream: 'hr', name: 'offboard' }], effect: 'deny' },
        { id: 'no-strasse-prompt', subjects: everyone, targets: [{ kind: 'prompt', upstream: 'hr', name: 'strasse' }], effect: 'deny' },
        { id: 'no-strasse', subjects: everyone, targets: [{ kind: 'resource', upstream: 'files', uri: 'file:///srv/strasse/**' }], effect: 'deny' },
      ],
      'allow',
    );
    for (const name of ['OFFBOARD', 'oﬀboard', 'OﬀBOARD']) expect(effectOf(rules, 'prompt', 'hr', name), name).toBe('deny');
    for (const name of ['straße', 'STRASSE', 'ſtraße']) expect(effectOf(rules, 'prompt', 'hr', name), name).toBe('deny');
    for (const uri of ['file:///srv/STRASSE/plan.txt', 'file:///srv/stra%C3%9Fe/plan.txt', 'file:///srv/straße/plan.txt']) expect(effectOf(rules, 'resource', 'files', uri), uri).toBe('deny');
    // Other names stay untouched, and an allow still names exactly what it allows.
    expect(effectOf(rules, 'prompt', 'hr', 'onboard')).toBe('allow');
    expect(effectOf(rules, 'resource', 'files', 'file:///srv/strase/plan.txt')).toBe('allow');
  });
});

// The rate limiter counts every spelling of a name as one (`foldCase`), as such an upstream runs them as one; an allow
// rule's limit reached the limiter only for the spelling the allow names, so `CREATE_TICKET`, admitted by a broader
// allow or by the default, ran the limited tool with no limit at all.
describe('a rate limit on an allow rule, for other spellings of what it names', () => {
  const limit = { scope: ['user', 'tool'] as ('user' | 'tool')[], requests: 3, windowSeconds: 60 };
  const limitsOf = (rules: ReturnType<typeof snapshot>, kind: 'tool' | 'resource', upstream: string, name: string, args: Record<string, unknown> | null = null) => {
    const decision = evaluate(rules, { principal: carol, target: { kind, upstream, name }, arguments: args, context });
    return { effect: decision.effect, limits: decision.rateLimits.map((entry) => entry.ruleId) };
  };

  it('counts every spelling the limiter counts as one, whichever rule or default admits it', () => {
    const limited = { id: 'create-limited', subjects: everyone, targets: [{ kind: 'tool' as const, upstream: 'tickets', name: 'create_ticket' }], effect: 'allow' as const, rateLimit: limit };
    const broad = snapshot([{ id: 'tickets-all', subjects: everyone, targets: [{ kind: 'tool', upstream: 'tickets', name: '*' }], effect: 'allow' }, limited], 'deny');
    expect(limitsOf(broad, 'tool', 'tickets', 'create_ticket')).toEqual({ effect: 'allow', limits: ['create-limited'] });
    expect(limitsOf(broad, 'tool', 'tickets', 'CREATE_TICKET')).toEqual({ effect: 'allow', limits: ['create-limited'] });
    expect(limitsOf(broad, 'tool', 'tickets', 'close_ticket')).toEqual({ effect: 'allow', limits: [] });
    const byDefault = snapshot([limited], 'allow');
    expect(limitsOf(byDefault, 'tool', 'tickets', 'Create_Ticket')).toEqual({ effect: 'allow', limits: ['create-limited'] });
    // Through a serialised snapshot, as gateways load it.
    expect(limitsOf(loadSnapshot(serializeSnapshot(byDefault)), 'tool', 'tickets', 'CREATE_TICKET')).toEqual({ effect: 'allow', limits: ['create-limited'] });
    // Refused: nothing to count. The allow still grants only its own spelling.
    const denied = snapshot([limited], 'deny');
    expect(limitsOf(denied, 'tool', 'tickets', 'CREATE_TICKET')).toEqual({ effect: 'deny', limits: [] });
    // Held for approval: the deciding rule's limits, whatever the spelling (an allow's limit in neither).
    const held = snapshot(
      [limited, { id: 'tickets-held', subjects: everyone, targets: [{ kind: 'tool', upstream: 'tickets', name: '*' }], effect: 'require_approval' }],
      'deny',
    );
    expect(limitsOf(held, 'tool', 'tickets', 'create_ticket')).toEqual({ effect: 'require_approval', limits: [] });
    expect(limitsOf(held, 'tool', 'tickets', 'CREATE_TICKET')).toEqual({ effect: 'require_approval', limits: [] });
  });

  it('takes the limit\'s condition into account, and a resource URI in another case as well', () => {
    const rules = snapshot(
      [
        { id: 'big-limited', subjects: everyone, targets: [{ kind: 'tool', upstream: 'db', name: 'export' }], effect: 'allow', condition: 'has(args.rows) && args.rows > 100', rateLimit: limit },
        { id: 'report-limited', subjects: everyone, targets: [{ kind: 'resource', upstream: 'files', uri: 'file:///srv/report.txt' }], effect: 'allow', rateLimit: limit },
      ],
      'allow',
    );
    expect(limitsOf(rules, 'tool', 'db', 'EXPORT', { rows: 500 })).toEqual({ effect: 'allow', limits: ['big-limited'] });
    expect(limitsOf(rules, 'tool', 'db', 'EXPORT', { rows: 5 })).toEqual({ effect: 'allow', limits: [] });
    // Not evaluable (a string where a number is compared): a restriction errs wide.
    expect(limitsOf(rules, 'tool', 'db', 'EXPORT', { rows: 'many' })).toEqual({ effect: 'allow', limits: ['big-limited'] });
    expect(limitsOf(rules, 'resource', 'files', 'file:///srv/REPORT.txt')).toEqual({ effect: 'allow', limits: ['report-limited'] });
    expect(limitsOf(rules, 'resource', 'files', 'file:///srv/other.txt')).toEqual({ effect: 'allow', limits: [] });
  });
});
