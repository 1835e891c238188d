/**
 * ops review: the audit worker started while Redis is unreachable (it starts degraded, /healthz 200, /readyz 503, as
 * the node-apps spec expects) does not stop on SIGTERM: BullMQ's worker.close() in beforeApplicationShutdown waits for
 * a connection that never comes, so the process sits out the whole SHUTDOWN_GRACE_MS (15 s) and exits 1 ("graceful
 * shutdown took too long"). Nothing is in flight; the control plane and the gateway stop in milliseconds alike.
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { freePort, startBuiltApp, waitForReady, type AppProcess } from '../support/app-process';

const running: AppProcess[] = [];
afterAll(async () => {
  await Promise.all(running.map((app) => app.stop(2_000)));
});

describe('audit-worker process, Redis unreachable', () => {
  it('stops cleanly and promptly on SIGTERM (nothing is in flight)', async () => {
    const port = await freePort();
    const app = startBuiltApp('audit-worker', {
      DATABASE_URL: inject('databaseUrl'),
      REDIS_URL: 'redis://127.0.0.1:1',
      AUDIT_WORKER_HEALTH_PORT: String(port),
      LOG_LEVEL: 'info',
    });
    running.push(app);
    await waitForReady(`http://127.0.0.1:${port}/healthz`, app);
    const started = Date.now();
    const code = await app.stop(20_000);
    const took = Date.now() - started;
    expect({ code, tookUnder5s: took < 5_000 }, app.output().split('\n').filter((l) => /shutting|took too long|stopped/.test(l)).join('\n')).toEqual({ code: 0, tookUnder5s: true });
  }, 60_000);
});
