import { hashApiKey } from '@portcullis/auth/api-keys';
import { openJson, parseKeyring, upstreamSecretContext } from '@portcullis/auth/secrets';
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import { Prisma } from '@portcullis/data/db';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { waitFor } from '@portcullis/shared/util-testing';
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, STDIO_ALLOWED, type ControlPlaneHarness } from './testing/control-plane-harness';
import { testContext } from '@portcullis/shared/util-testing';

let cp: ControlPlaneHarness;
let subscriber: Redis;
const notices: { channel: string; message: string }[] = [];

beforeAll(async () => {
  cp = await startControlPlane();
  subscriber = createRedisClient({ url: testContext().redisUrl, connectionName: 'control-plane-test-sub' });
  await subscriber.subscribe(CHANGE_CHANNELS.upstreams, CHANGE_CHANNELS.apiKeys, CHANGE_CHANNELS.tenants, CHANGE_CHANNELS.approvals);
  subscriber.on('message', (channel: string, message: string) => notices.push({ channel, message }));
});
afterAll(async () => {
  await subscriber?.quit();
  await cp?.close();
});

describe('tenants', () => {
  it('lets platform admins create tenants with a first owner, audited; others get 403', async () => {
    const admin = await cp.user({ platformAdmin: true });
    const slug = `acme-${randomBytes(4).toString('hex')}`;
    const res = await cp.request('POST', '/api/v1/tenants', { token: admin.token, body: { slug, name: ' Acme ', ownerEmail: `Owner-${slug}@Example.test` } });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ slug, name: 'Acme', status: 'active' });
    const tenantId = String(res.json['id']);
    const owner = await cp.system.user.findUniqueOrThrow({ where: { email: `owner-${slug}@example.test` }, select: { id: true } });
    expect(await cp.system.membership.findFirst({ where: { tenantId, userId: owner.id }, select: { role: true } })).toEqual({ role: 'owner' });
    const events = await cp.eventsAtLeast(tenantId, 1);
    expect(events[0]).toMatchObject({ kind: 'control_plane', actorUserId: admin.id, targetType: 'tenant', targetId: tenantId, outcome: 'ok' });

    expect((await cp.request('POST', '/api/v1/tenants', { token: admin.token, body: { slug, name: 'Again' } })).status).toBe(409);
    const plain = await cp.user();
    expect((await cp.request('POST', '/api/v1/tenants', { token: plain.token, body: { slug: `x-${slug}`, name: 'X' } })).status).toBe(403);
  });

  it('answers 400 listing every invalid field', async () => {
    const admin = await cp.user({ platformAdmin: true });
    const res = await cp.request('POST', '/api/v1/tenants', { token: admin.token, body: { slug: 'Not A Slug', name: '', extra: 1 } });
    expect(res.status).toBe(400);
    expect(res.json['code']).toBe('VALIDATION_FAILED');
    const paths = (res.json['errors'] as { path: string }[]).map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['slug', 'name']));
  });

  it('lists only the caller’s tenants (all for platform admins), paginated by cursor', async () => {
    const a = await cp.tenant();
    const b = await cp.tenant();
    const user = await cp.member(a.id, 'auditor');
    await cp.system.membership.create({ data: { tenantId: b.id, userId: user.id, role: 'member' } });
    const other = await cp.tenant();
    const first = await cp.request('GET', '/api/v1/tenants?limit=1', { token: user.token });
    expect(first.status).toBe(200);
    expect(first.json.items).toHaveLength(1);
    const second = await cp.request('GET', `/api/v1/tenants?limit=1&cursor=${String(first.json['nextCursor'])}`, { token: user.token });
    expect(second.json['nextCursor']).toBeNull();
    const seen = [...(first.json.items ?? []), ...(second.json.items ?? [])].map((t) => [t['id'], t['role']]);
    expect(seen).toEqual(expect.arrayContaining([[a.id, 'auditor'], [b.id, 'member']]));
    expect(seen.map(([id]) => id)).not.toContain(other.id);
    expect((await cp.request('GET', '/api/v1/tenants?cursor=bogus', { token: user.token })).json['errors']).toEqual([
      { path: 'cursor', message: expect.any(String) },
    ]);
    expect((await cp.request('GET', `/api/v1/tenants/${a.id}`, { token: user.token })).json).toMatchObject({ id: a.id, role: 'auditor' });
  });
});

