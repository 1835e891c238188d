/**
 * The operator scripts (npm run audit:*, secrets:*) with their dependencies out of reach (a closed port): each stops
 * with one clear line and a non-zero exit; none hangs, prints a stack trace or a library's source, or names a password.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, startProcess, waitForExit } from '../../e2e/support/app-process';

const REDIS_PASSWORD = 'RedisSecretPW-ops1';
const PG_PASSWORD = 'PgSecretPW-ops2';
const SYSTEM_URL = `postgresql://portcullis_system:${PG_PASSWORD}@127.0.0.1:1/portcullis`;

/** One script of tools/scripts, run with Node to its exit (killed after `timeoutMs`). */
async function script(file: string, args: string[], env: Record<string, string>, timeoutMs = 40_000) {
  const app = startProcess(process.execPath, [path.join(repoRoot, 'tools/scripts', file), ...args], env);
  const started = Date.now();
  const code = await waitForExit(app, timeoutMs);
  return { code, signal: app.child.signalCode, ms: Date.now() - started, output: app.output() };
}

function expectCleanFailure(run: { code: number | null; output: string }) {
  expect(run.code).not.toBe(0);
  expect(run.code).not.toBeNull();
  // A clear message: the database cannot be reached (where it is may be named; the password never).
  expect(run.output, run.output.slice(-500)).toMatch(/can't reach|not reachable|ECONNREFUSED/i);
  expect(run.output).not.toContain(PG_PASSWORD);
  // No uncaught exception: no stack frames, no dump of a library's source.
  expect(run.output, run.output.slice(-700)).not.toMatch(/^\s+at /m);
  expect(run.output.length).toBeLessThan(2_000);
}

describe.each([['list'], ['replay']])('npm run audit:dlq -- %s, Redis unreachable', (sub) => {
  it('exits non-zero with a clear message, no stack trace and no password, instead of hanging', async () => {
    // 20 s is generous: ioredis has failed its first connection attempt after a few milliseconds.
    const run = await script('audit.mjs', ['dlq', sub], { REDIS_URL: `redis://:${REDIS_PASSWORD}@127.0.0.1:1` }, 20_000);
    expect(run.signal, `killed after ${run.ms} ms; output so far:\n${run.output.slice(0, 300)}`).toBeNull();
    expect(run.code).toBe(3);
    expect(run.output).toMatch(/redis/i);
    expect(run.output).not.toMatch(/^\s+at /m);
    expect(run.output).not.toContain(REDIS_PASSWORD);
  }, 30_000);
});

describe('operator scripts, Postgres unreachable', () => {
  // Through jiti, Prisma's error formatting itself failed (a TypeError from its runtime), hiding the cause.
  it('npm run audit:verify -- --tenant acme: a clear message and exit 3 (not run; 1 is a broken chain), no uncaught exception', async () => {
    const run = await script('audit.mjs', ['verify', '--tenant', 'acme'], { DATABASE_SYSTEM_URL: SYSTEM_URL });
    expectCleanFailure(run);
    expect(run.output).toContain("audit verify: database error: Can't reach database server at 127.0.0.1:1");
    expect(run.code).toBe(3);
  }, 60_000);

  it('npm run secrets:reseal: a clear message and a non-zero exit, no uncaught exception', async () => {
    const keyring = `k1:${randomBytes(32).toString('base64')}`;
    expectCleanFailure(
      await script('secrets.mjs', ['reseal'], { DATABASE_SYSTEM_URL: SYSTEM_URL, CONTROL_PLANE_SECRETS_KEYRING: keyring }),
    );
  }, 60_000);
});
