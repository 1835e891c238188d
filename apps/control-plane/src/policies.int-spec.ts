import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import type { TenantId } from '@portcullis/shared/util-ids';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { evaluate, loadSnapshot, visibleTools } from '@portcullis/policy/engine';
import { newId } from '@portcullis/shared/util-ids';
import { testContext, waitFor } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlaneHarness } from './testing/control-plane-harness';

/**
 * Policies, snapshots and groups through the real AppModule (Postgres with RLS, Redis, the audit queue): ETag
 * concurrency, compile errors at save time, simulation against the engine, one snapshot per enforcement-affecting
 * change in the same transaction, rollback, and tenant isolation.
 */
let cp: ControlPlaneHarness;
let subscriber: Redis;
const notices: string[] = [];

beforeAll(async () => {
  cp = await startControlPlane();
  subscriber = createRedisClient({ url: testContext().redisUrl, connectionName: 'policies-test-sub' });
  await subscriber.subscribe(CHANGE_CHANNELS.snapshots);
  subscriber.on('message', (_channel: string, message: string) => notices.push(message));
});
afterAll(async () => {
  await subscriber?.quit();
  await cp?.close();
});

const policyUrl = (t: TenantId) => `/api/v1/tenants/${t}/policy`;

type Rule = Record<string, unknown>;
const allowTickets = (id: string, subjects: unknown[] = [{ type: 'authenticated' }]): Rule => ({
  id,
  subjects,
  targets: [{ kind: 'tool', upstream: 'Tickets', name: '*' }],
  effect: 'allow',
});

async function snapshots(tenantId: TenantId) {
  return cp.system.policySnapshot.findMany({
    where: { tenantId },
    orderBy: { version: 'asc' },
    select: { version: true, active: true, comment: true, checksum: true },
  });
}

async function putPolicy(tenantId: TenantId, token: string, etag: string, rules: Rule[], defaultEffect: 'allow' | 'deny' = 'deny') {
  return cp.request('PUT', policyUrl(tenantId), { token, headers: { 'if-match': etag }, body: { defaultEffect, rules } });
}

/** The tenant's active snapshot from the database, loaded by the engine (what a gateway would hold). */
async function activeSnapshot(tenantId: TenantId) {
  const row = await cp.system.policySnapshot.findFirstOrThrow({ where: { tenantId, active: true }, select: { ir: true } });
  return loadSnapshot(row.ir);
}

describe('policy GET/PUT with ETag and If-Match', () => {
  it('requires If-Match (428), refuses a stale ETag (412) so two admins cannot overwrite each other, and loses nothing', async () => {
    const t = await cp.tenant();
    const first = await cp.member(t.id, 'admin');
    const second = await cp.member(t.id, 'owner');

    const initial = await cp.request('GET', policyUrl(t.id), { token: first.token });
    expect(initial.status).toBe(200);
    expect(initial.headers['etag']).toBe('"0"');
    expect(initial.json).toMatchObject({ version: 0, rules: [], defaultEffect: 'deny', activeSnapshotVersion: null });

    const missing = await cp.request('PUT', policyUrl(t.id), { token: first.token, body: { defaultEffect: 'deny', rules: [] } });
    expect(missing.status).toBe(428);
    expect(missing.headers['content-type']).toContain('application/problem+json');
    expect(missing.json['code']).toBe('PRECONDITION_REQUIRED');
    expect((await putPolicy(t.id, first.token, '*', [])).status).toBe(412);
    expect(await snapshots(t.id)).toEqual([]);

    // Both admins read version 0; the first save wins, the second (same stale ETag) is refused.
    const saved = await putPolicy(t.id, first.token, '"0"', [allowTickets('r-first')]);
    expect(saved.status).toBe(200);
    expect(saved.headers['etag']).toBe('"1"');
    expect(saved.json).toMatchObject({ version: 1, activeSnapshotVersion: 1, snapshot: { version: 1 } });
    const stale = await putPolicy(t.id, second.token, '"0"', [allowTickets('r-second')]);
    expect(stale.status).toBe(412);
    expect(stale.json).toMatchObject({ code: 'PRECONDITION_FAILED', detail: expect.stringContaining('version 1') });

    const afterConflict = await cp.request('GET', policyUrl(t.id), { token: second.token });
    expect((afterConflict.json['rules'] as Rule[]).map((r) => r['id'])).toEqual(['r-first']);
    expect(await snapshots(t.id)).toHaveLength(1);

    // The second admin reloads, reapplies the edit on top, and saves.
    const merged = await putPolicy(t.id, second.token, String(afterConflict.headers['etag']), [allowTickets('r-first'), allowTickets('r-second')]);
    expect(merged.status).toBe(200);
    expect(merged.headers['etag']).toBe('"2"');
    const final = await cp.request('GET', policyUrl(t.id), { token: first.token });
    expect((final.json['rules'] as Rule[]).map((r) => r['id'])).toEqual(['r-first', 'r-second']);
    expect(final.json).toMatchObject({ version: 2, activeSnapshotVersion: 2 });
    expect((await snapshots(t.id)).map((s) => [s.version, s.active, s.comment])).toEqual([
      [1, false, 'policy.update'],
      [2, true, 'policy.update'],
    ]);

    const events = await cp.eventsAtLeast(t.id, 2);
    expect(events.map((e) => [e.method, e.snapshotVersion])).toEqual([
      ['policy.create', 1],
      ['policy.update', 2],
    ]);
    await waitFor(() => notices.filter((n) => n === t.id).length >= 2, { description: 'two snapshot notices' });
  });

  it('answers 400 problem+json naming each rule and path that does not compile (bad glob, bad CEL, unknown group); nothing is saved', async () => {
    const t = await cp.tenant();
    const admin = await cp.member(t.id, 'admin');
    const res = await putPolicy(t.id, admin.token, '"0"', [
      { id: 'r-glob', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'Tickets', name: 'a***' }], effect: 'allow' },
      { ...allowTickets('r-cel'), condition: 'args.amount >' },
      allowTickets('r-group', [{ type: 'group', group: 'ghosts' }]),
      allowTickets('r-fine'),
    ]);
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json['code']).toBe('VALIDATION_FAILED');
    const errors = res.json['errors'] as { path: string; ruleId: string | null; message: string }[];
    expect(errors.map((e) => [e.ruleId, e.path])).toEqual([
      ['r-glob', 'rules.0.targets.0.name'],
      ['r-cel', 'rules.1.condition'],
      ['r-group', 'rules.2.subjects.0.group'],
    ]);
    expect(errors[2]?.message).toContain('unknown group ghosts');
    for (const error of errors) expect(error.message).toContain(`rule "${String(error.ruleId)}"`);

    // Text Postgres cannot store (a NUL character) is a caller's mistake: 400, not a 500 from the database.
    const nul = await putPolicy(t.id, admin.token, '"0"', [{ ...allowTickets('r-\u0000'), condition: 'true || "\u0000" == ""' }]);
    expect(nul.status).toBe(400);
    const nulDescription = await cp.request('PUT', policyUrl(t.id), {
      token: admin.token,
      headers: { 'if-match': '"0"' },
      body: { defaultEffect: 'deny', description: 'a\u0000b', rules: [] },
    });
    expect(nulDescription.status).toBe(400);
    // Nor a lone surrogate (sent as the JSON escape "\ud800"): 400 naming the field.
    const lone = await putPolicy(t.id, admin.token, '"0"', [{ ...allowTickets('r-lone'), targets: [{ kind: 'tool', upstream: '\ud800', name: 'x' }] }]);
    expect(lone.status).toBe(400);
    expect(lone.json['errors']).toEqual([{ path: 'rules.0.targets.0.upstream', message: 'must not contain a lone UTF-16 surrogate (invalid Unicode)' }]);

    const schema = await putPolicy(t.id, admin.token, '"0"', [{ ...allowTickets('r-x'), effect: 'maybe' }]);
    expect(schema.status).toBe(400);
    expect((schema.json['errors'] as { path: string }[]).map((e) => e.path)).toContain('rules.0.effect');

    expect((await cp.request('GET', policyUrl(t.id), { token: admin.token })).json).toMatchObject({ version: 0, rules: [] });
    expect(await snapshots(t.id)).toEqual([]);
    expect(await cp.system.policyRule.count({ where: { tenantId: t.id } })).toBe(0);
  });
});

