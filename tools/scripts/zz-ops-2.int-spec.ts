/**
 * ops review: `npm run audit:verify -- --tenant <slug>` and `npm run secrets:reseal` with Postgres out of reach (a
 * closed port). Both must say the database cannot be reached and exit non-zero; today the error escapes the scripts:
 * Node prints an uncaught exception (a page of Prisma's minified source, then a TypeError stack from inside Prisma's
 * error formatting as loaded through jiti) and the real cause is never named.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, startProcess, waitForExit } from '../../e2e/support/app-process';

const PG_PASSWORD = 'PgSecretPW-ops2';
const SYSTEM_URL = `postgresql://portcullis_system:${PG_PASSWORD}@127.0.0.1:1/portcullis`;

async function script(file: string, args: string[], env: Record<string, string>) {
  const app = startProcess(process.execPath, [path.join(repoRoot, 'tools/scripts', file), ...args], env);
  const code = await waitForExit(app, 40_000);
  return { code, output: app.output() };
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

describe('operator scripts, Postgres unreachable', () => {
  it('npm run audit:verify -- --tenant acme: a clear message and exit 1, no uncaught exception', async () => {
    expectCleanFailure(await script('audit.mjs', ['verify', '--tenant', 'acme'], { DATABASE_SYSTEM_URL: SYSTEM_URL }));
  }, 60_000);

  it('npm run secrets:reseal: a clear message and a non-zero exit, no uncaught exception', async () => {
    const keyring = `k1:${randomBytes(32).toString('base64')}`;
    expectCleanFailure(
      await script('secrets.mjs', ['reseal'], { DATABASE_SYSTEM_URL: SYSTEM_URL, CONTROL_PLANE_SECRETS_KEYRING: keyring }),
    );
  }, 60_000);
});
