/**
 * `npm run bootstrap` as shipped (the built dist/apps/control-plane/bootstrap.js) against a database of its own,
 * freshly migrated: the shared test database always has platform admins, and bootstrap only ever runs once. The
 * first run creates the platform admin, the tenant and the owner membership and prints a token the control plane
 * accepts; every later run changes nothing; the application role cannot do it (the platform-role trigger).
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { testContext } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations, dropDatabase, withDatabaseUrl } from '../../tools/db/index.mjs';
import { freePort, repoRoot, startBuiltApp, startProcess, waitForExit, waitForReady, type AppProcess } from '../support/app-process';

const ctx = testContext();
const JWT_SECRET = randomBytes(32).toString('base64url');
// Named like the run's test databases, so a killed run's copy is dropped with theirs.
const database = `portcullis_test_${Date.now()}_boot${randomBytes(3).toString('hex')}`;
let adminUrl: string;
let admin: pg.Client;
const running: AppProcess[] = [];

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly output: string;
}

/** One bootstrap process (as the system role unless told otherwise), to its exit. */
async function bootstrap(args: string[], role: 'portcullis_system' | 'portcullis_app' = 'portcullis_system'): Promise<Run> {
  const app = startProcess(process.execPath, [path.join(repoRoot, 'dist/apps/control-plane/bootstrap.js'), ...args], {
    DATABASE_SYSTEM_URL: withDatabaseUrl(adminUrl, { user: role, password: null }),
    CONTROL_PLANE_JWT_SECRET: JWT_SECRET,
  });
  let stdout = '';
  app.child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  const code = await waitForExit(app, 30_000);
  return { code, stdout, output: app.output() };
}

async function counts() {
  const { rows } = await admin.query<{ admins: string; tenants: string; owners: string }>(
    `SELECT (SELECT count(*) FROM users WHERE platform_role = 'platform_admin') AS admins,
            (SELECT count(*) FROM tenants) AS tenants,
            (SELECT count(*) FROM memberships WHERE role = 'owner') AS owners`,
  );
  const row = rows[0];
  return { admins: Number(row?.admins), tenants: Number(row?.tenants), owners: Number(row?.owners) };
}

const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

beforeAll(async () => {
  adminUrl = withDatabaseUrl(ctx.adminDatabaseUrl, { database });
  await applyMigrations({ adminUrl });
  admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
}, 120_000);

afterAll(async () => {
  await Promise.all(running.map((app) => app.stop(2_000)));
  await admin?.end();
  await dropDatabase(adminUrl).catch(() => undefined);
});

describe('npm run bootstrap (built), on a database of its own', () => {
  it('refuses bad arguments (exit 2, usage) and the application role (the trigger), changing nothing', async () => {
    const bad = await bootstrap(['--email', 'not-an-email', '--tenant', 'Bad Slug!']);
    expect(bad.code).toBe(2);
    expect(bad.output).toContain('usage: npm run bootstrap');
    const unknownOption = await bootstrap(['--emial', 'a@example.com']);
    expect(unknownOption.code).not.toBe(0);

    const asApp = await bootstrap(['--email', 'owner@example.com', '--tenant', 'acme'], 'portcullis_app');
    expect(asApp.code).toBe(1);
    expect(asApp.output).toContain('bootstrap failed');
    expect(asApp.output).toContain('the application role may not change platform roles');
    // Prisma's reason only: not its invocation (the bundle's path, the model and its arguments).
    expect(asApp.output).not.toMatch(/invocation|bootstrap\.js:\d+|platformRole: "platform_admin"/);
    expect(asApp.stdout).toBe('');
    // The transaction rolled back whole: no tenant without its admin.
    expect(await counts()).toEqual({ admins: 0, tenants: 0, owners: 0 });
  });

  it('stops with one line naming the cause when the database is out of reach (exit 1, no URL, no password)', async () => {
    const app = startProcess(process.execPath, [path.join(repoRoot, 'dist/apps/control-plane/bootstrap.js'), '--email', 'owner@example.com', '--tenant', 'acme'], {
      DATABASE_SYSTEM_URL: 'postgresql://portcullis_system:BootSecretPW-9@127.0.0.1:1/portcullis',
      CONTROL_PLANE_JWT_SECRET: JWT_SECRET,
    });
    expect(await waitForExit(app, 30_000)).toBe(1);
    expect(app.output().trim()).toBe("bootstrap failed: database error: Can't reach database server at 127.0.0.1:1");
  });

  it('creates one admin, tenant and owner membership when two runs race; the token works on the control plane', async () => {
    const [first, second] = await Promise.all([
      bootstrap(['--email', 'Owner@Example.com', '--tenant', 'acme', '--name', 'Acme Corp']),
      bootstrap(['--email', 'rival@example.com', '--tenant', 'rival']),
    ]);
    const runs = [first, second].sort((a, b) => (a.code ?? 9) - (b.code ?? 9));
    expect(runs.map((run) => run.code)).toEqual([0, 1]);
    const [won, lost] = runs as [Run, Run];
    expect(lost.output).toMatch(/already bootstrapped: platform admin \S+ exists\. Nothing changed/);
    expect(await counts()).toEqual({ admins: 1, tenants: 1, owners: 1 });
    const token = won.stdout.trim();
    expect(token).toMatch(JWT);

    const port = await freePort();
    const controlPlane = startBuiltApp('control-plane', {
      DATABASE_URL: withDatabaseUrl(adminUrl, { user: 'portcullis_app', password: null }),
      REDIS_URL: ctx.redisUrl,
      CONTROL_PLANE_PORT: String(port),
      CONTROL_PLANE_JWT_SECRET: JWT_SECRET,
      LOG_LEVEL: 'warn',
    });
    running.push(controlPlane);
    await waitForReady(`http://127.0.0.1:${port}/readyz`, controlPlane);
    const listed = await fetch(`http://127.0.0.1:${port}/api/v1/tenants`, { headers: { authorization: `Bearer ${token}` } });
    expect(listed.status).toBe(200);
    const body = (await listed.json()) as { items: { slug: string }[] };
    expect(body.items.map((tenant) => tenant.slug)).toEqual([won === first ? 'acme' : 'rival']);
    const anonymous = await fetch(`http://127.0.0.1:${port}/api/v1/tenants`);
    expect(anonymous.status).toBe(401);
    await controlPlane.stop(5_000);
  }, 120_000);

  it('refuses every later run, and mints tokens only for an existing platform admin', async () => {
    const before = await counts();
    const again = await bootstrap(['--email', 'late@example.com', '--tenant', 'late']);
    expect(again.code).toBe(1);
    expect(again.output).toContain('Nothing changed');
    expect(await counts()).toEqual(before);

    const { rows } = await admin.query<{ email: string }>(`SELECT email FROM users WHERE platform_role = 'platform_admin'`);
    const email = rows[0]?.email as string;
    const minted = await bootstrap(['--token-for', email.toUpperCase()]);
    expect(minted.code).toBe(0);
    expect(minted.stdout.trim()).toMatch(JWT);
    const stranger = await bootstrap(['--token-for', 'nobody@example.com']);
    expect(stranger.code).toBe(1);
    expect(stranger.stdout).toBe('');
    expect(stranger.output).toContain('no platform admin with that email');
  }, 60_000);
});
