import { hashApiKey } from '@portcullis/auth/api-keys';
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { TenantScope } from '@portcullis/control-plane/auth';
import { ApprovalsService } from '@portcullis/control-plane/feature-approvals';
import type { TenantId, UserId } from '@portcullis/shared/util-ids';
import { testContext, waitFor } from '@portcullis/shared/util-testing';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlaneHarness } from './testing/control-plane-harness';

// The approvals API against the real app, Postgres (application role, RLS) and Redis. Approval rows are written
// with the system client, as a gateway holding a call would have written them.
let cp: ControlPlaneHarness;
let subscriber: Redis;
const notices: string[] = [];

beforeAll(async () => {
  cp = await startControlPlane();
  subscriber = createRedisClient({ url: testContext().redisUrl, connectionName: 'approvals-test-sub' });
  await subscriber.subscribe(CHANGE_CHANNELS.approvals);
  subscriber.on('message', (_channel: string, message: string) => notices.push(message));
});
afterAll(async () => {
  await subscriber?.quit();
  await cp?.close();
});

const hashOf = (text: string) => createHash('sha256').update(text).digest('hex');

async function held(
  tenantId: TenantId,
  options: {
    requesterUserId?: string;
    agentClientId?: string;
    expiresInMs?: number;
    heldForMs?: number;
    args?: Record<string, unknown>;
    tool?: string;
    /** Left out: the row as written before the kind and method were recorded (kind defaults to tool, method null). */
    target?: { kind: 'tool' | 'prompt' | 'resource'; method: string };
  } = {},
) {
  const args = options.args ?? { path: '/etc/hosts', mode: 'read' };
  return cp.system.approval.create({
    data: {
      tenantId,
      requesterUserId: options.requesterUserId ?? null,
      agentClientId: options.agentClientId ?? null,
      mcpSessionId: randomBytes(8).toString('hex'),
      upstreamId: randomUUID(),
      ...(options.target === undefined ? {} : { kind: options.target.kind, method: options.target.method }),
      tool: options.tool ?? 'delete_file',
      argumentsHash: hashOf(JSON.stringify(args)),
      arguments: args as never,
      reason: 'rule r1 requires approval',
      snapshotVersion: 3,
      expiresAt: new Date(Date.now() + (options.expiresInMs ?? 60_000)),
      ...(options.heldForMs === undefined ? {} : { heldUntil: new Date(Date.now() + options.heldForMs) }),
      traceId: 'trace-1',
    },
    select: { id: true, argumentsHash: true },
  });
}

async function setup() {
  const t = await cp.tenant();
  const owner = await cp.member(t.id, 'owner');
  const admin = await cp.member(t.id, 'admin');
  const base = `/api/v1/tenants/${t.id}/approvals`;
  return { t, owner, admin, base };
}

