/**
 * ops review: REDIS_URL with a path that is not a database number passes every app's config and then kills the
 * process with an uncaught ioredis ReplyError ("ERR value is not an integer or out of range", from `SELECT NaN`):
 * exit 1, a raw stack trace, and REDIS_URL never named. Like any other bad variable it should stop the app at boot
 * with exit 78 naming REDIS_URL (node-apps.e2e-spec.ts: "refuses to start on bad config").
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { freePort, startBuiltApp, waitForExit, type AppProcess } from '../support/app-process';

const apps = [
  { name: 'control-plane', portVar: 'CONTROL_PLANE_PORT' },
  { name: 'gateway', portVar: 'GATEWAY_PORT' },
  { name: 'audit-worker', portVar: 'AUDIT_WORKER_HEALTH_PORT' },
] as const;

const running: AppProcess[] = [];
afterAll(async () => {
  await Promise.all(running.map((app) => app.stop(2_000)));
});

describe.each(apps)('$name process, REDIS_URL=redis://…/abc', ({ name, portVar }) => {
  it('refuses to start (78) naming REDIS_URL, with no uncaught exception', async () => {
    const app = startBuiltApp(name, {
      DATABASE_URL: inject('databaseUrl'),
      REDIS_URL: `${inject('redisUrl').replace(/\/\d*$/, '')}/abc`,
      [portVar]: String(await freePort()),
      LOG_LEVEL: 'warn',
    });
    running.push(app);
    const code = await waitForExit(app, 15_000);
    const output = app.output();
    expect({ code, namesVariable: output.includes('REDIS_URL'), uncaught: /^Node\.js v/m.test(output) }, output.slice(0, 400)).toEqual({
      code: 78,
      namesVariable: true,
      uncaught: false,
    });
  }, 30_000);
});