describe('tenant suspension', () => {
  it('lets platform admins suspend a tenant: members may then read but not change, held calls are cancelled, gateways told', async () => {
    const admin = await cp.user({ platformAdmin: true });
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const base = `/api/v1/tenants/${t.id}`;
    const held = await cp.system.approval.create({
      data: { tenantId: t.id, upstreamId: '0190a0a0-0000-7000-8000-000000000001', tool: 'echo', argumentsHash: 'h', arguments: {}, expiresAt: new Date(Date.now() + 600_000) },
      select: { id: true },
    });
    const client = await cp.request('POST', `${base}/agent-clients`, { token: owner.token, body: { name: 'bot' } });
    const key = await cp.request('POST', `${base}/api-keys`, { token: owner.token, body: { name: 'leaked', agentClientId: client.json['id'] } });
    const leakedKey = { id: String(key.json['id']), agentClientId: String(client.json['id']) };

    expect((await cp.request('PATCH', base, { token: owner.token, body: { status: 'suspended' } })).status).toBe(403);
    expect((await cp.request('PATCH', base, { token: admin.token, body: {} })).status).toBe(400);
    expect((await cp.request('PATCH', base, { token: admin.token, body: { status: 'frozen' } })).status).toBe(400);
    expect((await cp.request('PATCH', '/api/v1/tenants/0190a0a0-0000-7000-8000-000000000009', { token: admin.token, body: { status: 'suspended' } })).status).toBe(404);

    const suspended = await cp.request('PATCH', base, { token: admin.token, body: { status: 'suspended' } });
    expect(suspended.status).toBe(200);
    expect(suspended.json).toMatchObject({ id: t.id, status: 'suspended' });
    await waitFor(() => notices.some((n) => n.channel === CHANGE_CHANNELS.tenants && n.message === t.id));
    await waitFor(() => notices.some((n) => n.channel === CHANGE_CHANNELS.approvals && n.message === t.id));
    expect(await cp.system.approval.findUniqueOrThrow({ where: { id: held.id }, select: { status: true } })).toEqual({ status: 'cancelled' });

    // Reading goes on; changing is refused with a clear reason.
    expect((await cp.request('GET', base, { token: owner.token })).json).toMatchObject({ status: 'suspended' });
    expect((await cp.request('GET', `${base}/agent-clients`, { token: owner.token })).status).toBe(200);
    const refused = await cp.request('POST', `${base}/agent-clients`, { token: owner.token, body: { name: 'while suspended' } });
    expect(refused.status).toBe(409);
    expect(refused.json['detail']).toMatch(/suspended/);
    // Revoking a key stays possible (a leaked key must not come back with the tenant); creating one does not.
    expect((await cp.request('POST', `${base}/api-keys/${leakedKey.id}/revoke`, { token: owner.token })).status).toBe(200);
    expect((await cp.request('POST', `${base}/api-keys`, { token: owner.token, body: { name: 'new', agentClientId: leakedKey.agentClientId } })).status).toBe(409);

    const upstreamNotices = () => notices.filter((n) => n.channel === CHANGE_CHANNELS.upstreams && n.message === t.id).length;
    const beforeReactivation = upstreamNotices();
    expect((await cp.request('PATCH', base, { token: admin.token, body: { status: 'active', name: 'Back again' } })).json).toMatchObject({ status: 'active', name: 'Back again' });
    // Gateways load upstreams of active tenants only: reactivation announces the upstreams too.
    await waitFor(() => upstreamNotices() > beforeReactivation, { description: 'an upstreams notice for the reactivated tenant' });
    expect((await cp.request('POST', `${base}/agent-clients`, { token: owner.token, body: { name: 'after' } })).status).toBe(201);
    // agent_client.create, api_key.create, tenant.update, api_key.revoke, tenant.update, agent_client.create
    const events = await cp.eventsAtLeast(t.id, 6);
    expect(events.filter((e) => e.method === 'tenant.update').map((e) => (e.arguments as { after: { status: string } }).after.status)).toEqual(['suspended', 'active']);
  });
  it('refuses a change whose tenant was suspended after the access check let it in: nothing lands after a suspension', async () => {
    const admin = await cp.user({ platformAdmin: true });
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const base = `/api/v1/tenants/${t.id}`;
    const client = await cp.request('POST', `${base}/agent-clients`, { token: owner.token, body: { name: 'bot' } });
    expect(client.status).toBe(201);
    const lockWaited = () =>
      waitFor(async () => (await cp.system.$queryRaw<{ waiting: bigint }[]>`SELECT count(*) AS waiting FROM pg_locks WHERE NOT granted`)[0]?.waiting ?? 0n, {
        timeoutMs: 10_000,
        description: 'the change waiting on a row lock',
      });

    // A key: the request passes the guard (tenant active), then waits on its role read (the owner's row held here)
    // while a platform admin suspends the tenant (answered 200). It must not land after that.
    const membership = await cp.system.membership.findFirstOrThrow({ where: { tenantId: t.id, userId: owner.id }, select: { id: true } });
    // (Returned in an object: an async function returning the promise itself would wait for it, inside the lock.)
    const { answer: keyAnswer } = await cp.system.$transaction(
      async (tx) => {
        await tx.$queryRaw`SELECT id FROM memberships WHERE id = ${membership.id}::uuid FOR UPDATE`;
        const answer = cp.request('POST', `${base}/api-keys`, { token: owner.token, body: { name: 'late', agentClientId: client.json['id'] } });
        await lockWaited();
        expect((await cp.request('PATCH', base, { token: admin.token, body: { status: 'suspended' } })).status).toBe(200);
        return { answer };
      },
      { timeout: 20_000 },
    );
    const key = await keyAnswer;
    expect(key.status).toBe(409);
    expect(key.json['detail']).toMatch(/suspended/);
    expect(await cp.system.apiKey.count({ where: { tenantId: t.id, name: 'late' } })).toBe(0);

    // A change that rebuilds the policy (a group): the suspension is written but not yet committed when the request
    // passes the guard; the change waits for it, then is refused.
    expect((await cp.request('PATCH', base, { token: admin.token, body: { status: 'active' } })).status).toBe(200);
    const { answer: groupAnswer } = await cp.system.$transaction(
      async (tx) => {
        await tx.$executeRaw`UPDATE tenants SET status = 'suspended' WHERE id = ${t.id}::uuid`;
        const answer = cp.request('POST', `${base}/groups`, { token: owner.token, body: { externalId: 'late', name: 'late group' } });
        await lockWaited();
        return { answer };
      },
      { timeout: 20_000 },
    );
    const group = await groupAnswer;
    expect(group.status, group.text).toBe(409);
    expect(await cp.system.group.count({ where: { tenantId: t.id, name: 'late group' } })).toBe(0);
  });
});