describe('approvals API', () => {
  it('lists pending approvals and approves one for exactly the reviewed arguments, audited and announced', async () => {
    const { t, admin, base } = await setup();
    const approval = await held(t.id);
    const listed = await cp.request('GET', `${base}?status=pending`, { token: admin.token });
    expect(listed.status).toBe(200);
    expect(listed.json.items).toEqual([
      expect.objectContaining({ id: approval.id, status: 'pending', tool: 'delete_file', argumentsHash: approval.argumentsHash, decidedById: null }),
    ]);

    const approved = await cp.request('POST', `${base}/${approval.id}/approve`, { token: admin.token, body: { argumentsHash: approval.argumentsHash, note: 'ok once' } });
    expect(approved.status).toBe(200);
    expect(approved.json).toMatchObject({ id: approval.id, status: 'approved', decidedById: admin.id, decisionNote: 'ok once', editedArguments: null });
    expect((await cp.request('GET', `${base}?status=pending`, { token: admin.token })).json.items).toEqual([]);
    expect((await cp.request('GET', `${base}?status=approved`, { token: admin.token })).json.items?.map((a) => a['id'])).toEqual([approval.id]);

    const events = await cp.eventsAtLeast(t.id, 1);
    expect(events[0]).toMatchObject({ method: 'approval.approve', actorUserId: admin.id, targetType: 'approval', targetId: approval.id, snapshotVersion: 3 });
    expect(events[0]?.arguments).toMatchObject({ before: { status: 'pending' }, after: { status: 'approved' } });
    await waitFor(() => notices.includes(t.id), { description: 'approvals notice' });
  });

  it('denies with a note, and approves with edited arguments', async () => {
    const { t, owner, base } = await setup();
    const first = await held(t.id);
    const denied = await cp.request('POST', `${base}/${first.id}/deny`, { token: owner.token, body: { note: 'use the staging host' } });
    expect(denied.status).toBe(200);
    expect(denied.json).toMatchObject({ status: 'denied', decisionNote: 'use the staging host', decidedById: owner.id });
    // An empty body is a plain denial.
    const second = await held(t.id);
    expect((await cp.request('POST', `${base}/${second.id}/deny`, { token: owner.token })).json).toMatchObject({ status: 'denied', decisionNote: null });

    const third = await held(t.id);
    const edited = await cp.request('POST', `${base}/${third.id}/approve`, {
      token: owner.token,
      body: { argumentsHash: third.argumentsHash, arguments: { path: '/tmp/hosts', mode: 'read' } },
    });
    expect(edited.status).toBe(200);
    expect(edited.json).toMatchObject({ status: 'approved', editedArguments: { path: '/tmp/hosts', mode: 'read' }, arguments: { path: '/etc/hosts' } });
    const row = await cp.system.approval.findUniqueOrThrow({ where: { id: third.id }, select: { editedArguments: true, status: true } });
    expect(row).toEqual({ status: 'approved', editedArguments: { path: '/tmp/hosts', mode: 'read' } });
    const actions = (await cp.eventsAtLeast(t.id, 3)).map((e) => e.method);
    expect(actions).toEqual(['approval.deny', 'approval.deny', 'approval.approve_edited']);

    // A credential typed into the edited arguments goes to the call, but is not shown back (auditors read this too).
    const fourth = await held(t.id);
    const withToken = await cp.request('POST', `${base}/${fourth.id}/approve`, {
      token: owner.token,
      body: { argumentsHash: fourth.argumentsHash, arguments: { path: '/tmp/hosts', apiKey: 'sk-live-0123456789' } },
    });
    expect(withToken.status).toBe(200);
    expect(JSON.stringify(withToken.json)).not.toContain('sk-live-0123456789');
    expect(JSON.stringify((await cp.request('GET', `${base}/${fourth.id}`, { token: owner.token })).json)).not.toContain('sk-live-0123456789');
    const stored = await cp.system.approval.findUniqueOrThrow({ where: { id: fourth.id }, select: { editedArguments: true } });
    expect(stored.editedArguments).toEqual({ path: '/tmp/hosts', apiKey: 'sk-live-0123456789' });
  });

  it('answers 409 to a second decision and to an expired approval (listed as expired)', async () => {
    const { t, owner, admin, base } = await setup();
    const approval = await held(t.id);
    expect((await cp.request('POST', `${base}/${approval.id}/deny`, { token: owner.token })).status).toBe(200);
    const again = await cp.request('POST', `${base}/${approval.id}/approve`, { token: admin.token, body: { argumentsHash: approval.argumentsHash } });
    expect(again.status).toBe(409);
    expect(again.json['detail']).toMatch(/already denied/);

    const stale = await held(t.id, { expiresInMs: -1_000 });
    const late = await cp.request('POST', `${base}/${stale.id}/approve`, { token: admin.token, body: { argumentsHash: stale.argumentsHash } });
    expect(late.status).toBe(409);
    expect(late.json['detail']).toMatch(/already expired/);
    expect((await cp.request('GET', `${base}/${stale.id}`, { token: admin.token })).json).toMatchObject({ status: 'expired' });
    expect((await cp.request('GET', `${base}?status=expired`, { token: admin.token })).json.items?.map((a) => a['id'])).toEqual([stale.id]);
    // Still pending in the table (the holding gateway marks it); nobody decided it.
    expect(await cp.system.approval.findUniqueOrThrow({ where: { id: stale.id }, select: { status: true, decidedById: true } })).toEqual({ status: 'pending', decidedById: null });
  });

  it('refuses self-approval by the admin who created the requesting agent client’s key, all through the API', async () => {
    const { t, owner, admin, base } = await setup();
    const client = await cp.request('POST', `/api/v1/tenants/${t.id}/agent-clients`, { token: admin.token, body: { name: 'my bot' } });
    expect(client.status).toBe(201);
    const agentClientId = String(client.json['id']);
    // A key made through the API belongs to the agent client only (no userId): its creator still saw the secret.
    const key = await cp.request('POST', `/api/v1/tenants/${t.id}/api-keys`, { token: admin.token, body: { name: 'bot key', agentClientId } });
    expect(key.status).toBe(201);
    const viaOwnKey = await held(t.id, { agentClientId });
    const refused = await cp.request('POST', `${base}/${viaOwnKey.id}/approve`, { token: admin.token, body: { argumentsHash: viaOwnKey.argumentsHash } });
    expect(refused.status).toBe(403);
    expect(refused.json['detail']).toMatch(/made by you/);
    // Someone who never held a key of that agent client decides it.
    expect((await cp.request('POST', `${base}/${viaOwnKey.id}/approve`, { token: owner.token, body: { argumentsHash: viaOwnKey.argumentsHash } })).status).toBe(200);
  });

  it('binds the decision to the reviewed arguments: another argumentsHash is a 409', async () => {
    const { t, admin, base } = await setup();
    const approval = await held(t.id);
    const wrong = await cp.request('POST', `${base}/${approval.id}/approve`, { token: admin.token, body: { argumentsHash: hashOf('something else') } });
    expect(wrong.status).toBe(409);
    expect(wrong.json['errors']).toEqual([{ path: 'argumentsHash', message: expect.any(String) }]);
    expect((await cp.system.approval.findUniqueOrThrow({ where: { id: approval.id }, select: { status: true } })).status).toBe('pending');
  });

  it('refuses self-approval: the requester, or a user whose API key the requesting agent client holds', async () => {
    const { t, owner, admin, base } = await setup();
    const own = await held(t.id, { requesterUserId: admin.id });
    const refused = await cp.request('POST', `${base}/${own.id}/approve`, { token: admin.token, body: { argumentsHash: own.argumentsHash } });
    expect(refused.status).toBe(403);
    expect(refused.json['detail']).toMatch(/made by you/);
    expect((await cp.request('POST', `${base}/${own.id}/deny`, { token: admin.token })).status).toBe(403);
    expect((await cp.request('POST', `${base}/${own.id}/approve`, { token: owner.token, body: { argumentsHash: own.argumentsHash } })).status).toBe(200);

    const agent = await cp.system.agentClient.create({ data: { tenantId: t.id, name: 'admin’s agent' }, select: { id: true } });
    await cp.system.apiKey.create({
      data: { tenantId: t.id, name: 'k', keyHash: hashApiKey(`pcs_${randomBytes(24).toString('hex')}`), displayPrefix: 'pcs_test', agentClientId: agent.id, userId: admin.id },
    });
    const viaAgent = await held(t.id, { agentClientId: agent.id });
    expect((await cp.request('POST', `${base}/${viaAgent.id}/approve`, { token: admin.token, body: { argumentsHash: viaAgent.argumentsHash } })).status).toBe(403);
    expect((await cp.request('POST', `${base}/${viaAgent.id}/approve`, { token: owner.token, body: { argumentsHash: viaAgent.argumentsHash } })).status).toBe(200);

    // Revoking one's key after the call was held does not make the call someone else's.
    const revokedAgent = await cp.system.agentClient.create({ data: { tenantId: t.id, name: 'admin’s old agent' }, select: { id: true } });
    await cp.system.apiKey.create({
      data: {
        tenantId: t.id,
        name: 'k2',
        keyHash: hashApiKey(`pcs_${randomBytes(24).toString('hex')}`),
        displayPrefix: 'pcs_test',
        agentClientId: revokedAgent.id,
        userId: admin.id,
        revokedAt: new Date(),
      },
    });
    const viaRevoked = await held(t.id, { agentClientId: revokedAgent.id });
    expect((await cp.request('POST', `${base}/${viaRevoked.id}/approve`, { token: admin.token, body: { argumentsHash: viaRevoked.argumentsHash } })).status).toBe(403);
  });

  it('lets auditors read but not decide, and members do neither', async () => {
    const { t, base } = await setup();
    const auditor = await cp.member(t.id, 'auditor');
    const member = await cp.member(t.id, 'member');
    const approval = await held(t.id);
    expect((await cp.request('GET', `${base}/${approval.id}`, { token: auditor.token })).status).toBe(200);
    expect((await cp.request('POST', `${base}/${approval.id}/approve`, { token: auditor.token, body: { argumentsHash: approval.argumentsHash } })).status).toBe(403);
    expect((await cp.request('GET', base, { token: member.token })).status).toBe(403);
    expect((await cp.request('POST', `${base}/${approval.id}/deny`, { token: member.token })).status).toBe(403);
  });

  it('shows the arguments exactly as the call carries them to those who decide, and redacted to auditors and in the audit trail', async () => {
    const { t, admin, base } = await setup();
    const auditor = await cp.member(t.id, 'auditor');
    // What a redacted copy would hide: a value under a credential-like key, and the tail of a free-text argument after
    // something that looks like a private key.
    const args = { sql: 'SELECT 1; -- -----BEGIN PRIVATE KEY-----\nDROP TABLE users;', key: 'prod/backups', token: 'tok-123456789' };
    const approval = await held(t.id, { args });
    const shown = await cp.request('GET', `${base}/${approval.id}`, { token: admin.token });
    expect(shown.json['arguments']).toEqual(args);
    expect((await cp.request('GET', `${base}?status=pending`, { token: admin.token })).json.items?.[0]?.['arguments']).toEqual(args);
    const audited = await cp.request('GET', `${base}/${approval.id}`, { token: auditor.token });
    expect(audited.json['arguments']).toEqual({ sql: 'SELECT 1; -- [redacted]', key: '[redacted]', token: '[redacted]' });

    const approved = await cp.request('POST', `${base}/${approval.id}/approve`, { token: admin.token, body: { argumentsHash: approval.argumentsHash } });
    expect(approved.json['arguments']).toEqual(args);
    const events = await cp.eventsAtLeast(t.id, 1);
    expect(JSON.stringify(events[0]?.arguments)).not.toMatch(/DROP TABLE|prod\/backups|tok-123456789/);
  });

  it('gives the argumentsHash only to those shown the arguments in full, or where redaction hid nothing: it is the hash of what was hidden', async () => {
    const { t, admin, base } = await setup();
    const auditor = await cp.member(t.id, 'auditor');
    const pin = String(1000 + (randomBytes(2).readUInt16BE(0) % 9000));
    const approval = await held(t.id, { args: { account: 'acme-ops', password: pin } });
    const plain = await held(t.id, { args: { path: '/tmp/report.csv' } });

    const audited = await cp.request('GET', `${base}/${approval.id}`, { token: auditor.token });
    const shownArgs = audited.json['arguments'] as Record<string, unknown>;
    expect(shownArgs).toEqual({ account: 'acme-ops', password: '[redacted]' });
    // Before, the answer carried the unsalted hash of the arguments in full: 9,000 guesses recovered the PIN.
    const guessed = Array.from({ length: 9000 }, (_, i) => String(1000 + i)).find(
      (guess) => hashOf(JSON.stringify({ ...shownArgs, password: guess })) === audited.json['argumentsHash'],
    );
    expect(guessed).toBeUndefined();
    expect(audited.json['argumentsHash']).toBeNull();
    const listed = (await cp.request('GET', `${base}?status=pending`, { token: auditor.token })).json.items ?? [];
    expect(Object.fromEntries(listed.map((item) => [item['id'], item['argumentsHash']]))).toEqual({ [approval.id]: null, [plain.id]: plain.argumentsHash });
    // Nothing hidden: the hash says nothing the arguments shown do not.
    expect((await cp.request('GET', `${base}/${plain.id}`, { token: auditor.token })).json['argumentsHash']).toBe(plain.argumentsHash);
    // Those who decide see the arguments in full, and send the hash back.
    expect((await cp.request('GET', `${base}/${approval.id}`, { token: admin.token })).json['argumentsHash']).toBe(approval.argumentsHash);
    const approved = await cp.request('POST', `${base}/${approval.id}/approve`, { token: admin.token, body: { argumentsHash: approval.argumentsHash } });
    expect(approved.json['argumentsHash']).toBe(approval.argumentsHash);

    // The audit trail (readable by auditors, exported) shows the arguments redacted, so it has no hash either.
    const [event] = await cp.eventsAtLeast(t.id, 1);
    expect(event?.arguments).toMatchObject({ before: { argumentsHash: null }, after: { argumentsHash: null } });
    expect(JSON.stringify(event?.arguments)).not.toContain(approval.argumentsHash);
  });

  it('takes no decision once the replica holding the call stopped renewing its lease: the call is gone (cancelled)', async () => {
    const { t, admin, base } = await setup();
    const alive = await held(t.id, { heldForMs: 60_000 });
    const gone = await held(t.id, { heldForMs: -1_000 });
    const refused = await cp.request('POST', `${base}/${gone.id}/approve`, { token: admin.token, body: { argumentsHash: gone.argumentsHash } });
    expect(refused.status).toBe(409);
    expect((await cp.request('GET', `${base}/${gone.id}`, { token: admin.token })).json['status']).toBe('cancelled');
    const pending = (await cp.request('GET', `${base}?status=pending`, { token: admin.token })).json.items?.map((item) => item['id']);
    expect(pending).toEqual([alive.id]);
    expect((await cp.request('GET', `${base}?status=cancelled`, { token: admin.token })).json.items?.map((item) => item['id'])).toEqual([gone.id]);
    expect((await cp.request('POST', `${base}/${alive.id}/approve`, { token: admin.token, body: { argumentsHash: alive.argumentsHash } })).status).toBe(200);
  });

  it('cancels the calls an agent client was waiting on when it is deleted, and tells the gateways', async () => {
    const { t, admin, base } = await setup();
    const client = await cp.request('POST', `/api/v1/tenants/${t.id}/agent-clients`, { token: admin.token, body: { name: 'leaving bot' } });
    const agentClientId = String(client.json['id']);
    const theirs = await held(t.id, { agentClientId });
    const others = await held(t.id);
    expect((await cp.request('DELETE', `/api/v1/tenants/${t.id}/agent-clients/${agentClientId}`, { token: admin.token })).status).toBe(204);
    expect((await cp.request('GET', `${base}/${theirs.id}`, { token: admin.token })).json).toMatchObject({ status: 'cancelled', decisionNote: 'the agent client that made the call was deleted' });
    expect((await cp.request('GET', `${base}/${others.id}`, { token: admin.token })).json['status']).toBe('pending');
    await waitFor(() => notices.includes(t.id), { description: 'the approvals notice' });
  });

  it('shows a held resource read\'s URI with its credentials only to those who decide', async () => {
    const { t, admin, base } = await setup();
    const auditor = await cp.member(t.id, 'auditor');
    const approval = await held(t.id, { tool: 'postgres://app:hunter2@db.internal/orders', args: {} });
    expect((await cp.request('GET', `${base}/${approval.id}`, { token: admin.token })).json['tool']).toBe('postgres://app:hunter2@db.internal/orders');
    const audited = await cp.request('GET', `${base}/${approval.id}`, { token: auditor.token });
    expect(audited.json['tool']).not.toContain('hunter2');
    expect(audited.json['tool']).toContain('db.internal/orders');
  });

  it('refuses a decision by someone demoted after the access check: the role is read again in the decision', async () => {
    const { t, base } = await setup();
    const demoted = await cp.member(t.id, 'admin');
    const approval = await held(t.id);
    // The guard read "admin"; the demotion commits before the decision runs.
    const stale: TenantScope = { tenantId: t.id, role: 'admin', actor: { userId: demoted.id as UserId, isPlatformAdmin: false, traceId: 't', traceparent: null } };
    await cp.system.membership.updateMany({ where: { tenantId: t.id, userId: demoted.id }, data: { role: 'auditor' } });
    const service = cp.app.get(ApprovalsService);
    await expect(service.approve(stale, approval.id, { argumentsHash: approval.argumentsHash })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(service.deny(stale, approval.id, {})).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect((await cp.request('GET', `${base}/${approval.id}`, { token: (await cp.member(t.id, 'owner')).token })).json['status']).toBe('pending');
  });

  it('answers 404 across tenants and for ids that cannot exist', async () => {
    const a = await setup();
    const b = await setup();
    const approval = await held(a.t.id);
    // B's admin, through B's URL with A's approval id, and through A's URL.
    expect((await cp.request('GET', `${b.base}/${approval.id}`, { token: b.admin.token })).status).toBe(404);
    expect((await cp.request('POST', `${b.base}/${approval.id}/approve`, { token: b.admin.token, body: { argumentsHash: approval.argumentsHash } })).status).toBe(404);
    expect((await cp.request('POST', `${b.base}/${approval.id}/deny`, { token: b.admin.token })).status).toBe(404);
    expect((await cp.request('GET', `${a.base}/${approval.id}`, { token: b.admin.token })).status).toBe(404);
    expect((await cp.request('GET', b.base, { token: b.admin.token })).json.items).toEqual([]);
    expect((await cp.request('GET', `${a.base}/not-a-uuid`, { token: a.admin.token })).status).toBe(404);
    expect((await cp.request('POST', `${a.base}/${randomUUID()}/deny`, { token: a.admin.token })).status).toBe(404);
    expect((await cp.system.approval.findUniqueOrThrow({ where: { id: approval.id }, select: { status: true } })).status).toBe('pending');
  });

  it('answers 400 with field errors for bad input', async () => {
    const { t, admin, base } = await setup();
    const approval = await held(t.id);
    const bad = await cp.request('POST', `${base}/${approval.id}/approve`, { token: admin.token, body: { argumentsHash: 'abc', arguments: ['not', 'an', 'object'], extra: 1 } });
    expect(bad.status).toBe(400);
    expect(bad.json['code']).toBe('VALIDATION_FAILED');
    expect((bad.json['errors'] as { path: string }[]).map((e) => e.path)).toEqual(expect.arrayContaining(['argumentsHash', 'arguments']));
    const missing = await cp.request('POST', `${base}/${approval.id}/approve`, { token: admin.token, body: {} });
    expect(missing.status).toBe(400);
    const huge = await cp.request('POST', `${base}/${approval.id}/approve`, { token: admin.token, body: { argumentsHash: approval.argumentsHash, arguments: { blob: 'x'.repeat(70_000) } } });
    expect(huge.status).toBe(400);
    expect((await cp.request('POST', `${base}/${approval.id}/deny`, { token: admin.token, body: { note: '' } })).status).toBe(400);
    // Edited arguments that still carry the review copy's redaction placeholder would send it to the upstream.
    const placeholder = await cp.request('POST', `${base}/${approval.id}/approve`, {
      token: admin.token,
      body: { argumentsHash: approval.argumentsHash, arguments: { path: '/etc/hosts', auth: { token: '[redacted]' } } },
    });
    expect(placeholder.status).toBe(400);
    // Deeply nested edits are refused up front (the decision used to commit, then the response failed with a 500).
    let deep: unknown = 1;
    for (let i = 0; i < 3_000; i++) deep = [deep];
    const nested = await cp.request('POST', `${base}/${approval.id}/approve`, { token: admin.token, body: { argumentsHash: approval.argumentsHash, arguments: { deep } } });
    expect(nested.status).toBe(400);
    expect(nested.json['errors']).toEqual([{ path: 'arguments', message: expect.stringContaining('levels deep') }]);
    expect(placeholder.json['errors']).toEqual([{ path: 'arguments', message: expect.any(String) }]);
    expect((await cp.request('GET', `${base}?status=maybe`, { token: admin.token })).status).toBe(400);
    expect((await cp.system.approval.findUniqueOrThrow({ where: { id: approval.id }, select: { status: true } })).status).toBe('pending');
  });

  it('refuses edited arguments with a number the parse would change (1e400 was stored as null, 9007199254740993 as …992, 1e-400 as 0): 400, still pending', async () => {
    const { t, admin, base } = await setup();
    const approval = await held(t.id, { args: { path: '/tmp/a', count: 1 } });
    const fastify = (cp.app as NestFastifyApplication).getHttpAdapter().getInstance();
    // Raw text: JSON.stringify cannot write these numbers, they are only ever what a client sends.
    const approve = (edited: string) =>
      fastify.inject({
        method: 'POST',
        url: `${base}/${approval.id}/approve`,
        headers: { authorization: `Bearer ${admin.token}`, 'content-type': 'application/json' },
        payload: `{"argumentsHash":"${approval.argumentsHash}","arguments":${edited}}`,
      });
    for (const [edited, number] of [
      ['{"path":"/tmp/a","count":1e400}', '1e400'],
      ['{"path":"/tmp/a","limits":{"low":0,"high":[1,-1e999]}}', '-1e999'],
      ['{"path":"/tmp/a","account":9007199254740993}', '9007199254740993'],
      ['{"path":"/tmp/a","count":1,"ratio":1e-400}', '1e-400'],
    ] as const) {
      const res = await approve(edited);
      expect(res.statusCode, edited).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json(), edited).toMatchObject({ code: 'VALIDATION_FAILED', detail: expect.stringContaining(`number ${number} `) });
    }
    const row = await cp.system.approval.findUniqueOrThrow({ where: { id: approval.id }, select: { status: true, editedArguments: true } });
    expect(row).toEqual({ status: 'pending', editedArguments: null });
    // Numbers JSON carries exactly are kept as written: the largest safe integer, a fraction, a large exponent.
    const kept = await approve('{"path":"/tmp/a","account":9007199254740991,"ratio":0.5,"count":1e300}');
    expect(kept.statusCode).toBe(200);
    const approved = await cp.system.approval.findUniqueOrThrow({ where: { id: approval.id }, select: { status: true, editedArguments: true } });
    expect(approved).toEqual({ status: 'approved', editedArguments: { path: '/tmp/a', account: 9007199254740991, ratio: 0.5, count: 1e300 } });
  });

  it('refuses edited arguments for a held request that runs as it was held (a resource read, a completion): 400, still pending, approvable as held', async () => {
    const { t, admin, base } = await setup();
    for (const method of ['resources/read', 'completion/complete']) {
      // The gateway runs these without edits and refuses an approval carrying them (edits_not_applicable), failing the call.
      const approval = await held(t.id, { args: { uri: 'file:///srv/report.csv' }, tool: 'file:///srv/report.csv', target: { kind: 'resource', method } });
      const edited = await cp.request('POST', `${base}/${approval.id}/approve`, {
        token: admin.token,
        body: { argumentsHash: approval.argumentsHash, arguments: { uri: 'file:///srv/other.csv' } },
      });
      expect(edited.status, edited.text).toBe(400);
      expect(edited.json, method).toMatchObject({ code: 'VALIDATION_FAILED', detail: expect.stringContaining(method) });
      const row = await cp.system.approval.findUniqueOrThrow({ where: { id: approval.id }, select: { status: true, editedArguments: true } });
      expect(row, method).toEqual({ status: 'pending', editedArguments: null });
      const asHeld = await cp.request('POST', `${base}/${approval.id}/approve`, { token: admin.token, body: { argumentsHash: approval.argumentsHash } });
      expect(asHeld.status, asHeld.text).toBe(200);
    }
    // A tool call's arguments stay editable.
    const tool = await held(t.id, { target: { kind: 'tool', method: 'tools/call' } });
    const editedTool = await cp.request('POST', `${base}/${tool.id}/approve`, {
      token: admin.token,
      body: { argumentsHash: tool.argumentsHash, arguments: { path: '/tmp/x', mode: 'read' } },
    });
    expect(editedTool.status, editedTool.text).toBe(200);
  });

  it('refuses a held prompt\'s edited arguments that are not text (MCP: names to strings): 400, still pending', async () => {
    // The gateway refuses such arguments from an agent; an approver's edit reached the upstream unchecked (found in review).
    const { t, admin, base } = await setup();
    for (const edit of [{ topic: 5 }, { topic: { nested: 'x' } }, { topic: ['a'] }, { topic: null }]) {
      const approval = await held(t.id, { args: { topic: 'quarterly report' }, tool: 'summarise', target: { kind: 'prompt', method: 'prompts/get' } });
      const edited = await cp.request('POST', `${base}/${approval.id}/approve`, { token: admin.token, body: { argumentsHash: approval.argumentsHash, arguments: edit } });
      const row = await cp.system.approval.findUniqueOrThrow({ where: { id: approval.id }, select: { status: true } });
      expect({ edit, status: edited.status, row: row.status }).toEqual({ edit, status: 400, row: 'pending' });
    }
    const approval = await held(t.id, { args: { topic: 'quarterly report' }, tool: 'summarise', target: { kind: 'prompt', method: 'prompts/get' } });
    const text = await cp.request('POST', `${base}/${approval.id}/approve`, { token: admin.token, body: { argumentsHash: approval.argumentsHash, arguments: { topic: 'annual report' } } });
    expect(text.status, text.text).toBe(200);
  });

  it('says what each held call is (a prompt is not the tool of the same name), and filters the list by kind', async () => {
    const { t, admin, base } = await setup();
    const auditor = await cp.member(t.id, 'auditor');
    const tool = await held(t.id, { tool: 'delete_all', target: { kind: 'tool', method: 'tools/call' } });
    const prompt = await held(t.id, { tool: 'delete_all', args: { scope: 'all' }, target: { kind: 'prompt', method: 'prompts/get' } });
    const completion = await held(t.id, { tool: 'delete_all', args: { scope: 'a' }, target: { kind: 'prompt', method: 'completion/complete' } });
    const resource = await held(t.id, { tool: 'file:///srv/report.csv', args: {}, target: { kind: 'resource', method: 'resources/read' } });
    // Written before the columns existed: the migration's default.
    const old = await held(t.id, { tool: 'delete_all' });

    const listed = await cp.request('GET', base, { token: admin.token });
    expect(listed.status).toBe(200);
    expect(listed.json.items?.map((a) => ({ id: a['id'], kind: a['kind'], method: a['method'], tool: a['tool'] }))).toEqual([
      { id: tool.id, kind: 'tool', method: 'tools/call', tool: 'delete_all' },
      { id: prompt.id, kind: 'prompt', method: 'prompts/get', tool: 'delete_all' },
      { id: completion.id, kind: 'prompt', method: 'completion/complete', tool: 'delete_all' },
      { id: resource.id, kind: 'resource', method: 'resources/read', tool: 'file:///srv/report.csv' },
      { id: old.id, kind: 'tool', method: null, tool: 'delete_all' },
    ]);
    // The detail says it too, to auditors as well.
    expect((await cp.request('GET', `${base}/${prompt.id}`, { token: auditor.token })).json).toMatchObject({ kind: 'prompt', method: 'prompts/get' });

    const ids = async (query: string) => (await cp.request('GET', `${base}?${query}`, { token: admin.token })).json.items?.map((a) => a['id']);
    expect(await ids('kind=prompt')).toEqual([prompt.id, completion.id]);
    expect(await ids('kind=tool')).toEqual([tool.id, old.id]);
    expect(await ids('kind=resource')).toEqual([resource.id]);
    expect(await ids('kind=prompt&limit=1')).toEqual([prompt.id]);
    // Combined with the status filter.
    await cp.request('POST', `${base}/${completion.id}/deny`, { token: admin.token });
    expect(await ids('kind=prompt&status=pending')).toEqual([prompt.id]);
    expect(await ids('kind=prompt&status=denied')).toEqual([completion.id]);
    expect(await ids('kind=tool&status=denied')).toEqual([]);
    // The decision's response and audit event name the kind as well.
    const approved = await cp.request('POST', `${base}/${prompt.id}/approve`, { token: admin.token, body: { argumentsHash: prompt.argumentsHash } });
    expect(approved.json).toMatchObject({ status: 'approved', kind: 'prompt', method: 'prompts/get' });
    const events = await cp.eventsAtLeast(t.id, 2);
    expect(events.find((e) => e.targetId === prompt.id)?.arguments).toMatchObject({ after: { kind: 'prompt', method: 'prompts/get' } });

    expect((await cp.request('GET', `${base}?kind=resource_template`, { token: admin.token })).status).toBe(400);
  });

  it('pages through a status-filtered list by cursor', async () => {
    const { t, admin, base } = await setup();
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await held(t.id)).id);
    await cp.request('POST', `${base}/${ids[1]}/deny`, { token: admin.token });
    const first = await cp.request('GET', `${base}?status=pending&limit=1`, { token: admin.token });
    expect(first.json.items?.map((a) => a['id'])).toEqual([ids[0]]);
    const second = await cp.request('GET', `${base}?status=pending&limit=1&cursor=${String(first.json['nextCursor'])}`, { token: admin.token });
    expect(second.json.items?.map((a) => a['id'])).toEqual([ids[2]]);
    expect(second.json['nextCursor']).toBeNull();
    expect((await cp.request('GET', base, { token: admin.token })).json.items).toHaveLength(3);
  });
});

