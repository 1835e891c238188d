import { PolicySnapshotWriter } from '@portcullis/control-plane/feature-policies';
import { waitFor } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlaneHarness } from './testing/control-plane-harness';

// Two control-plane processes, as deployed behind a load balancer.
let cp: ControlPlaneHarness;
let other: ControlPlaneHarness;
beforeAll(async () => {
  cp = await startControlPlane();
  other = await startControlPlane();
});
afterAll(async () => {
  await cp?.close();
  await other?.close();
});

/** Row locks this run's database is waiting for right now. */
async function waitingOnRowLocks(): Promise<number> {
  const [row] = await cp.system.$queryRaw<{ waiting: bigint }[]>`
    SELECT count(*) AS waiting FROM pg_locks
    WHERE NOT granted AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())`;
  return Number(row?.waiting ?? 0);
}

/**
 * A change that passed the access check, then waited its turn, lands only if its actor still holds the permission
 * (found by a review, 2026-12-07: an admin removed while their policy save waited set the tenant to allow everything
 * after the removal had been answered).
 */
describe('a change by an admin removed while it waits', () => {
  it('is refused once the removal was answered (a policy save queued behind an earlier change of the tenant)', async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const admin = await cp.member(t.id, 'admin');
    const colleague = await cp.member(t.id, 'admin');
    const base = `/api/v1/tenants/${t.id}`;
    const group = await cp.request('POST', `${base}/groups`, { token: owner.token, body: { externalId: 'g', name: 'G' } });
    const groupId = String(group.json['id']);
    const membership = await cp.system.membership.findFirstOrThrow({ where: { tenantId: t.id, userId: admin.id }, select: { id: true } });
    const queue = (cp.app.get(PolicySnapshotWriter) as unknown as { queue: { queued(id: string): number } }).queue;
    const answered: string[] = [];
    const { saved, removed, earlier } = await cp.system.$transaction(
      async (tx) => {
        // An earlier change of the tenant (a colleague's) is under way on this process, its group row busy: the admin's
        // policy save, already past the access check, waits its turn behind it.
        await tx.$queryRawUnsafe('SELECT id FROM groups WHERE id = $1::uuid FOR UPDATE', groupId);
        const earlier = cp.request('DELETE', `${base}/groups/${groupId}`, { token: colleague.token });
        await waitFor(async () => (queue.queued(t.id) >= 1 ? true : null), { description: 'the earlier change queued' });
        const saved = cp.request('PUT', `${base}/policy`, { token: admin.token, headers: { 'if-match': '"0"' }, body: { defaultEffect: 'allow', rules: [] } }).then((res) => {
          answered.push('save');
          return res;
        });
        await waitFor(async () => (queue.queued(t.id) >= 2 ? true : null), { description: "the admin's save past the guard, queued" });
        // Meanwhile an owner removes the admin on the other process: answered at once, or waiting for the owner's own
        // change under way (which holds the owner's role while it runs).
        const removed = other.request('DELETE', `${base}/members/${membership.id}`, { token: owner.token }).then((res) => {
          answered.push('removal');
          return res;
        });
        await waitFor(async () => (answered.includes('removal') || (await waitingOnRowLocks()) >= 2 ? true : null), { description: 'the removal answered or waiting' });
        return { saved, removed, earlier };
      },
      { timeout: 20_000 },
    );
    expect((await removed).status).toBe(204);
    expect((await earlier).status).toBe(204);
    const answer = await saved;
    const policy = await cp.system.policy.findFirst({ where: { tenantId: t.id }, select: { defaultEffect: true } });
    // The owner's removal does not wait for the colleague's change: it is answered first, and the save refused.
    expect(answered[0]).toBe('removal');
    expect(answer.status, JSON.stringify(answer.json)).toBe(403);
    expect(String(answer.json['detail'])).toMatch(/no longer allows/);
    expect(policy?.defaultEffect ?? 'deny').toBe('deny');
  });

  it('renames a group either before the removal is answered or not at all', async () => {
    const t = await cp.tenant();
    const owner = await cp.member(t.id, 'owner');
    const admin = await cp.member(t.id, 'admin');
    const base = `/api/v1/tenants/${t.id}`;
    const group = await cp.request('POST', `${base}/groups`, { token: owner.token, body: { externalId: 'g', name: 'G' } });
    const groupId = String(group.json['id']);
    const membership = await cp.system.membership.findFirstOrThrow({ where: { tenantId: t.id, userId: admin.id }, select: { id: true } });
    const answered: string[] = [];
    const { renamed, removed } = await cp.system.$transaction(
      async (tx) => {
        // The group row busy: the admin's rename, past the access check, waits for it.
        await tx.$queryRawUnsafe('SELECT id FROM groups WHERE id = $1::uuid FOR UPDATE', groupId);
        const renamed = cp.request('PATCH', `${base}/groups/${groupId}`, { token: admin.token, body: { name: 'Renamed by a removed admin' } }).then((res) => {
          answered.push('rename');
          return res;
        });
        await waitFor(async () => ((await waitingOnRowLocks()) >= 1 ? true : null), { description: 'the rename waiting for the group row' });
        const removed = other.request('DELETE', `${base}/members/${membership.id}`, { token: owner.token }).then((res) => {
          answered.push('removal');
          return res;
        });
        // The removal is either answered at once, or waits for the rename (which holds the admin's role while it runs).
        await waitFor(async () => (answered.includes('removal') || (await waitingOnRowLocks()) >= 2 ? true : null), { description: 'the removal answered or waiting' });
        return { renamed, removed };
      },
      { timeout: 20_000 },
    );
    expect((await removed).status).toBe(204);
    const rename = await renamed;
    const stored = await cp.system.group.findUniqueOrThrow({ where: { id: groupId }, select: { name: true } });
    if (answered[0] === 'removal') {
      expect(rename.status, JSON.stringify(rename.json)).toBe(403);
      expect(stored.name).toBe('G');
    } else {
      expect(rename.status).toBe(200);
      expect(stored.name).toBe('Renamed by a removed admin');
    }
  });

  it('lets an owner be added to a group while that owner changes a role: neither waits for the other (found by re-review)', async () => {
    const t = await cp.tenant();
    const second = await cp.member(t.id, 'owner');
    const actor = await cp.member(t.id, 'owner');
    const plain = await cp.member(t.id, 'member');
    const base = `/api/v1/tenants/${t.id}`;
    const group = await cp.request('POST', `${base}/groups`, { token: actor.token, body: { externalId: 'g', name: 'G' } });
    const groupId = String(group.json['id']);
    const plainMembership = await cp.system.membership.findFirstOrThrow({ where: { tenantId: t.id, userId: plain.id }, select: { id: true } });
    const { added, changed } = await cp.system.$transaction(
      async (tx) => {
        // The group row busy a moment: the add waits at its insert, holding its actor's role (and a key lock on the
        // added owner's membership, through the foreign key).
        await tx.$queryRawUnsafe('SELECT id FROM groups WHERE id = $1::uuid FOR UPDATE', groupId);
        const added = cp.request('POST', `${base}/groups/${groupId}/members`, { token: actor.token, body: { userId: second.id } });
        await waitFor(async () => ((await waitingOnRowLocks()) >= 1 ? true : null), { description: 'the add waiting for the group row' });
        // The added owner changes a role on the other process: it waits for the add (which holds the actor's role).
        const changed = other.request('PATCH', `${base}/members/${plainMembership.id}`, { token: second.token, body: { role: 'auditor' } });
        await waitFor(async () => ((await waitingOnRowLocks()) >= 2 ? true : null), { description: 'the role change waiting for the owners' });
        return { added, changed };
      },
      { timeout: 20_000 },
    );
    const [add, change] = await Promise.all([added, changed]);
    expect({ add: add.status, change: change.status }, JSON.stringify([add.json, change.json])).toEqual({ add: 201, change: 200 });
  }, 30_000);
});