describe('members', () => {
  it('judges a change by the actor\'s role when it is made, not the role the request arrived with', async () => {
    const t = await cp.tenant();
    /**
     * Removes `targetUserId`'s membership as `actor` while a concurrent transaction holds the rows `lockSql` locks
     * and changes the actor's role to `demotedTo` before it commits; the removal waits for that lock meanwhile.
     */
    const removeDuringDemotion = async (actor: { id: string; token: string }, targetUserId: string, lockSql: Prisma.Sql, demotedTo: 'admin' | 'member') => {
      const target = await cp.system.membership.findFirstOrThrow({ where: { tenantId: t.id, userId: targetUserId }, select: { id: true } });
      let release: () => void = () => undefined;
      let locked: () => void = () => undefined;
      const lockTaken = new Promise<void>((resolve) => (locked = resolve));
      const demotion = cp.system.$transaction(
        async (tx) => {
          await tx.$queryRaw(lockSql);
          locked();
          await new Promise<void>((resolve) => (release = resolve));
          await tx.membership.updateMany({ where: { tenantId: t.id, userId: actor.id }, data: { role: demotedTo } });
        },
        { timeout: 20_000 },
      );
      await lockTaken;
      const removal = cp.request('DELETE', `/api/v1/tenants/${t.id}/members/${target.id}`, { token: actor.token });
      await new Promise((resolve) => setTimeout(resolve, 500));
      release();
      await demotion;
      return { answer: await removal, targetRole: await cp.system.membership.findFirst({ where: { id: target.id }, select: { role: true } }) };
    };

    // A, still an owner when the request arrives, removes the owner C while a role change holds the owners and
    // demotes A: refused.
    const [a, , c] = [await cp.member(t.id, 'owner'), await cp.member(t.id, 'owner'), await cp.member(t.id, 'owner')];
    const owners = await removeDuringDemotion(a, c.id, Prisma.sql`SELECT id FROM memberships WHERE tenant_id = ${t.id}::uuid AND role = 'owner' FOR UPDATE`, 'admin');
    expect(owners.answer.status).toBe(403);
    expect(owners.answer.json['detail']).toMatch(/Only owners/);
    expect(owners.targetRole).toEqual({ role: 'owner' });

    // An admin demoted to member while removing another admin (no owner involved): refused as well.
    const [demoted, other] = [await cp.member(t.id, 'admin'), await cp.member(t.id, 'admin')];
    const admins = await removeDuringDemotion(demoted, other.id, Prisma.sql`SELECT id FROM memberships WHERE tenant_id = ${t.id}::uuid AND user_id = ${demoted.id}::uuid FOR UPDATE`, 'member');
    expect(admins.answer.status).toBe(403);
    expect(admins.answer.json['detail']).toMatch(/Your role \(member\)/);
    expect(admins.targetRole).toEqual({ role: 'admin' });
  });

  it('names a member as this tenant named them: another tenant learns neither the name given elsewhere nor that the account exists', async () => {
    const [a, b] = [await cp.tenant(), await cp.tenant()];
    const [adminA, adminB] = [await cp.member(a.id, 'admin'), await cp.member(b.id, 'admin')];
    const email = `shared-${randomBytes(3).toString('hex')}@example.test`;
    const inA = await cp.request('POST', `/api/v1/tenants/${a.id}/members`, { token: adminA.token, body: { email, name: 'Alice (contractor)', role: 'member' } });
    expect(inA.json).toMatchObject({ email, name: 'Alice (contractor)' });
    // Tenant B adds the same person: its answer shows its own name, or the email when it gave none, like for a new account.
    const inB = await cp.request('POST', `/api/v1/tenants/${b.id}/members`, { token: adminB.token, body: { email, role: 'member' } });
    expect(inB.status).toBe(201);
    expect(inB.json).toMatchObject({ email, name: email });
    const listedInB = await cp.request('GET', `/api/v1/tenants/${b.id}/members`, { token: adminB.token });
    expect(JSON.stringify(listedInB.json)).not.toContain('contractor');
    const listedInA = await cp.request('GET', `/api/v1/tenants/${a.id}/members`, { token: adminA.token });
    expect(listedInA.json.items?.find((m) => m['email'] === email)).toMatchObject({ name: 'Alice (contractor)' });
    // The account itself carries no tenant's choice.
    expect(await cp.system.user.findUniqueOrThrow({ where: { email }, select: { name: true } })).toEqual({ name: email });
    // Group listings name members as the member list does.
    const groupsA = `/api/v1/tenants/${a.id}/groups`;
    const group = await cp.request('POST', groupsA, { token: adminA.token, body: { externalId: `contractors-${randomBytes(3).toString('hex')}`, name: 'Contractors' } });
    expect(group.status, group.text).toBe(201);
    const added = await cp.request('POST', `${groupsA}/${String(group.json['id'])}/members`, { token: adminA.token, body: { userId: inA.json['userId'] } });
    expect(added.status, added.text).toBeLessThan(300);
    const groupMembers = await cp.request('GET', `${groupsA}/${String(group.json['id'])}/members`, { token: adminA.token });
    expect(groupMembers.json.items).toEqual([expect.objectContaining({ email, name: 'Alice (contractor)' })]);
  });

  it('adds a new person whom another request is creating at the same moment, instead of calling them a member already', async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const email = `racing-${randomUUID()}@example.test`;
    // Another request (another tenant adding the same person) has created the account but not committed yet.
    let release: () => void = () => undefined;
    let created: () => void = () => undefined;
    const written = new Promise<void>((resolve) => (created = resolve));
    const elsewhere = cp.system.$transaction(
      async (tx) => {
        await tx.user.create({ data: { email, name: email } });
        created();
        await new Promise<void>((resolve) => (release = resolve));
      },
      { timeout: 20_000 },
    );
    await written;
    const adding = cp.request('POST', `/api/v1/tenants/${t.id}/members`, { token: owner.token, body: { email, role: 'member' } });
    // It waits on the other insert of that email (a lock not granted, in pg_locks) until it commits.
    await waitFor(async () => (await cp.system.$queryRaw<{ waiting: bigint }[]>`SELECT count(*) AS waiting FROM pg_locks WHERE NOT granted`)[0]?.waiting ?? 0n, { timeoutMs: 5_000 });
    release();
    await elsewhere;
    const added = await adding;
    expect(added.status).toBe(201);
    expect(await cp.system.user.count({ where: { email } })).toBe(1);
  });

  it('adds, changes and removes members; the last owner stays; only owners manage owners', async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const admin = await cp.member(t.id, 'admin');
    const base = `/api/v1/tenants/${t.id}/members`;

    const added = await cp.request('POST', base, { token: admin.token, body: { email: `new-${randomBytes(3).toString('hex')}@example.test`, role: 'member' } });
    expect(added.status).toBe(201);
    const memberId = String(added.json['id']);
    expect((await cp.request('POST', base, { token: admin.token, body: { email: added.json['email'], role: 'member' } })).status).toBe(409);
    expect((await cp.request('POST', base, { token: admin.token, body: { email: 'x@example.test', role: 'owner' } })).status).toBe(403);
    expect((await cp.request('POST', base, { token: admin.token, body: { email: 'nope', role: 'boss' } })).json['errors']).toHaveLength(2);

    const promoted = await cp.request('PATCH', `${base}/${memberId}`, { token: admin.token, body: { role: 'auditor' } });
    expect(promoted.json).toMatchObject({ role: 'auditor' });

    const ownerRow = await cp.system.membership.findFirstOrThrow({ where: { tenantId: t.id, userId: owner.id }, select: { id: true } });
    expect((await cp.request('PATCH', `${base}/${ownerRow.id}`, { token: admin.token, body: { role: 'member' } })).status).toBe(403);
    const demoteLast = await cp.request('PATCH', `${base}/${ownerRow.id}`, { token: owner.token, body: { role: 'admin' } });
    expect(demoteLast.status).toBe(409);
    expect(demoteLast.json['detail']).toMatch(/at least one owner/);
    expect((await cp.request('DELETE', `${base}/${ownerRow.id}`, { token: owner.token })).status).toBe(409);

    expect((await cp.request('DELETE', `${base}/${memberId}`, { token: admin.token })).status).toBe(204);
    expect((await cp.request('DELETE', `${base}/${memberId}`, { token: admin.token })).status).toBe(404);
    const list = await cp.request('GET', base, { token: admin.token });
    expect(list.json.items?.map((m) => m['id'])).not.toContain(memberId);

    const actions = (await cp.eventsAtLeast(t.id, 3)).map((e) => e.method);
    expect(actions).toEqual(['member.add', 'member.role_change', 'member.remove']);
  });
});

