/**
 * ops review: `npm run audit:dlq -- list|replay` with Redis out of reach (a closed port). An operator command must
 * stop with a clear message and a non-zero exit; it must not hang, nor print stack traces, nor the Redis password.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, startProcess, waitForExit } from '../../e2e/support/app-process';

const REDIS_PASSWORD = 'RedisSecretPW-ops1';

async function auditCli(args: string[]) {
  const app = startProcess(process.execPath, [path.join(repoRoot, 'tools/scripts/audit.mjs'), ...args], {
    REDIS_URL: `redis://:${REDIS_PASSWORD}@127.0.0.1:1`,
  });
  const started = Date.now();
  // 20 s is generous: ioredis has failed its first connection attempt after a few milliseconds.
  const code = await waitForExit(app, 20_000);
  return { code, signal: app.child.signalCode, ms: Date.now() - started, output: app.output() };
}

describe.each([['list'], ['replay']])('npm run audit:dlq -- %s, Redis unreachable', (sub) => {
  it('exits non-zero with a clear message, no stack trace and no password, instead of hanging', async () => {
    const run = await auditCli(['dlq', sub]);
    expect(run.signal, `killed after ${run.ms} ms; output so far:\n${run.output.slice(0, 300)}`).toBeNull();
    expect(run.code).not.toBe(0);
    expect(run.output).toMatch(/redis/i);
    expect(run.output).not.toMatch(/^\s+at /m);
    expect(run.output).not.toContain(REDIS_PASSWORD);
  }, 30_000);
});
