import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { newSessionId } from './session';
import { MAX_TASK_ROUTE_TTL_MS, MAX_TASKS_PER_SESSION, RedisTaskRouteStore, TaskRouteError, taskRouteKeys } from './task-routes';

const redis = new Redis(inject('redisUrl'));
afterAll(() => redis.quit());
const store = new RedisTaskRouteStore(redis);
const upstreamId = '019a0000-0000-7000-8000-000000000001';

describe('RedisTaskRouteStore (real Redis)', () => {
  it('gives each upstream task an unguessable id of its own, the same one again for the same task, per session', async () => {
    const session = newSessionId();
    const first = await store.add(session, { upstreamId, taskId: '1' }, 60_000);
    const second = await store.add(session, { upstreamId, taskId: '2' }, 60_000);
    expect(first).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(second).not.toBe(first);
    expect(await store.add(session, { upstreamId, taskId: '1' }, 60_000)).toBe(first);
    // A task id with a newline cannot be confused with another route.
    const odd = await store.add(session, { upstreamId, taskId: 'a\nb' }, 60_000);
    expect(await store.route(session, odd)).toMatchObject({ upstreamId, taskId: 'a\nb' });
    expect(await store.route(session, first)).toEqual({ upstreamId, taskId: '1', expiresAt: expect.any(Number) });
    expect(await store.agentTaskId(session, { upstreamId, taskId: '2' })).toBe(second);
    // Another session knows none of it; nor does anyone an id of the wrong shape.
    const other = newSessionId();
    expect(await store.route(other, first)).toBeUndefined();
    expect(await store.agentTaskId(other, { upstreamId, taskId: '1' })).toBeUndefined();
    expect(await store.route(session, '1')).toBeUndefined();
    await store.delete(session);
    expect(await store.route(session, first)).toBeUndefined();
  });

  it('keeps the tool whose call started a task with its route, and forgets it with the route', async () => {
    const session = newSessionId();
    const keys = taskRouteKeys(session);
    const named = await store.add(session, { upstreamId, taskId: 'named' }, 2_000, 'slow-tool');
    const unnamed = await store.add(session, { upstreamId, taskId: 'unnamed' }, 60_000);
    const tooLong = await store.add(session, { upstreamId, taskId: 'too-long' }, 60_000, 'x'.repeat(513));
    expect(await store.route(session, named)).toEqual({ upstreamId, taskId: 'named', expiresAt: expect.any(Number), tool: 'slow-tool' });
    expect(await store.route(session, unnamed)).toEqual({ upstreamId, taskId: 'unnamed', expiresAt: expect.any(Number) });
    expect(await store.route(session, tooLong)).not.toHaveProperty('tool');
    // Recorded again: the tool that first started it stays, and a route recorded without one learns it.
    expect(await store.add(session, { upstreamId, taskId: 'named' }, 2_000, 'other-tool')).toBe(named);
    expect((await store.route(session, named))?.tool).toBe('slow-tool');
    expect(await store.add(session, { upstreamId, taskId: 'unnamed' }, 60_000, 'late-tool')).toBe(unnamed);
    expect((await store.route(session, unnamed))?.tool).toBe('late-tool');
    await new Promise((resolve) => setTimeout(resolve, 2_200));
    expect(await store.route(session, named)).toBeUndefined();
    // Pruned with its route by the next add.
    await store.add(session, { upstreamId, taskId: 'next' }, 60_000);
    expect(await redis.hexists(keys.routes, `n:${named}`)).toBe(0);
    expect(await redis.hexists(keys.routes, `g:${named}`)).toBe(0);
    await store.delete(session);
  });

  it('keeps routes for the task lifetime asked (at most a day) and refuses unusable upstream ids', async () => {
    const session = newSessionId();
    await store.add(session, { upstreamId, taskId: 'short' }, 5_000);
    const short = await redis.pttl(taskRouteKeys(session).routes);
    expect(short).toBeGreaterThan(0);
    expect(short).toBeLessThanOrEqual(5_000);
    await store.add(session, { upstreamId, taskId: 'long' }, 10 * MAX_TASK_ROUTE_TTL_MS);
    const long = await redis.pttl(taskRouteKeys(session).routes);
    expect(long).toBeGreaterThan(MAX_TASK_ROUTE_TTL_MS - 60_000);
    expect(long).toBeLessThanOrEqual(MAX_TASK_ROUTE_TTL_MS);
    // A shorter task later does not shorten what the longer one needs.
    await store.add(session, { upstreamId, taskId: 'later' }, 5_000);
    expect(await redis.pttl(taskRouteKeys(session).routes)).toBeGreaterThan(MAX_TASK_ROUTE_TTL_MS - 60_000);
    await expect(store.add(session, { upstreamId, taskId: '' }, 5_000)).rejects.toBeInstanceOf(TaskRouteError);
    await expect(store.add(session, { upstreamId, taskId: 'x'.repeat(513) }, 5_000)).rejects.toMatchObject({ reason: 'bad_task_id' });
    await store.delete(session);
  });

  it(`holds at most ${MAX_TASKS_PER_SESSION} tasks per session, also when they are added at once`, async () => {
    const session = newSessionId();
    const outcomes = await Promise.allSettled(
      Array.from({ length: MAX_TASKS_PER_SESSION + 20 }, (_, index) => store.add(session, { upstreamId, taskId: `t${index}` }, 60_000)),
    );
    const added = outcomes.filter((outcome) => outcome.status === 'fulfilled');
    const refused = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(added).toHaveLength(MAX_TASKS_PER_SESSION);
    expect(refused).toHaveLength(20);
    expect((refused[0] as PromiseRejectedResult).reason).toMatchObject({ reason: 'too_many' });
    // A task already known is still answered at the limit.
    expect(await store.add(session, { upstreamId, taskId: 't0' }, 60_000)).toMatch(/^[A-Za-z0-9_-]{22}$/);
    await store.delete(session);
  });

  it('forgets a route at the end of its lifetime: it is no longer found, and no longer counts toward the limit', async () => {
    const session = newSessionId();
    const keys = taskRouteKeys(session);
    // One long-lived route keeps the keys; the others lapse after 2 s (when all have lapsed, both keys expire whole).
    await store.add(session, { upstreamId, taskId: 'long-lived' }, 60_000);
    const ids = await Promise.all(Array.from({ length: MAX_TASKS_PER_SESSION - 1 }, (_, index) => store.add(session, { upstreamId, taskId: `old${index}` }, 2_000)));
    await expect(store.add(session, { upstreamId, taskId: 'one too many' }, 60_000)).rejects.toMatchObject({ reason: 'too_many' });
    await new Promise((resolve) => setTimeout(resolve, 2_200));
    expect(await store.route(session, ids[0] as string)).toBeUndefined();
    expect(await store.agentTaskId(session, { upstreamId, taskId: 'old0' })).toBeUndefined();
    // Lapsed routes no longer count: the first add after them has room. Each add prunes up to 200 of them.
    expect(await store.add(session, { upstreamId, taskId: 'new0' }, 60_000)).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(await redis.zcard(keys.expiry)).toBe(MAX_TASKS_PER_SESSION - 200 + 1);
    // The route of a lapsed task not pruned yet may be recorded anew; pruning the old entry later leaves the new one.
    const again = await store.add(session, { upstreamId, taskId: 'old998' }, 60_000);
    expect(again).not.toBe(ids[998]);
    for (let index = 1; index < 5; index += 1) await store.add(session, { upstreamId, taskId: `new${index}` }, 60_000);
    expect(await redis.hexists(keys.routes, `g:${ids[998] as string}`)).toBe(0);
    expect(await store.route(session, again)).toMatchObject({ upstreamId, taskId: 'old998' });
    expect(await store.agentTaskId(session, { upstreamId, taskId: 'old998' })).toBe(again);
    // The long-lived route, new0..new4 and old998 again.
    expect(await redis.zcard(keys.expiry)).toBe(7);
    await store.delete(session);
    expect(await redis.exists(keys.routes, keys.expiry)).toBe(0);
  });
});