describe('upstreams', () => {
  const secretValue = () => `Bearer super-secret-${randomBytes(8).toString('hex')}`;

  it('creates an HTTP upstream with write-only, sealed headers: never in responses, logs or audit', async () => {
    const t = await cp.tenant();
    const admin = await cp.member(t.id, 'admin');
    const member = await cp.member(t.id, 'member');
    const secret = secretValue();
    const base = `/api/v1/tenants/${t.id}/upstreams`;
    const created = await cp.request('POST', base, {
      token: admin.token,
      body: { name: 'Tickets', toolPrefix: 'tickets', transport: 'streamable_http', url: 'https://tickets.example.test/mcp', headers: { Authorization: secret } },
    });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ name: 'Tickets', toolPrefix: 'tickets', hasHeaders: true, hasEnv: false, version: 1 });
    const id = String(created.json['id']);

    const read = await cp.request('GET', `${base}/${id}`, { token: member.token });
    const listed = await cp.request('GET', base, { token: member.token });
    const updated = await cp.request('PATCH', `${base}/${id}`, { token: admin.token, body: { description: 'Ticket system', headers: { Authorization: `${secret}-2` } } });
    expect(updated.json).toMatchObject({ version: 2, description: 'Ticket system', hasHeaders: true });

    const events = await cp.eventsAtLeast(t.id, 2);
    expect(events.map((e) => e.method)).toEqual(['upstream.create', 'upstream.update']);
    expect(events[1]?.arguments).toMatchObject({ before: { version: 1 }, after: { version: 2, description: 'Ticket system' } });

    for (const text of [created.text, read.text, listed.text, updated.text, JSON.stringify(events), cp.logs.join('\n')]) {
      expect(text).not.toContain('super-secret');
    }

    const row = await cp.system.upstream.findFirstOrThrow({ where: { tenantId: t.id, id }, select: { headersCiphertext: true, encryptionKeyId: true } });
    expect(Buffer.from(row.headersCiphertext ?? []).toString('latin1')).not.toContain('super-secret');
    const keyring = parseKeyring(cp.config.secrets.keyringSpec);
    const opened = openJson(keyring, { keyId: row.encryptionKeyId ?? '', ciphertext: Buffer.from(row.headersCiphertext ?? []) }, upstreamSecretContext(t.id, id, 'headers'));
    expect(opened).toEqual({ Authorization: `${secret}-2` });

    expect((await cp.request('PATCH', `${base}/${id}`, { token: member.token, body: { enabled: false } })).status).toBe(403);
    await waitFor(() => notices.filter((n) => n.channel === CHANGE_CHANNELS.upstreams && n.message === t.id).length >= 2);
  });

  it('keeps stored headers to their origin: moving the URL elsewhere needs them given again or removed', async () => {
    const t = await cp.tenant();
    const admin = await cp.member(t.id, 'admin');
    const base = `/api/v1/tenants/${t.id}/upstreams`;
    const created = await cp.request('POST', base, {
      token: admin.token,
      body: { name: 'Vendor', toolPrefix: 'vendor', transport: 'streamable_http', url: 'https://vendor.example.test/mcp', headers: { Authorization: secretValue() } },
    });
    expect(created.status).toBe(201);
    const id = String(created.json['id']);
    // Another path on the same origin keeps them.
    const samePlace = await cp.request('PATCH', `${base}/${id}`, { token: admin.token, body: { url: 'https://vendor.example.test/v2/mcp' } });
    expect(samePlace.status).toBe(200);
    // Another host, scheme or port does not, unless the headers come along (or go).
    for (const url of ['https://attacker.example.test/mcp', 'http://vendor.example.test/v2/mcp', 'https://vendor.example.test:8443/v2/mcp']) {
      const moved = await cp.request('PATCH', `${base}/${id}`, { token: admin.token, body: { url } });
      expect(moved.status).toBe(400);
      expect(moved.json['errors']).toEqual([{ path: 'headers', message: expect.stringContaining('another origin') }]);
    }
    const row = () => cp.system.upstream.findFirstOrThrow({ where: { tenantId: t.id, id }, select: { url: true, headersCiphertext: true } });
    expect((await row()).url).toBe('https://vendor.example.test/v2/mcp');
    const withNew = await cp.request('PATCH', `${base}/${id}`, { token: admin.token, body: { url: 'https://other.example.test/mcp', headers: { Authorization: 'Bearer new-one' } } });
    expect(withNew.json).toMatchObject({ url: 'https://other.example.test/mcp', hasHeaders: true });
    const removed = await cp.request('PATCH', `${base}/${id}`, { token: admin.token, body: { url: 'https://third.example.test/mcp', headers: null } });
    expect(removed.json).toMatchObject({ url: 'https://third.example.test/mcp', hasHeaders: false });
    expect((await row()).headersCiphertext).toBeNull();
    // Without stored headers there is nothing to keep to an origin.
    const fourth = await cp.request('PATCH', `${base}/${id}`, { token: admin.token, body: { url: 'https://fourth.example.test/mcp' } });
    expect(fourth.status).toBe(200);
    const version = Number(fourth.json['version']);

    // Headers an admin composed for the URL they read do not land on a URL changed since: If-Match names that version.
    const stale = await cp.request('PATCH', `${base}/${id}`, { token: admin.token, headers: { 'if-match': `"${version - 1}"` }, body: { headers: { Authorization: 'Bearer for-the-old-url' } } });
    expect(stale.status).toBe(412);
    expect(stale.json).toMatchObject({ code: 'PRECONDITION_FAILED', detail: expect.stringContaining(`version ${version}`) });
    expect((await row()).headersCiphertext).toBeNull();
    expect((await cp.request('PATCH', `${base}/${id}`, { token: admin.token, headers: { 'if-match': 'yesterday' }, body: { enabled: false } })).status).toBe(412);
    // GET names the version in its ETag, which is what If-Match takes back; a change answers with the new one.
    const read = await cp.request('GET', `${base}/${id}`, { token: admin.token });
    expect(read.headers['etag']).toBe(`"${version}"`);
    const current = await cp.request('PATCH', `${base}/${id}`, { token: admin.token, headers: { 'if-match': String(read.headers['etag']) }, body: { headers: { Authorization: 'Bearer for-this-url' } } });
    expect(current.json).toMatchObject({ version: version + 1, hasHeaders: true });
    expect(current.headers['etag']).toBe(`"${version + 1}"`);
  });

  it('rejects a tool-prefix collision with a 409 naming the holder, and bad input with field errors', async () => {
    const t = await cp.tenant();
    const admin = await cp.member(t.id, 'owner');
    const base = `/api/v1/tenants/${t.id}/upstreams`;
    const body = { name: 'Files', toolPrefix: 'files', transport: 'sse', url: 'http://files.example.test/sse' };
    expect((await cp.request('POST', base, { token: admin.token, body })).status).toBe(201);
    const clash = await cp.request('POST', base, { token: admin.token, body: { ...body, name: 'Files 2' } });
    expect(clash.status).toBe(409);
    expect(clash.json['detail']).toMatch(/Tool prefix "files" is already used by upstream "Files"/);
    const bad = await cp.request('POST', base, {
      token: admin.token,
      body: { name: '', toolPrefix: 'Bad__Prefix', transport: 'streamable_http', url: 'https://user:pw@example.test' },
    });
    expect(bad.status).toBe(400);
    expect((bad.json['errors'] as { path: string }[]).map((e) => e.path)).toEqual(expect.arrayContaining(['name', 'toolPrefix', 'url']));
  });

  it('allows stdio upstreams only to platform admins and only allow-listed commands', async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const operator = await cp.user({ platformAdmin: true });
    await cp.system.membership.create({ data: { tenantId: t.id, userId: operator.id, role: 'admin' } });
    const base = `/api/v1/tenants/${t.id}/upstreams`;
    const stdio = { name: 'Local', toolPrefix: 'local', transport: 'stdio', command: STDIO_ALLOWED, args: ['--stdio'], env: { API_TOKEN: 'super-secret-env' } };
    expect((await cp.request('POST', base, { token: owner.token, body: stdio })).status).toBe(403);
    const notListed = await cp.request('POST', base, { token: operator.token, body: { ...stdio, command: '/bin/sh' } });
    expect(notListed.status).toBe(400);
    expect(notListed.json['errors']).toEqual([{ path: 'command', message: expect.stringMatching(/allowlist/) }]);
    // An argument every member would read holding the credential: refused, pointing at the sealed env.
    const inArgs = await cp.request('POST', base, { token: operator.token, body: { ...stdio, args: ['--stdio', '--api-token', 'super-secret-arg-1'] } });
    expect(inArgs.status).toBe(400);
    expect(inArgs.json['errors']).toEqual([{ path: 'args.2', message: expect.stringContaining('put it in env') }]);
    expect(inArgs.text).not.toContain('super-secret');
    const ok = await cp.request('POST', base, { token: operator.token, body: { ...stdio, args: ['--stdio', '--api-token', '${API_TOKEN}'] } });
    expect(ok.status).toBe(201);
    expect(ok.json).toMatchObject({ transport: 'stdio', command: STDIO_ALLOWED, args: ['--stdio', '--api-token', '${API_TOKEN}'], hasEnv: true, url: null });
    expect(ok.text).not.toContain('super-secret');
    const id = String(ok.json['id']);
    expect((await cp.request('PATCH', `${base}/${id}`, { token: owner.token, body: { args: ['--evil'] } })).status).toBe(403);
    expect((await cp.request('PATCH', `${base}/${id}`, { token: owner.token, body: { url: 'https://x.test' } })).status).toBe(400);
    expect((await cp.request('PATCH', `${base}/${id}`, { token: owner.token, body: { enabled: false } })).json).toMatchObject({ enabled: false, version: 2 });
    expect((await cp.request('DELETE', `${base}/${id}`, { token: owner.token })).status).toBe(204);
    expect((await cp.request('GET', `${base}/${id}`, { token: owner.token })).status).toBe(404);
  });
});

