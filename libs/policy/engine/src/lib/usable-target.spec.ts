import { describe, expect, it } from 'vitest';
import { compileCondition } from './cel';
import { compile } from './compile';
import { evaluate, usableTarget, visibleTools } from './evaluate';
import { tenantSource } from './testing.fixtures';

const OFFICE = '10.1.0.0/16';
const inOffice = { time: '2026-12-02T10:00:00Z', ip: '10.1.2.3' };
const fromHome = { time: '2026-12-02T10:00:00Z', ip: '203.0.113.9' };
const atNight = { time: '2026-12-02T23:30:00Z', ip: '10.1.2.3' };
const unknownAddress = { time: '2026-12-02T10:00:00Z', ip: null };

function snapshot(rules: Parameters<typeof tenantSource>[0], defaultEffect: 'allow' | 'deny' = 'deny') {
  const result = compile(tenantSource(rules, defaultEffect));
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return result.snapshot;
}

const carol = { userId: 'u-carol' };
const query = { kind: 'tool', upstream: 'db', name: 'query' } as const;
const everyone = [{ type: 'authenticated' as const }];
const onQuery = [{ kind: 'tool' as const, upstream: 'db', name: 'query' }];

describe('compileCondition: what a condition reads', () => {
  it.each([
    ['size(args.sql) < 200', true, false],
    ['args["sql"] == "x" || principal.role == "member"', true, false],
    ['request.time.getHours() < 18', false, false],
    ['request["time"].hourIn("UTC") < 18', false, false],
    [`inCidr(request.ip, "${OFFICE}")`, false, true],
    ['request["ip"] == "10.0.0.1"', false, true],
    ['has(request.ip)', false, true],
    ['principal.groups.exists(g, g == "engineering") && target.name == "query"', false, false],
    // A comprehension variable named `args` is taken as reading the arguments (never the other way round).
    ['[1, 2].exists(args, args > 1)', true, false],
  ])('%s: arguments %s, address %s', (source, readsArguments, readsAddress) => {
    const compiled = compileCondition(source);
    if (!compiled.ok) throw new Error(compiled.message);
    expect({ readsArguments: compiled.program.readsArguments, readsAddress: compiled.program.readsAddress }).toEqual({ readsArguments, readsAddress });
  });
});

