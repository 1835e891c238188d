import { afterAll, beforeAll, expect, it } from 'vitest';
import { startControlPlane, type ControlPlaneHarness } from './testing/control-plane-harness';

let cp: ControlPlaneHarness;
beforeAll(async () => {
  cp = await startControlPlane();
});
afterAll(async () => {
  await cp?.close();
});

/** Connections of this run's database waiting on an advisory lock (the tenant snapshot lock) right now. */
async function waitingOnAdvisoryLock(): Promise<number> {
  const [row] = await cp.system.$queryRaw<{ waiting: bigint }[]>`
    SELECT count(*) AS waiting FROM pg_locks
    WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
  return Number(row?.waiting ?? 0);
}

it('queues a burst of changes to one tenant in memory: no connection waits on its snapshot lock, and another tenant is served meanwhile', async () => {
  const busy = await cp.tenant();
  const other = await cp.tenant();
  const busyOwner = await cp.member(busy.id, 'owner');
  const otherOwner = await cp.member(other.id, 'owner');

  const burst = 80;
  let pending = burst;
  const creations = Array.from({ length: burst }, (_, i) =>
    cp.request('POST', `/api/v1/tenants/${busy.id}/agent-clients`, { token: busyOwner.token, body: { name: `agent ${i}` } }).then((res) => {
      pending -= 1;
      return res.status;
    }),
  );
  let maxWaiting = 0;
  const sampling = (async () => {
    while (pending > 0) {
      maxWaiting = Math.max(maxWaiting, await waitingOnAdvisoryLock());
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();

  // Each change rebuilds the snapshot in its own transaction; the other tenant's read needs a connection meanwhile.
  await new Promise((resolve) => setTimeout(resolve, 20));
  const read = await cp.request('GET', `/api/v1/tenants/${other.id}/agent-clients`, { token: otherOwner.token });
  const pendingWhenRead = pending;
  expect(read.status).toBe(200);

  expect(await Promise.all(creations)).toEqual(Array.from({ length: burst }, () => 201));
  await sampling;
  // Before the queue, each waiting change held a pool connection on the lock (up to the pool's 10), and the read
  // waited for a connection behind nearly the whole burst.
  expect(maxWaiting).toBe(0);
  expect(pendingWhenRead).toBeGreaterThan(burst / 2);
  // Every change applied, each in its own snapshot version.
  const snapshots = await cp.system.policySnapshot.findMany({ where: { tenantId: busy.id }, select: { version: true } });
  expect(new Set(snapshots.map((s) => s.version)).size).toBe(snapshots.length);
  expect(await cp.system.agentClient.count({ where: { tenantId: busy.id } })).toBe(burst);
});