describe('agent clients and API keys', () => {
  it('shows a key’s secret once, stores only its hash, lists the display prefix, revokes, and announces changes', async () => {
    const t = await cp.tenant();
    const admin = await cp.member(t.id, 'admin');
    const auditor = await cp.member(t.id, 'auditor');
    const client = await cp.request('POST', `/api/v1/tenants/${t.id}/agent-clients`, { token: admin.token, body: { name: 'CI bot' } });
    expect(client.status).toBe(201);
    const agentClientId = String(client.json['id']);
    expect((await cp.request('POST', `/api/v1/tenants/${t.id}/agent-clients`, { token: admin.token, body: { name: 'CI bot' } })).status).toBe(409);

    const base = `/api/v1/tenants/${t.id}/api-keys`;
    const created = await cp.request('POST', base, { token: admin.token, body: { name: 'deploy', agentClientId } });
    expect(created.status).toBe(201);
    const secret = String(created.json['secret']);
    expect(secret).toMatch(/^pcs_[0-9A-Za-z]{40}$/);
    expect(created.json['displayPrefix']).toBe(secret.slice(0, 10));
    const row = await cp.system.apiKey.findFirstOrThrow({ where: { tenantId: t.id, id: String(created.json['id']) }, select: { keyHash: true } });
    expect(row.keyHash).toBe(hashApiKey(secret));

    const listed = await cp.request('GET', base, { token: auditor.token });
    expect(listed.json.items).toHaveLength(1);
    expect(listed.text).not.toContain(secret);
    expect(listed.text).not.toContain(row.keyHash);
    expect(cp.logs.join('\n')).not.toContain(secret);

    const unknownClient = await cp.request('POST', base, { token: admin.token, body: { name: 'x', agentClientId: '0190a0a0-0000-7000-8000-000000000000' } });
    expect(unknownClient.json['errors']).toEqual([{ path: 'agentClientId', message: expect.any(String) }]);

    const revoked = await cp.request('POST', `${base}/${String(created.json['id'])}/revoke`, { token: admin.token });
    expect(revoked.status).toBe(200);
    expect(revoked.json['revokedAt']).toEqual(expect.any(String));
    expect((await cp.request('POST', `${base}/${String(created.json['id'])}/revoke`, { token: auditor.token })).status).toBe(403);

    await waitFor(() => notices.filter((n) => n.channel === CHANGE_CHANNELS.apiKeys && n.message === t.id).length >= 2);
    const events = await cp.eventsAtLeast(t.id, 3);
    expect(events.map((e) => e.method)).toEqual(['agent_client.create', 'api_key.create', 'api_key.revoke']);
    expect(JSON.stringify(events)).not.toContain(secret);

    expect((await cp.request('DELETE', `/api/v1/tenants/${t.id}/agent-clients/${agentClientId}`, { token: admin.token })).status).toBe(204);
    expect((await cp.request('GET', base, { token: admin.token })).json.items).toHaveLength(0);
  });

  it('records one revocation when two of the same key race: the one whose update revoked it', async () => {
    const t = await cp.tenant();
    const alice = await cp.member(t.id, 'owner');
    const bob = await cp.member(t.id, 'owner');
    const base = `/api/v1/tenants/${t.id}`;
    const client = await cp.request('POST', `${base}/agent-clients`, { token: alice.token, body: { name: 'bot' } });
    const key = await cp.request('POST', `${base}/api-keys`, { token: alice.token, body: { name: 'k', agentClientId: client.json['id'] } });
    const keyId = String(key.json['id']);
    await cp.eventsAtLeast(t.id, 2);

    // Both read the key live; the second's update waits for the first's and then matches no row.
    const answers = await cp.atOnce('api_keys', keyId, () => [
      cp.request('POST', `${base}/api-keys/${keyId}/revoke`, { token: alice.token }),
      cp.request('POST', `${base}/api-keys/${keyId}/revoke`, { token: bob.token }),
    ]);
    expect(answers.map((answer) => answer.status)).toEqual([200, 200]);
    // Both answer with the one revocation that happened, as revoking a revoked key does.
    expect(answers[1]?.json['revokedAt']).toBe(answers[0]?.json['revokedAt']);

    const events = await cp.eventsAtLeast(t.id, 3);
    // Anything a second revocation would have recorded is in the queue by now: both requests have answered.
    const revokes = (await cp.auditEvents(t.id)).filter((event) => event.method === 'api_key.revoke');
    // Before, each recorded one (and announced it): both had read the key live before either updated it.
    expect(revokes).toHaveLength(1);
    expect(events.filter((event) => event.method === 'api_key.revoke')[0]?.arguments).toMatchObject({
      before: { revokedAt: null },
      after: { revokedAt: answers[0]?.json['revokedAt'] },
    });
    // Both answered after publishing whatever they announced: a marker published now arrives after all of it.
    const publisher = createRedisClient({ url: testContext().redisUrl, connectionName: 'control-plane-test-marker' });
    await publisher.publish(CHANGE_CHANNELS.apiKeys, `${t.id}:marker`);
    await publisher.quit();
    await waitFor(() => notices.some((n) => n.message === `${t.id}:marker`), { description: 'the marker notice' });
    // The key's creation, and one revocation.
    expect(notices.filter((n) => n.channel === CHANGE_CHANNELS.apiKeys && n.message === t.id)).toHaveLength(2);
  });

  it('revokes the agent-client keys a removed member created, and only those, announcing the change', async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const leaving = await cp.member(t.id, 'admin');
    const staying = await cp.member(t.id, 'admin');
    const client = await cp.request('POST', `/api/v1/tenants/${t.id}/agent-clients`, { token: owner.token, body: { name: 'CI bot' } });
    const agentClientId = String(client.json['id']);
    const base = `/api/v1/tenants/${t.id}/api-keys`;
    const create = async (token: string, name: string) => String((await cp.request('POST', base, { token, body: { name, agentClientId } })).json['id']);
    const leavingKeys = [await create(leaving.token, 'one'), await create(leaving.token, 'two')];
    const alreadyRevoked = await create(leaving.token, 'old');
    expect((await cp.request('POST', `${base}/${alreadyRevoked}/revoke`, { token: owner.token })).status).toBe(200);
    const firstRevocation = (await cp.system.apiKey.findFirstOrThrow({ where: { id: alreadyRevoked }, select: { revokedAt: true } })).revokedAt;
    const stayingKey = await create(staying.token, 'kept');
    // A call one of the leaving admin's keys made, waiting for approval.
    const held = await cp.system.approval.create({
      data: { tenantId: t.id, apiKeyId: leavingKeys[0] as string, agentClientId, upstreamId: '0190a0a0-0000-7000-8000-000000000001', tool: 'echo', argumentsHash: 'h', arguments: {}, expiresAt: new Date(Date.now() + 600_000) },
      select: { id: true },
    });
    const noticesBefore = notices.filter((n) => n.channel === CHANGE_CHANNELS.apiKeys && n.message === t.id).length;

    const membership = await cp.system.membership.findFirstOrThrow({ where: { tenantId: t.id, userId: leaving.id }, select: { id: true } });
    expect((await cp.request('DELETE', `/api/v1/tenants/${t.id}/members/${membership.id}`, { token: owner.token })).status).toBe(204);

    const rows = await cp.system.apiKey.findMany({ where: { tenantId: t.id }, select: { id: true, revokedAt: true } });
    const revokedAt = new Map(rows.map((row) => [row.id, row.revokedAt]));
    for (const id of leavingKeys) expect(revokedAt.get(id)).toBeInstanceOf(Date);
    expect(revokedAt.get(alreadyRevoked)).toEqual(firstRevocation);
    expect(revokedAt.get(stayingKey)).toBeNull();
    expect(await cp.system.approval.findUniqueOrThrow({ where: { id: held.id }, select: { status: true } })).toEqual({ status: 'cancelled' });
    await waitFor(() => notices.some((n) => n.channel === CHANGE_CHANNELS.approvals && n.message === t.id));
    await waitFor(() => notices.filter((n) => n.channel === CHANGE_CHANNELS.apiKeys && n.message === t.id).length > noticesBefore);

    // agent_client.create, 4 × api_key.create, api_key.revoke, member.remove, 2 × api_key.revoke
    const events = await cp.eventsAtLeast(t.id, 9);
    const revokes = events.filter((e) => e.method === 'api_key.revoke' && e.actorUserId === owner.id).map((e) => e.targetId);
    expect(revokes.sort()).toEqual([alreadyRevoked, ...leavingKeys].sort());
    // Written with the change and enqueued after it: nothing left in the outbox.
    expect(await cp.system.auditOutbox.count({ where: { tenantId: t.id } })).toBe(0);
  });

  it('makes no key for an admin demoted while the request was under way (it would outlive the demotion\'s revocation)', async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const admin = await cp.member(t.id, 'admin');
    const client = await cp.request('POST', `/api/v1/tenants/${t.id}/agent-clients`, { token: owner.token, body: { name: 'racing bot' } });
    const agentClientId = String(client.json['id']);
    // The demotion is written but not committed: the access check still reads "admin" and lets the request in.
    let release: () => void = () => undefined;
    let demoted: () => void = () => undefined;
    const written = new Promise<void>((resolve) => (demoted = resolve));
    const demotion = cp.system.$transaction(
      async (tx) => {
        await tx.membership.updateMany({ where: { tenantId: t.id, userId: admin.id }, data: { role: 'member' } });
        demoted();
        await new Promise<void>((resolve) => (release = resolve));
      },
      { timeout: 20_000 },
    );
    await written;
    const creating = cp.request('POST', `/api/v1/tenants/${t.id}/api-keys`, { token: admin.token, body: { name: 'late', agentClientId } });
    // The key's transaction waits on the demotion's row lock (a lock not granted, in pg_locks) until it commits.
    await waitFor(async () => (await cp.system.$queryRaw<{ waiting: bigint }[]>`SELECT count(*) AS waiting FROM pg_locks WHERE NOT granted`)[0]?.waiting ?? 0n, { timeoutMs: 5_000 });
    release();
    await demotion;
    const refused = await creating;
    expect(refused.status).toBe(403);
    expect(await cp.system.apiKey.count({ where: { tenantId: t.id, agentClientId } })).toBe(0);
  });

  it('revokes the agent-client keys of an admin demoted to a role that may not make keys, and not on a change that keeps it', async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const demoted = await cp.member(t.id, 'admin');
    const promoted = await cp.member(t.id, 'admin');
    const client = await cp.request('POST', `/api/v1/tenants/${t.id}/agent-clients`, { token: owner.token, body: { name: 'deploy bot' } });
    const agentClientId = String(client.json['id']);
    const base = `/api/v1/tenants/${t.id}/api-keys`;
    const create = async (token: string, name: string) => String((await cp.request('POST', base, { token, body: { name, agentClientId } })).json['id']);
    const demotedKey = await create(demoted.token, 'theirs');
    const promotedKey = await create(promoted.token, 'kept');
    const membershipOf = async (userId: string) => (await cp.system.membership.findFirstOrThrow({ where: { tenantId: t.id, userId }, select: { id: true } })).id;

    // admin → auditor: may no longer make keys, so the ones they made (and saw) are revoked.
    const toAuditor = await cp.request('PATCH', `/api/v1/tenants/${t.id}/members/${await membershipOf(demoted.id)}`, { token: owner.token, body: { role: 'auditor' } });
    expect(toAuditor.status).toBe(200);
    // admin → owner: still may.
    expect((await cp.request('PATCH', `/api/v1/tenants/${t.id}/members/${await membershipOf(promoted.id)}`, { token: owner.token, body: { role: 'owner' } })).status).toBe(200);

    const revokedAt = new Map((await cp.system.apiKey.findMany({ where: { tenantId: t.id }, select: { id: true, revokedAt: true } })).map((row) => [row.id, row.revokedAt]));
    expect(revokedAt.get(demotedKey)).toBeInstanceOf(Date);
    expect(revokedAt.get(promotedKey)).toBeNull();
    const events = await cp.eventsAtLeast(t.id, 6);
    expect(events.filter((e) => e.method === 'api_key.revoke').map((e) => e.targetId)).toEqual([demotedKey]);
  });
});
