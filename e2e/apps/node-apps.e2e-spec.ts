import { createServer } from 'node:net';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { freePort, startBuiltApp, waitForExit, waitForReady, type AppProcess } from '../support/app-process';

// The three Nest processes, started from their built bundles as `npm start` and production would.
const apps = [
  { name: 'control-plane', portVar: 'CONTROL_PLANE_PORT' },
  { name: 'gateway', portVar: 'GATEWAY_PORT' },
  { name: 'audit-worker', portVar: 'AUDIT_WORKER_HEALTH_PORT' },
] as const;

const running: AppProcess[] = [];
afterAll(async () => {
  await Promise.all(running.map((app) => app.stop(2_000)));
});

describe.each(apps)('$name process', ({ name, portVar }) => {
  it('refuses to start on bad config, naming every bad variable and no value', async () => {
    const app = startBuiltApp(name, {
      DATABASE_URL: 'mysql://root:s3cr3t-pw@db/portcullis',
      [portVar]: 'not-a-port',
      LOG_LEVEL: 'loud',
    });
    running.push(app);
    const code = await waitForExit(app, 15_000);
    expect(code).toBe(78);
    const output = app.output();
    for (const key of ['DATABASE_URL', 'REDIS_URL', portVar, 'LOG_LEVEL']) expect(output).toContain(key);
    expect(output).not.toContain('s3cr3t-pw');
  });

  it('becomes ready against real Postgres and Redis, and stops cleanly on SIGTERM', async () => {
    const port = await freePort();
    const app = startBuiltApp(name, {
      DATABASE_URL: inject('databaseUrl'),
      REDIS_URL: inject('redisUrl'),
      [portVar]: String(port),
      LOG_LEVEL: 'warn',
    });
    running.push(app);
    await waitForReady(`http://127.0.0.1:${port}/readyz`, app);
    const ready = await (await fetch(`http://127.0.0.1:${port}/readyz`)).json();
    expect(ready).toMatchObject({ status: 'ok', checks: { postgres: 'ok', redis: 'ok' } });
    expect(await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()).toEqual({ status: 'ok' });
    const started = Date.now();
    expect(await app.stop(10_000)).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('reports not ready (503), without crashing, when Redis is unreachable', async () => {
    const port = await freePort();
    const app = startBuiltApp(name, {
      DATABASE_URL: inject('databaseUrl'),
      REDIS_URL: 'redis://127.0.0.1:1',
      [portVar]: String(port),
      LOG_LEVEL: 'warn',
    });
    running.push(app);
    await waitForReady(`http://127.0.0.1:${port}/healthz`, app);
    const res = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ status: 'unavailable', checks: { redis: expect.not.stringMatching(/^ok$/) } });
    expect(app.child.exitCode).toBeNull();
  });

  // ops review: a REDIS_URL path that is not a database number passed every app's config, and ioredis then sent
  // `SELECT NaN`: the process died of an uncaught ReplyError ("ERR value is not an integer or out of range"), exit 1,
  // a raw stack trace, REDIS_URL never named.
  it('refuses to start (78) on REDIS_URL=redis://…/abc, naming REDIS_URL, with no uncaught exception', async () => {
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

  // A database number the server does not have (16 by default) passes the config: Redis refuses the SELECT when each
  // client connects. That reply must reach an 'error' listener (logged), never become an uncaught exception; and since
  // ioredis then carries on in database 0, the app is not ready (it reported ready, its keys mixed into database 0).
  it('keeps running, logging it and not ready, when Redis refuses the database of REDIS_URL (…/99)', async () => {
    const port = await freePort();
    const app = startBuiltApp(name, {
      DATABASE_URL: inject('databaseUrl'),
      REDIS_URL: `${inject('redisUrl').replace(/\/\d*$/, '')}/99`,
      [portVar]: String(port),
      LOG_LEVEL: 'warn',
    });
    running.push(app);
    await waitForReady(`http://127.0.0.1:${port}/healthz`, app);
    const deadline = Date.now() + 10_000;
    while (!app.output().includes('DB index is out of range') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const output = app.output();
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    const body = await ready.text();
    expect({ exitCode: app.child.exitCode, logged: output.includes('DB index is out of range'), uncaught: /^Node\.js v|Unhandled|uncaught/im.test(output), ready: ready.status }, output.slice(0, 800)).toEqual({
      exitCode: null,
      logged: true,
      uncaught: false,
      ready: 503,
    });
    expect(body).toContain('redis');
  }, 30_000);

  // Nothing is in flight: a close that waited for a Redis connection (BullMQ's worker.close) would sit out the whole
  // shutdown grace (15 s) and exit 1.
  it('stops cleanly and promptly on SIGTERM when Redis is unreachable', async () => {
    const port = await freePort();
    const app = startBuiltApp(name, {
      DATABASE_URL: inject('databaseUrl'),
      REDIS_URL: 'redis://127.0.0.1:1',
      [portVar]: String(port),
      LOG_LEVEL: 'info',
    });
    running.push(app);
    await waitForReady(`http://127.0.0.1:${port}/healthz`, app);
    const started = Date.now();
    const code = await app.stop(20_000);
    const took = Date.now() - started;
    const shutdownLines = app.output().split('\n').filter((l) => /shutting|took too long|stopped/.test(l)).join('\n');
    expect({ code, tookUnder5s: took < 5_000 }, shutdownLines).toEqual({ code: 0, tookUnder5s: true });
  }, 60_000);
});

// Readiness watches REDIS_URL; the gateway's own Redis for rate limits or audit, when another, is checked at boot.
describe.each([['GATEWAY_RATE_LIMIT_REDIS_URL'], ['GATEWAY_AUDIT_REDIS_URL']])('gateway process, %s naming a database Redis refuses', (variable) => {
  it('refuses to start with one line naming the variable (it ran in database 0)', async () => {
    const app = startBuiltApp('gateway', {
      DATABASE_URL: inject('databaseUrl'),
      REDIS_URL: inject('redisUrl'),
      [variable]: `${inject('redisUrl').replace(/\/\d*$/, '')}/99`,
      GATEWAY_AUDIT_ENABLED: 'true',
      GATEWAY_PORT: String(await freePort()),
      LOG_LEVEL: 'warn',
    });
    running.push(app);
    const code = await waitForExit(app, 20_000);
    const output = app.output();
    expect({ code, names: output.includes(`not 99 as ${variable} says`), uncaught: /^Node\.js v/m.test(output) }, output.slice(0, 600)).toEqual({ code: 1, names: true, uncaught: false });
  }, 30_000);
});

// Node's bare `listen EADDRINUSE` stack named no variable (found in review); the metrics listener already said which.
describe.each([
  { name: 'gateway', portVar: 'GATEWAY_PORT', settings: 'GATEWAY_HOST/GATEWAY_PORT' },
  { name: 'control-plane', portVar: 'CONTROL_PLANE_PORT', settings: 'CONTROL_PLANE_HOST/CONTROL_PLANE_PORT' },
  { name: 'audit-worker', portVar: 'AUDIT_WORKER_HEALTH_PORT', settings: 'AUDIT_WORKER_HEALTH_HOST/AUDIT_WORKER_HEALTH_PORT' },
  { name: 'demo-upstreams', portVar: 'DEMO_UPSTREAMS_PORT', settings: 'DEMO_UPSTREAMS_HOST/DEMO_UPSTREAMS_PORT' },
  { name: 'dev-idp', portVar: 'DEV_IDP_PORT', settings: 'DEV_IDP_HOST/DEV_IDP_PORT' },
] as const)('$name process on a port already taken', ({ name, portVar, settings }) => {
  it('stops with one line naming the variables and the cause', async () => {
    const taken = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', resolve));
    try {
      const app = startBuiltApp(name, {
        DATABASE_URL: inject('databaseUrl'),
        REDIS_URL: inject('redisUrl'),
        [portVar]: String(port),
        LOG_LEVEL: 'warn',
        ...(name === 'dev-idp' ? { NODE_ENV: 'development', DEV_IDP_PORTAL_CLIENT_SECRET: 'a-dev-idp-client-secret' } : {}),
      });
      running.push(app);
      const code = await waitForExit(app, 20_000);
      const output = app.output();
      expect({ code, names: output.includes(`${settings}: cannot listen on 127.0.0.1:${port} (EADDRINUSE)`) }, output.slice(-800)).toEqual({ code: 1, names: true });
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  }, 30_000);
});