describe('pattern complexity', () => {
  it('holds rules being saved to the bound, and not a stored policy compiled again for another change', async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const complex = (i: number): Rule => ({
      id: `r-${i}`,
      subjects: [{ type: 'authenticated' }],
      targets: [{ kind: 'resource', upstream: 'files', uri: `**${'a?'.repeat(250)}b${i}` }],
      effect: 'deny',
    });
    const etag = String((await cp.request('GET', policyUrl(t.id), { token: owner.token })).headers['etag']);
    const refused = await putPolicy(t.id, owner.token, etag, Array.from({ length: 9 }, (_, i) => complex(i)));
    expect(refused.status, refused.text).toBe(400);
    expect(refused.text).toContain('too complex in all');
    const saved = await putPolicy(t.id, owner.token, etag, Array.from({ length: 8 }, (_, i) => complex(i)));
    expect(saved.status, saved.text).toBe(200);
    // A ninth, as a rule saved before the bound existed would be stored.
    const policy = await cp.system.policy.findFirstOrThrow({ where: { tenantId: t.id } });
    const { id, ...source } = complex(8);
    await cp.system.policyRule.create({ data: { tenantId: t.id, policyId: policy.id, position: 9, name: id, ...source } as never });
    // Other changes still rebuild the snapshot (a group here; before, every such change answered 409).
    const group = await cp.request('POST', `/api/v1/tenants/${t.id}/groups`, { token: owner.token, body: { externalId: 'sre', name: 'SRE' } });
    expect(group.status, group.text).toBe(201);
  });
});

describe('a large policy and changes queued on its snapshot lock', () => {
  it('serves changes that wait behind others recompiling it, rather than answering 503 as if the database were down', { timeout: 120_000 }, async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    // 5,000 rules with a condition each (about 800 KB, within the policy limits): each recompile takes a second or more.
    const rules = Array.from({ length: 5_000 }, (_, i): Rule => ({
      id: `r${i}`,
      subjects: [{ type: 'authenticated' }],
      targets: [{ kind: 'tool', upstream: 'up', name: `t${i}` }],
      effect: 'allow',
      condition: `args.x == ${i}`,
    }));
    const etag = String((await cp.request('GET', policyUrl(t.id), { token: owner.token })).headers['etag']);
    const saved = await putPolicy(t.id, owner.token, etag, rules);
    expect(saved.status, saved.text).toBe(200);
    // Six changes at once: each takes the lock and recompiles in turn, the last waiting several seconds.
    const groups = await Promise.all(
      Array.from({ length: 6 }, (_, i) => cp.request('POST', `/api/v1/tenants/${t.id}/groups`, { token: owner.token, body: { externalId: `g${i}`, name: `G${i}` } })),
    );
    expect(groups.map((r) => r.status)).toEqual(Array(6).fill(201));
    // The policy's and one for each group.
    expect((await snapshots(t.id)).length).toBe(7);
  });
});