describe('usableTarget', () => {
  it('applies a deny by address or time alone, which visibleTools cannot (it knows neither)', () => {
    const rules = snapshot([
      { id: 'allow-query', subjects: everyone, targets: onQuery, effect: 'allow' },
      { id: 'office-only', subjects: everyone, targets: onQuery, effect: 'deny', condition: `!inCidr(request.ip, "${OFFICE}")` },
      { id: 'not-at-night', subjects: everyone, targets: onQuery, effect: 'deny', condition: 'request.time.getHours() >= 22' },
    ]);
    expect(visibleTools(rules, carol, [query])).toEqual([query]);
    expect(usableTarget(rules, carol, query, inOffice)).toBe(true);
    expect(usableTarget(rules, carol, query, fromHome)).toBe(false);
    expect(usableTarget(rules, carol, query, atNight)).toBe(false);
    // Address unknown (a message from the upstream, not a request of the agent): the address rule could go either way.
    expect(usableTarget(rules, carol, query, unknownAddress)).toBe(true);
  });

  it('needs an allow that can still apply: one by address only does not from elsewhere, one by arguments may', () => {
    const byAddress = snapshot([{ id: 'office', subjects: everyone, targets: onQuery, effect: 'allow', condition: `inCidr(request.ip, "${OFFICE}")` }]);
    expect(usableTarget(byAddress, carol, query, inOffice)).toBe(true);
    expect(usableTarget(byAddress, carol, query, fromHome)).toBe(false);
    expect(usableTarget(byAddress, carol, query, unknownAddress)).toBe(true);
    const byArguments = snapshot([{ id: 'small', subjects: everyone, targets: onQuery, effect: 'require_approval', condition: 'size(args.sql) < 200' }]);
    expect(usableTarget(byArguments, carol, query, fromHome)).toBe(true);
  });

  it('lets a deny that reads the arguments pass (other arguments may not meet it), and falls back to the default', () => {
    const argumentDeny = snapshot([{ id: 'no-drop', subjects: everyone, targets: onQuery, effect: 'deny', condition: 'args.sql.contains("DROP")' }], 'allow');
    expect(usableTarget(argumentDeny, carol, query, fromHome)).toBe(true);
    const closed = snapshot([{ id: 'no-drop', subjects: everyone, targets: onQuery, effect: 'deny', condition: 'args.sql.contains("DROP")' }], 'deny');
    expect(usableTarget(closed, carol, query, fromHome)).toBe(false);
    expect(usableTarget(snapshot([]), carol, query, inOffice)).toBe(false);
    expect(usableTarget(snapshot([], 'allow'), carol, query, inOffice)).toBe(true);
  });

  it('refuses an unconditional deny and a principal with no identity, and counts a failing condition as evaluate does', () => {
    const denied = snapshot([
      { id: 'allow-query', subjects: everyone, targets: onQuery, effect: 'allow' },
      { id: 'carol-out', subjects: [{ type: 'user', userId: 'u-carol' }], targets: onQuery, effect: 'deny' },
    ]);
    expect(usableTarget(denied, carol, query, inOffice)).toBe(false);
    expect(usableTarget(denied, { userId: 'u-alice' }, query, inOffice)).toBe(true);
    expect(usableTarget(denied, {}, query, inOffice)).toBe(false);
    // An address that is no address makes inCidr fail: the deny counts as applying, the allow as not.
    const failing = snapshot([
      { id: 'allow-office', subjects: everyone, targets: onQuery, effect: 'allow', condition: `inCidr(request.ip, "${OFFICE}")` },
    ]);
    expect(usableTarget(failing, carol, query, { time: inOffice.time, ip: 'not-an-ip' })).toBe(false);
    const failingDeny = snapshot(
      [{ id: 'deny-office', subjects: everyone, targets: onQuery, effect: 'deny', condition: `inCidr(request.ip, "${OFFICE}")` }],
      'allow',
    );
    expect(usableTarget(failingDeny, carol, query, { time: inOffice.time, ip: 'not-an-ip' })).toBe(false);
    // A require_approval whose condition fails applies (as in evaluate): the tool is usable, held for approval.
    const failingApproval = snapshot([
      { id: 'approve-office', subjects: everyone, targets: onQuery, effect: 'require_approval', condition: `inCidr(request.ip, "${OFFICE}")` },
    ]);
    expect(usableTarget(failingApproval, carol, query, { time: inOffice.time, ip: 'not-an-ip' })).toBe(true);
    expect(evaluate(failingApproval, { principal: carol, target: query, arguments: null, context: { time: inOffice.time, ip: 'not-an-ip' } }).effect).toBe('require_approval');
  });
});

// A condition that reads only the target's name was run here without the bound `evaluate` keeps: a URI of 8 KiB split
// and searched per character would block the event loop.
describe('usableTarget: a condition bounded as in evaluate', () => {
  it('takes one that would do too much with the target name as failed (a restriction applies), quickly', () => {
    const rules = snapshot(
      [
        { id: 'all-files', subjects: everyone, targets: [{ kind: 'resource', upstream: 'files', uri: '**' }], effect: 'allow' },
        { id: 'odd-names', subjects: everyone, targets: [{ kind: 'resource', upstream: 'files', uri: '**' }], effect: 'deny', condition: 'cel.bind(l, target.name.split(""), l.exists(x, "z" in l))' },
      ],
      'deny',
    );
    const file = (name: string) => ({ kind: 'resource', upstream: 'files', name }) as const;
    expect(usableTarget(rules, carol, file('file:///srv/a.txt'), inOffice)).toBe(true);
    expect(usableTarget(rules, carol, file('file:///srv/z.txt'), inOffice)).toBe(false);
    const started = performance.now();
    expect(usableTarget(rules, carol, file(`file:///srv/${'a'.repeat(8_000)}`), inOffice)).toBe(false);
    expect(performance.now() - started).toBeLessThan(500);
  });
});