// Before, approvals applied only the credential redaction: a value the tenant's audit paths name reached auditors (with the
// hash of the arguments in full) and the approval.* events of the chained trail, while the gateway's call event left it out.
describe('approvals and the tenant\'s audit redaction paths (settings.audit.redactPaths)', () => {
  it('keeps a value the tenant redacts from its audit trail out of the auditor\'s view and out of the approval.* audit events', async () => {
    const { t, admin, base } = await setup();
    await cp.system.tenant.update({ where: { id: t.id }, data: { settings: { audit: { redactPaths: ['$.arguments.card.number'] } } } });
    const auditor = await cp.member(t.id, 'auditor');
    const card = '4111111111111111';
    const approval = await held(t.id, { tool: 'charge', args: { card: { number: card }, amount: 10 } });

    const audited = await cp.request('GET', `${base}/${approval.id}`, { token: auditor.token });
    expect(audited.status).toBe(200);
    // The tenant said this value never leaves the gateway into the trail: an auditor (shown "redacted" arguments) gets it.
    expect(JSON.stringify(audited.json['arguments'])).not.toContain(card);
    // And with it the unsalted hash of the arguments in full (a card number's check digit and prefix make it guessable).
    expect(audited.json['argumentsHash']).toBeNull();

    const approved = await cp.request('POST', `${base}/${approval.id}/approve`, { token: admin.token, body: { argumentsHash: approval.argumentsHash } });
    expect(approved.status).toBe(200);
    const events = await cp.eventsAtLeast(t.id, 1);
    const decision = events.find((event) => event.method === 'approval.approve');
    expect(decision).toBeDefined();
    expect(JSON.stringify(decision?.arguments)).not.toContain(card);
  });
});