describe('upstream renames and rules', () => {
  /** A tenant, its owner, and an upstream `payments` (its URL in the API). */
  async function withPayments() {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const created = await cp.request('POST', `/api/v1/tenants/${t.id}/upstreams`, {
      token: owner.token,
      body: { name: 'payments', toolPrefix: 'pay', transport: 'streamable_http', url: 'https://payments.example.test/mcp' },
    });
    expect(created.status).toBe(201);
    return { t, owner, upstreamUrl: `/api/v1/tenants/${t.id}/upstreams/${String(created.json['id'])}` };
  }

  it('refuses renaming an upstream that enabled rules name, until the rules cover the new name', async () => {
    const { t, owner, upstreamUrl } = await withPayments();
    const noTransfers = { id: 'r-no-transfers', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'payments', name: 'transfer_*' }], effect: 'deny' };
    let etag = String((await cp.request('GET', policyUrl(t.id), { token: owner.token })).headers['etag']);
    const saved = await putPolicy(t.id, owner.token, etag, [noTransfers, { id: 'r-all', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: '*', name: '*' }], effect: 'allow' }]);
    expect(saved.status).toBe(200);

    // The deny would stop applying to the renamed upstream: refused, naming the rule.
    const refused = await cp.request('PATCH', upstreamUrl, { token: owner.token, body: { name: 'payments-eu' } });
    expect(refused.status).toBe(409);
    expect(refused.json['detail']).toMatch(/r-no-transfers/);
    // Another field of the same upstream changes freely.
    expect((await cp.request('PATCH', upstreamUrl, { token: owner.token, body: { description: 'EU payments' } })).status).toBe(200);

    // With the rule written for both names, the rename goes through.
    etag = String((await cp.request('GET', policyUrl(t.id), { token: owner.token })).headers['etag']);
    const widened = await putPolicy(t.id, owner.token, etag, [{ ...noTransfers, targets: [{ kind: 'tool', upstream: 'payments*', name: 'transfer_*' }] }]);
    expect(widened.status).toBe(200);
    expect((await cp.request('PATCH', upstreamUrl, { token: owner.token, body: { name: 'payments-eu' } })).status).toBe(200);
    // A pattern counts as a name: `payments*` covers `payments-eu` and not `billing`, so that rename would turn the
    // deny off too (before, only rules spelling the old name were looked at, and it went through).
    const unpatterned = await cp.request('PATCH', upstreamUrl, { token: owner.token, body: { name: 'billing' } });
    expect(unpatterned.status).toBe(409);
    expect(unpatterned.json['detail']).toMatch(/r-no-transfers/);
  });

  // Before, the check read the policy's flag only: a disabled rule (left out of the snapshot) refused the rename too.
  it('lets a rule that is disabled not stand in the way of a rename', async () => {
    const { t, owner, upstreamUrl } = await withPayments();
    const etag = String((await cp.request('GET', policyUrl(t.id), { token: owner.token })).headers['etag']);
    const oldDeny = { id: 'r-old-deny', enabled: false, subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'payments', name: 'transfer_*' }], effect: 'deny' };
    expect((await putPolicy(t.id, owner.token, etag, [oldDeny])).status).toBe(200);
    const renamed = await cp.request('PATCH', upstreamUrl, { token: owner.token, body: { name: 'payments-eu' } });
    expect(renamed.status).toBe(200);
  });

  it('checks a rename against the rules under the snapshot lock: a rule naming the upstream saved meanwhile is seen', async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const base = `/api/v1/tenants/${t.id}`;
    const created = await cp.request('POST', `${base}/upstreams`, { token: owner.token, body: { name: 'ledger', toolPrefix: 'ledger', transport: 'streamable_http', url: 'https://ledger.example.test/mcp' } });
    const etag = String((await cp.request('GET', policyUrl(t.id), { token: owner.token })).headers['etag']);
    const elsewhere = { id: 'r-elsewhere', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'other', name: 'x' }], effect: 'deny' };
    expect((await putPolicy(t.id, owner.token, etag, [elsewhere])).status).toBe(200);
    // A policy save under way (it holds the tenant's snapshot lock) makes its rule name the upstream, then commits.
    let release: () => void = () => undefined;
    let locked: () => void = () => undefined;
    const lockTaken = new Promise<void>((resolve) => (locked = resolve));
    const saving = cp.system.$transaction(
      async (tx) => {
        await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`pcs:policy-snapshots:${t.id}`}, 0))`;
        locked();
        await new Promise<void>((resolve) => (release = resolve));
        await tx.policyRule.updateMany({ where: { tenantId: t.id }, data: { targets: [{ kind: 'tool', upstream: 'ledger', name: 'x' }] } });
      },
      { timeout: 20_000 },
    );
    await lockTaken;
    const renaming = cp.request('PATCH', `${base}/upstreams/${String(created.json['id'])}`, { token: owner.token, body: { name: 'ledger-eu' } });
    await waitFor(async () => (await cp.system.$queryRaw<{ waiting: bigint }[]>`SELECT count(*) AS waiting FROM pg_locks WHERE NOT granted`)[0]?.waiting ?? 0n, { timeoutMs: 5_000 });
    release();
    await saving;
    const refused = await renaming;
    expect(refused.status).toBe(409);
    expect(refused.json['detail']).toMatch(/r-elsewhere/);
  });
});

describe('simulate', () => {
  it('answers "may this subject call this tool with these arguments" and "what can this subject see" as the engine does', async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const auditor = await cp.member(t.id, 'auditor');
    const engineer = await cp.member(t.id, 'member');
    const outsider = await cp.member(t.id, 'member');
    const base = `/api/v1/tenants/${t.id}`;

    const upstream = await cp.request('POST', `${base}/upstreams`, {
      token: owner.token,
      body: { name: 'Tickets', toolPrefix: 'tickets', transport: 'streamable_http', url: 'https://tickets.example.test/mcp' },
    });
    expect(upstream.status).toBe(201);
    for (const name of ['search_tickets', 'create_ticket', 'delete_ticket']) {
      await cp.system.upstreamTool.create({
        data: { tenantId: t.id, upstreamId: String(upstream.json['id']), kind: 'tool', name, definition: { name }, contentHash: name },
      });
    }
    const group = await cp.request('POST', `${base}/groups`, { token: owner.token, body: { externalId: 'eng', name: 'Engineering' } });
    expect(group.status).toBe(201);
    const groupId = String(group.json['id']);
    expect((await cp.request('POST', `${base}/groups/${groupId}/members`, { token: owner.token, body: { userId: engineer.id } })).status).toBe(201);
    const bot = await cp.request('POST', `${base}/agent-clients`, { token: owner.token, body: { name: 'Bot' } });
    const botId = String(bot.json['id']);

    const etag = String((await cp.request('GET', policyUrl(t.id), { token: owner.token })).headers['etag']);
    const saved = await putPolicy(t.id, owner.token, etag, [
      allowTickets('r-eng', [{ type: 'group', group: 'eng' }]),
      { id: 'r-no-delete', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: '*', name: 'delete_*' }], effect: 'deny' },
      {
        id: 'r-high-needs-approval',
        subjects: [{ type: 'group', group: 'eng' }],
        targets: [{ kind: 'tool', upstream: 'Tickets', name: 'create_ticket' }],
        effect: 'require_approval',
        condition: 'has(args.priority) && args.priority == "high"',
      },
      { id: 'r-bot-search', subjects: [{ type: 'agent_client', agentClientId: botId }], targets: [{ kind: 'tool', upstream: 'Tickets', name: 'search_*' }], effect: 'allow' },
    ]);
    expect(saved.status).toBe(200);
    const snapshot = await activeSnapshot(t.id);
    const time = '2026-12-01T10:00:00Z';

    const cases = [
      { subject: { userId: engineer.id }, tool: 'create_ticket', args: { priority: 'low' }, expected: 'allow' },
      { subject: { userId: engineer.id }, tool: 'create_ticket', args: { priority: 'high' }, expected: 'require_approval' },
      { subject: { userId: engineer.id }, tool: 'delete_ticket', args: {}, expected: 'deny' },
      { subject: { userId: outsider.id }, tool: 'search_tickets', args: {}, expected: 'deny' },
      { subject: { agentClientId: botId }, tool: 'search_tickets', args: {}, expected: 'allow' },
      { subject: { agentClientId: botId }, tool: 'create_ticket', args: {}, expected: 'deny' },
      { subject: { userId: newId() }, tool: 'search_tickets', args: {}, expected: 'deny' },
    ];
    for (const c of cases) {
      const res = await cp.request('POST', `${policyUrl(t.id)}/simulate`, {
        token: auditor.token,
        body: { subject: c.subject, tool: { upstream: 'Tickets', name: c.tool }, arguments: c.args, context: { time } },
      });
      expect(res.status, JSON.stringify(c)).toBe(200);
      const engine = evaluate(snapshot, {
        principal: { userId: c.subject.userId ?? null, agentClientId: c.subject.agentClientId ?? null },
        target: { kind: 'tool', upstream: 'Tickets', name: c.tool },
        arguments: c.args,
        context: { time, ip: null },
      });
      expect(engine.effect, JSON.stringify(c)).toBe(c.expected);
      expect(res.json, JSON.stringify(c)).toEqual({
        kind: 'decision',
        decision: {
          effect: engine.effect,
          ruleIds: [...engine.ruleIds],
          reason: engine.reason,
          agentMessage: engine.agentMessage,
          defaulted: engine.defaulted,
          snapshotVersion: engine.snapshotVersion,
          conditionErrors: [...engine.conditionErrors],
          rateLimits: [],
        },
      });
    }
    const denied = await cp.request('POST', `${policyUrl(t.id)}/simulate`, {
      token: auditor.token,
      body: { subject: { userId: engineer.id }, tool: { upstream: 'Tickets', name: 'delete_ticket' } },
    });
    expect(denied.json['decision']).toMatchObject({ effect: 'deny', ruleIds: ['r-no-delete'], defaulted: false });

    const known = ['search_tickets', 'create_ticket', 'delete_ticket'].map((name) => ({ kind: 'tool' as const, upstream: 'Tickets', name }));
    for (const subject of [{ userId: engineer.id }, { userId: outsider.id }, { agentClientId: botId }]) {
      const res = await cp.request('POST', `${policyUrl(t.id)}/simulate`, { token: auditor.token, body: { subject } });
      expect(res.status).toBe(200);
      const expected = visibleTools(snapshot, { userId: subject.userId ?? null, agentClientId: subject.agentClientId ?? null }, known);
      expect(res.json).toMatchObject({ kind: 'visibility', snapshotVersion: snapshot.version, considered: 3 });
      expect(new Set((res.json['visible'] as { name: string }[]).map((v) => v.name))).toEqual(new Set(expected.map((v) => v.name)));
    }
    const engineerSees = await cp.request('POST', `${policyUrl(t.id)}/simulate`, { token: auditor.token, body: { subject: { userId: engineer.id } } });
    expect((engineerSees.json['visible'] as { name: string }[]).map((v) => v.name).sort()).toEqual(['create_ticket', 'search_tickets']);

    const bad = await cp.request('POST', `${policyUrl(t.id)}/simulate`, { token: auditor.token, body: { subject: {} } });
    expect(bad.status).toBe(400);
    expect((await cp.request('POST', `${policyUrl(t.id)}/simulate`, { token: engineer.token, body: { subject: { userId: engineer.id } } })).status).toBe(403);
  });

  it('denies everything (fail safe) when the tenant has no snapshot yet', async () => {
    const t = await cp.tenant();
    const admin = await cp.member(t.id, 'admin');
    const res = await cp.request('POST', `${policyUrl(t.id)}/simulate`, {
      token: admin.token,
      body: { subject: { userId: admin.id }, tool: { upstream: 'Tickets', name: 'search' } },
    });
    expect(res.json).toMatchObject({ kind: 'decision', decision: { effect: 'deny', snapshotVersion: null, defaulted: true } });
  });
});

describe('snapshots', () => {
  it('writes exactly one new snapshot per enforcement-affecting change, in its transaction; a refused change writes none', async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const base = `/api/v1/tenants/${t.id}`;
    let expected = 0;

    /** Runs a change and checks it produced exactly one new active snapshot (or none), named in its audit event. */
    const step = async <R extends { status: number }>(comment: string | null, run: () => Promise<R>, status: number): Promise<R> => {
      const eventsBefore = (await cp.auditEvents(t.id)).length;
      const res = await run();
      expect(res.status, comment ?? 'no snapshot').toBe(status);
      const rows = await snapshots(t.id);
      if (comment === null) {
        expect(rows, 'no new snapshot').toHaveLength(expected);
        return res;
      }
      expected += 1;
      expect(rows, comment).toHaveLength(expected);
      expect(rows.filter((row) => row.active).map((row) => row.version)).toEqual([expected]);
      expect(rows.at(-1)?.comment).toBe(comment);
      const events = await cp.eventsAtLeast(t.id, eventsBefore + 1);
      expect(events.at(-1)?.snapshotVersion, comment).toBe(expected);
      return res;
    };

    const added = await step('member.add', () => cp.request('POST', `${base}/members`, { token: owner.token, body: { email: `m-${newId()}@example.test`, role: 'member' } }), 201);
    const membershipId = String(added.json['id']);
    const userId = String(added.json['userId']);
    await step('member.role_change', () => cp.request('PATCH', `${base}/members/${membershipId}`, { token: owner.token, body: { role: 'admin' } }), 200);
    const group = await step('group.create', () => cp.request('POST', `${base}/groups`, { token: owner.token, body: { externalId: 'ops', name: 'Ops' } }), 201);
    const groupId = String(group.json['id']);
    await step('group.member_add', () => cp.request('POST', `${base}/groups/${groupId}/members`, { token: owner.token, body: { userId } }), 201);
    await step(null, () => cp.request('PATCH', `${base}/groups/${groupId}`, { token: owner.token, body: { name: 'Operations' } }), 200);
    const upstream = await step('upstream.create', () =>
      cp.request('POST', `${base}/upstreams`, { token: owner.token, body: { name: 'Files', toolPrefix: 'files', transport: 'sse', url: 'https://files.example.test/sse' } }), 201);
    const client = await step('agent_client.create', () => cp.request('POST', `${base}/agent-clients`, { token: owner.token, body: { name: 'Bot' } }), 201);
    const clientId = String(client.json['id']);

    const etag = String((await cp.request('GET', policyUrl(t.id), { token: owner.token })).headers['etag']);
    const rules = [
      allowTickets('r-ops', [{ type: 'group', group: 'ops' }]),
      allowTickets('r-user', [{ type: 'user', userId }]),
      allowTickets('r-bot', [{ type: 'agent_client', agentClientId: clientId }]),
    ];
    await step('policy.update', () => putPolicy(t.id, owner.token, etag, rules), 200);

    // Changes that would leave the policy uncompilable are refused (409 naming the rule) and leave no snapshot.
    const deleteGroup = await step(null, () => cp.request('DELETE', `${base}/groups/${groupId}`, { token: owner.token }), 409);
    expect(deleteGroup).toMatchObject({ json: { code: 'CONFLICT', errors: [{ ruleId: 'r-ops', path: 'rules.0.subjects.0.group' }] } });
    expect(await cp.system.group.count({ where: { tenantId: t.id, id: groupId } })).toBe(1);
    const removeMember = await step(null, () => cp.request('DELETE', `${base}/members/${membershipId}`, { token: owner.token }), 409);
    expect((removeMember.json['errors'] as { ruleId: string }[]).map((e) => e.ruleId)).toContain('r-user');
    expect(await cp.system.membership.count({ where: { tenantId: t.id, id: membershipId } })).toBe(1);
    await step(null, () => cp.request('DELETE', `${base}/agent-clients/${clientId}`, { token: owner.token }), 409);
    expect(await cp.system.groupMember.count({ where: { tenantId: t.id, groupId } })).toBe(1);
    // A stale policy save writes nothing either.
    await step(null, () => putPolicy(t.id, owner.token, etag, []), 412);

    await step('upstream.update', () => cp.request('PATCH', `${base}/upstreams/${String(upstream.json['id'])}`, { token: owner.token, body: { description: 'Shared files' } }), 200);
    await step('upstream.delete', () => cp.request('DELETE', `${base}/upstreams/${String(upstream.json['id'])}`, { token: owner.token }), 204);
    await step('group.member_remove', () => cp.request('DELETE', `${base}/groups/${groupId}/members/${userId}`, { token: owner.token }), 204);
    const current = String((await cp.request('GET', policyUrl(t.id), { token: owner.token })).headers['etag']);
    await step('policy.update', () => putPolicy(t.id, owner.token, current, []), 200);
    await step('group.delete', () => cp.request('DELETE', `${base}/groups/${groupId}`, { token: owner.token }), 204);
    await step('agent_client.delete', () => cp.request('DELETE', `${base}/agent-clients/${clientId}`, { token: owner.token }), 204);
    await step('member.remove', () => cp.request('DELETE', `${base}/members/${membershipId}`, { token: owner.token }), 204);

    const listed = await cp.request('GET', `${base}/snapshots?limit=100`, { token: owner.token });
    expect(listed.json.items?.map((s) => s['version'])).toEqual(Array.from({ length: expected }, (_, i) => i + 1));
  });

  it('serialises concurrent writers: one of two racing saves wins, concurrent changes get consecutive versions', async () => {
    const t = await cp.tenant();
    const first = await cp.member(t.id, 'admin');
    const second = await cp.member(t.id, 'admin');
    const race = await Promise.all([
      putPolicy(t.id, first.token, '"0"', [allowTickets('r-first')]),
      putPolicy(t.id, second.token, '"0"', [allowTickets('r-second')]),
    ]);
    expect(race.map((res) => res.status).sort()).toEqual([200, 412]);
    const winner = race.find((res) => res.status === 200);
    const stored = await cp.request('GET', policyUrl(t.id), { token: first.token });
    expect(stored.json['rules']).toEqual(winner?.json['rules']);
    expect(await snapshots(t.id)).toHaveLength(1);

    const created = await Promise.all(
      ['a', 'b', 'c', 'd'].map((externalId) => cp.request('POST', `/api/v1/tenants/${t.id}/groups`, { token: first.token, body: { externalId, name: externalId } })),
    );
    expect(created.map((res) => res.status)).toEqual([201, 201, 201, 201]);
    const rows = await snapshots(t.id);
    expect(rows.map((row) => row.version)).toEqual([1, 2, 3, 4, 5]);
    expect(rows.filter((row) => row.active).map((row) => row.version)).toEqual([5]);
    // The last snapshot was compiled after every group committed: all four are in its directory.
    expect([...(await activeSnapshot(t.id)).directory.groups].sort()).toEqual(['a', 'b', 'c', 'd']);
    const firstPage = await cp.request('GET', `/api/v1/tenants/${t.id}/snapshots?limit=2`, { token: first.token });
    expect(firstPage.json.items?.map((s) => s['version'])).toEqual([1, 2]);
    const next = await cp.request('GET', `/api/v1/tenants/${t.id}/snapshots?limit=2&cursor=${String(firstPage.json['nextCursor'])}`, { token: first.token });
    expect(next.json.items?.map((s) => s['version'])).toEqual([3, 4]);
  });

  it('keeps snapshots immutable (only the active flag may change)', async () => {
    const t = await cp.tenant();
    const admin = await cp.member(t.id, 'admin');
    expect((await putPolicy(t.id, admin.token, '"0"', [allowTickets('r-1')])).status).toBe(200);
    await expect(
      cp.system.policySnapshot.updateMany({ where: { tenantId: t.id, version: 1 }, data: { checksum: 'tampered' } }),
    ).rejects.toThrow(/immutable/);
  });

  it('rolls back through the API: the old rules return, compiled into a new version; audited, announced, ETags go stale', async () => {
    const t = await cp.tenant();
    const admin = await cp.member(t.id, 'admin');
    const user = await cp.member(t.id, 'member');
    const auditor = await cp.member(t.id, 'auditor');
    const ask = async () =>
      (
        await cp.request('POST', `${policyUrl(t.id)}/simulate`, {
          token: admin.token,
          body: { subject: { userId: user.id }, tool: { upstream: 'Tickets', name: 'search' } },
        })
      ).json['decision'] as { effect: string; snapshotVersion: number };

    expect((await putPolicy(t.id, admin.token, '"0"', [allowTickets('r-open')])).status).toBe(200);
    expect(await ask()).toMatchObject({ effect: 'allow', snapshotVersion: 1 });
    const broken = await putPolicy(t.id, admin.token, '"1"', [{ ...allowTickets('r-closed'), effect: 'deny' }]);
    expect(broken.status).toBe(200);
    expect(await ask()).toMatchObject({ effect: 'deny', snapshotVersion: 2 });
    const before = await snapshots(t.id);

    expect((await cp.request('POST', `/api/v1/tenants/${t.id}/snapshots/1/rollback`, { token: auditor.token })).status).toBe(403);
    const rolled = await cp.request('POST', `/api/v1/tenants/${t.id}/snapshots/1/rollback`, { token: admin.token });
    expect(rolled.status).toBe(200);
    expect(rolled.headers['etag']).toBe('"3"');
    expect(rolled.json).toMatchObject({ version: 3, activeSnapshotVersion: 3, snapshot: { version: 3 } });
    expect((rolled.json['rules'] as Rule[]).map((r) => r['id'])).toEqual(['r-open']);
    expect(await ask()).toMatchObject({ effect: 'allow', snapshotVersion: 3 });

    const after = await snapshots(t.id);
    expect(after.slice(0, 2).map((s) => s.checksum)).toEqual(before.map((s) => s.checksum));
    expect(after.map((s) => [s.version, s.active])).toEqual([
      [1, false],
      [2, false],
      [3, true],
    ]);
    expect(after[2]?.comment).toBe('policy.rollback to v1');
    // An editor still holding the pre-rollback ETag cannot overwrite the rollback.
    expect((await putPolicy(t.id, admin.token, '"2"', [])).status).toBe(412);

    const events = await cp.eventsAtLeast(t.id, 3);
    expect(events.at(-1)).toMatchObject({ method: 'policy.rollback', targetType: 'policy_snapshot', targetId: '1', snapshotVersion: 3 });
    await waitFor(() => notices.filter((n) => n === t.id).length >= 3, { description: 'three snapshot notices' });

    expect((await cp.request('POST', `/api/v1/tenants/${t.id}/snapshots/99/rollback`, { token: admin.token })).status).toBe(404);
    expect((await cp.request('POST', `/api/v1/tenants/${t.id}/snapshots/0/rollback`, { token: admin.token })).status).toBe(404);
    expect((await cp.request('POST', `/api/v1/tenants/${t.id}/snapshots/abc/rollback`, { token: admin.token })).status).toBe(404);
  });

  it('refuses a rollback whose rules refer to what no longer exists (409 naming the rule), writing nothing', async () => {
    const t = await cp.tenant();
    const admin = await cp.member(t.id, 'admin');
    const base = `/api/v1/tenants/${t.id}`;
    const group = await cp.request('POST', `${base}/groups`, { token: admin.token, body: { externalId: 'temps', name: 'Temps' } });
    // v1: group.create; v2: a rule for the group; v3: the rule removed; v4: the group deleted.
    expect((await putPolicy(t.id, admin.token, '"0"', [allowTickets('r-temps', [{ type: 'group', group: 'temps' }])])).status).toBe(200);
    expect((await putPolicy(t.id, admin.token, '"1"', [])).status).toBe(200);
    expect((await cp.request('DELETE', `${base}/groups/${String(group.json['id'])}`, { token: admin.token })).status).toBe(204);
    expect(await snapshots(t.id)).toHaveLength(4);

    const res = await cp.request('POST', `${base}/snapshots/2/rollback`, { token: admin.token });
    expect(res.status).toBe(409);
    expect(res.json).toMatchObject({ code: 'CONFLICT', errors: [{ ruleId: 'r-temps', path: 'rules.0.subjects.0.group' }] });
    expect(await snapshots(t.id)).toHaveLength(4);
    expect((await cp.request('GET', policyUrl(t.id), { token: admin.token })).json).toMatchObject({ version: 2, rules: [] });
  });
});

describe('groups', () => {
  it('creates, lists, renames and deletes groups and their members; audited; bad input is a 400, duplicates 409', async () => {
    const t = await cp.tenant();
    const admin = await cp.member(t.id, 'admin');
    const member = await cp.member(t.id, 'member');
    const stranger = await cp.user();
    const base = `/api/v1/tenants/${t.id}/groups`;

    const created = await cp.request('POST', base, { token: admin.token, body: { externalId: ' sre ', name: 'SRE' } });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ externalId: 'sre', name: 'SRE', source: 'manual', memberCount: 0 });
    const id = String(created.json['id']);
    expect((await cp.request('POST', base, { token: admin.token, body: { externalId: 'sre', name: 'Again' } })).status).toBe(409);
    const invalid = await cp.request('POST', base, { token: admin.token, body: { externalId: '', name: '', extra: true } });
    expect(invalid.status).toBe(400);
    expect((invalid.json['errors'] as { path: string }[]).map((e) => e.path)).toEqual(expect.arrayContaining(['externalId', 'name']));

    expect((await cp.request('POST', `${base}/${id}/members`, { token: admin.token, body: { userId: member.id } })).status).toBe(201);
    expect((await cp.request('POST', `${base}/${id}/members`, { token: admin.token, body: { userId: member.id } })).status).toBe(409);
    const notMember = await cp.request('POST', `${base}/${id}/members`, { token: admin.token, body: { userId: stranger.id } });
    expect(notMember.status).toBe(400);
    expect(notMember.json['errors']).toEqual([{ path: 'userId', message: 'not a member of this tenant' }]);

    const members = await cp.request('GET', `${base}/${id}/members`, { token: admin.token });
    expect(members.json.items).toEqual([expect.objectContaining({ userId: member.id, email: member.email })]);
    expect((await cp.request('GET', `${base}/${id}`, { token: admin.token })).json).toMatchObject({ memberCount: 1 });
    expect((await cp.request('PATCH', `${base}/${id}`, { token: admin.token, body: { name: 'Site Reliability' } })).json).toMatchObject({
      name: 'Site Reliability',
      externalId: 'sre',
    });
    expect((await cp.request('PATCH', `${base}/${id}`, { token: admin.token, body: { externalId: 'other' } })).status).toBe(400);
    expect((await cp.request('GET', base, { token: admin.token })).json.items?.map((g) => g['id'])).toEqual([id]);

    expect((await cp.request('DELETE', `${base}/${id}/members/${member.id}`, { token: admin.token })).status).toBe(204);
    expect((await cp.request('DELETE', `${base}/${id}/members/${member.id}`, { token: admin.token })).status).toBe(404);
    expect((await cp.request('DELETE', `${base}/${id}`, { token: admin.token })).status).toBe(204);
    expect((await cp.request('GET', `${base}/${id}`, { token: admin.token })).status).toBe(404);

    const events = await cp.eventsAtLeast(t.id, 5);
    expect(events.map((e) => e.method)).toEqual(['group.create', 'group.member_add', 'group.update', 'group.member_remove', 'group.delete']);
    expect(events[2]).toMatchObject({ targetType: 'group', targetId: id, snapshotVersion: null, arguments: { before: { name: 'SRE' }, after: { name: 'Site Reliability' } } });
  });

  it('records what each of two renames at once replaced: the second\'s "before" is the first\'s "after"', async () => {
    const t = await cp.tenant();
    const alice = await cp.member(t.id, 'admin');
    const bob = await cp.member(t.id, 'admin');
    const base = `/api/v1/tenants/${t.id}/groups`;
    const id = String((await cp.request('POST', base, { token: alice.token, body: { externalId: 'ops', name: 'Ops' } })).json['id']);

    // Both read the group before either renames it; the second's update waits for the first's.
    const answers = await cp.atOnce('groups', id, () => [
      cp.request('PATCH', `${base}/${id}`, { token: alice.token, body: { name: 'Operations' } }),
      cp.request('PATCH', `${base}/${id}`, { token: bob.token, body: { name: 'Platform' } }),
    ]);
    expect(answers.map((answer) => answer.status)).toEqual([200, 200]);

    const renames = (await cp.eventsAtLeast(t.id, 3))
      .filter((event) => event.method === 'group.update')
      .map((event) => event.arguments as { before: { name: string }; after: { name: string } })
      .map(({ before, after }) => [before.name, after.name])
      .sort(([a], [b]) => (a === 'Ops' ? -1 : b === 'Ops' ? 1 : 0));
    // Whichever took the lock first. Before, both said they renamed "Ops": the second's "before" was its stale read.
    expect([
      [['Ops', 'Operations'], ['Operations', 'Platform']],
      [['Ops', 'Platform'], ['Platform', 'Operations']],
    ]).toContainEqual(renames);
    expect((await cp.request('GET', `${base}/${id}`, { token: alice.token })).json['name']).toBe(renames[1]?.[1]);
  });

  it('records the name a group had when deleted, a rename committed just before included', async () => {
    const t = await cp.tenant();
    const alice = await cp.member(t.id, 'admin');
    const base = `/api/v1/tenants/${t.id}/groups`;
    const id = String((await cp.request('POST', base, { token: alice.token, body: { externalId: 'ops', name: 'Ops' } })).json['id']);

    // The rename is sent first (it waits on the group's row), the deletion a moment later: it reads the group, then waits.
    const [renamed, deleted] = await cp.atOnce('groups', id, () => [
      cp.request('PATCH', `${base}/${id}`, { token: alice.token, body: { name: 'Operations' } }),
      new Promise((resolve) => setTimeout(resolve, 300)).then(() => cp.request('DELETE', `${base}/${id}`, { token: alice.token })),
    ]);
    expect(deleted?.status).toBe(204);
    const events = await cp.eventsAtLeast(t.id, renamed?.status === 200 ? 3 : 2);
    const deletion = events.find((event) => event.method === 'group.delete')?.arguments as { before: { name: string } } | undefined;
    // The rename either committed first (the deletion removed "Operations") or found the group gone (404). Before, a
    // deletion waiting on the rename recorded the name it had read before waiting: "Ops".
    expect({ rename: renamed?.status, deletedName: deletion?.before.name }).toEqual(
      renamed?.status === 200 ? { rename: 200, deletedName: 'Operations' } : { rename: 404, deletedName: 'Ops' },
    );
  });
});

describe('tenant isolation and roles', () => {
  it('answers 404 to a member of tenant A for every policy, snapshot and group route of tenant B, with B’s real ids', async () => {
    const a = await cp.tenant();
    const b = await cp.tenant();
    const ownerOfA = await cp.member(a.id, 'owner');
    const ownerOfB = await cp.member(b.id, 'owner');
    const memberOfB = await cp.member(b.id, 'member');
    const group = await cp.request('POST', `/api/v1/tenants/${b.id}/groups`, { token: ownerOfB.token, body: { externalId: 'b-team', name: 'B' } });
    const groupId = String(group.json['id']);
    await cp.request('POST', `/api/v1/tenants/${b.id}/groups/${groupId}/members`, { token: ownerOfB.token, body: { userId: memberOfB.id } });
    const before = await snapshots(b.id);
    expect(before).toHaveLength(2);

    const routes = cp.registry.list().filter((route) => /\/(policy|snapshots|groups)(\/|$)/.test(route.path));
    expect(routes.length).toBeGreaterThanOrEqual(13);
    const bodies: Record<string, unknown> = {
      'PUT /api/v1/tenants/:tenantId/policy': { defaultEffect: 'allow', rules: [] },
      'POST /api/v1/tenants/:tenantId/policy/simulate': { subject: { userId: memberOfB.id } },
      'POST /api/v1/tenants/:tenantId/groups': { externalId: 'x', name: 'x' },
      'PATCH /api/v1/tenants/:tenantId/groups/:groupId': { name: 'taken over' },
      'POST /api/v1/tenants/:tenantId/groups/:groupId/members': { userId: ownerOfA.id },
    };
    for (const route of routes) {
      const url = route.path
        .replace(':tenantId', b.id)
        .replace(':groupId', groupId)
        .replace(':userId', memberOfB.id)
        .replace(':version', '1');
      const res = await cp.request(route.method, url, {
        token: ownerOfA.token,
        body: bodies[`${route.method} ${route.path}`] ?? (route.method === 'GET' || route.method === 'DELETE' ? undefined : {}),
        headers: { 'if-match': '"0"' },
      });
      expect(res.status, `${route.method} ${url}`).toBe(404);
      expect(res.text).not.toContain('b-team');
    }
    expect(await snapshots(b.id)).toEqual(before);
    expect(await cp.system.group.findFirst({ where: { id: groupId }, select: { name: true } })).toEqual({ name: 'B' });
    expect(await cp.system.groupMember.count({ where: { tenantId: b.id } })).toBe(1);
  });

  it('lets auditors read policies, snapshots and groups but not change them; members may do neither', async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const auditor = await cp.member(t.id, 'auditor');
    const member = await cp.member(t.id, 'member');
    const base = `/api/v1/tenants/${t.id}`;
    const group = await cp.request('POST', `${base}/groups`, { token: owner.token, body: { externalId: 'g', name: 'G' } });
    const groupId = String(group.json['id']);

    const reads: [string, string, unknown?][] = [
      ['GET', `${base}/policy`],
      ['POST', `${base}/policy/simulate`, { subject: { userId: member.id } }],
      ['GET', `${base}/snapshots`],
      ['GET', `${base}/groups`],
      ['GET', `${base}/groups/${groupId}`],
      ['GET', `${base}/groups/${groupId}/members`],
    ];
    const writes: [string, string, unknown?][] = [
      ['PUT', `${base}/policy`, { defaultEffect: 'allow', rules: [] }],
      ['POST', `${base}/snapshots/1/rollback`],
      ['POST', `${base}/groups`, { externalId: 'h', name: 'H' }],
      ['PATCH', `${base}/groups/${groupId}`, { name: 'renamed' }],
      ['DELETE', `${base}/groups/${groupId}`],
      ['POST', `${base}/groups/${groupId}/members`, { userId: member.id }],
      ['DELETE', `${base}/groups/${groupId}/members/${member.id}`],
    ];
    for (const [method, url, body] of reads) {
      expect((await cp.request(method, url, { token: auditor.token, body })).status, `auditor ${method} ${url}`).toBe(200);
      expect((await cp.request(method, url, { token: member.token, body })).status, `member ${method} ${url}`).toBe(403);
    }
    for (const [method, url, body] of writes) {
      const res = await cp.request(method, url, { token: auditor.token, body, headers: { 'if-match': '"0"' } });
      expect(res.status, `auditor ${method} ${url}`).toBe(403);
      expect(res.json['code']).toBe('FORBIDDEN');
    }
    expect(await snapshots(t.id)).toHaveLength(1);
    expect((await cp.request('GET', `${base}/groups/${groupId}`, { token: owner.token })).json).toMatchObject({ name: 'G', memberCount: 0 });
  });
});
