/**
 * Vitest global setup for the `int` and `e2e` projects: one fresh database per run.
 *
 * Creates `portcullis_test_<time>_<random>` on the server of DATABASE_ADMIN_URL, applies prisma/migrations with the
 * same tooling as `npm run db:migrate`, provides the URLs to tests (`inject('databaseUrl')`, or `testContext()` from
 * @portcullis/shared/util-testing) and drops the database afterwards. Tests isolate themselves with a fresh tenant
 * each (`createTestTenant`), never by truncating.
 */
import { randomBytes } from 'node:crypto';
import type { TestProject } from 'vitest/node';
import {
  DEFAULT_ADMIN_URL,
  DbToolError,
  START_HINTS,
  applyMigrations,
  canConnect,
  dropDatabase,
  hostPort,
  parseDatabaseUrl,
  withDatabaseUrl,
} from '../db/index.mjs';

const STALE_AFTER_MS = 6 * 60 * 60 * 1000;

function fail(message: string): never {
  throw new Error(`\n${message}\n`);
}

async function requireService(name: 'postgres' | 'redis', url: string, defaultPort: number): Promise<void> {
  const { host, port } = hostPort(url, defaultPort);
  if (await canConnect(host, port)) return;
  const label = name === 'postgres' ? 'PostgreSQL' : 'Redis';
  fail(
    `${label} is not reachable at ${host}:${port}. Start it with:\n${START_HINTS[name].map((l) => `  ${l}`).join('\n')}`,
  );
}

/** Drops test databases left behind by runs that were killed (older than a few hours). */
async function dropStaleTestDatabases(adminUrl: string): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ ...parseDatabaseUrl(adminUrl), database: 'postgres' });
  await client.connect();
  try {
    const { rows } = await client.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datname LIKE 'portcullis\\_test\\_%'",
    );
    for (const { datname } of rows) {
      const started = Number(datname.split('_')[2]);
      if (Number.isFinite(started) && Date.now() - started > STALE_AFTER_MS) {
        await dropDatabase(withDatabaseUrl(adminUrl, { database: datname })).catch(() => undefined);
      }
    }
  } finally {
    await client.end();
  }
}

interface PreparedDatabase {
  readonly database: string;
  readonly adminDatabaseUrl: string;
  readonly databaseUrl: string;
  readonly systemDatabaseUrl: string;
  readonly redisUrl: string;
}

// Vitest runs this setup once per project (int, e2e) in the same process. They share one database,
// prepared once: the schema engine must not apply migrations twice concurrently in one process.
const shared = globalThis as typeof globalThis & {
  __portcullisTestDatabase?: Promise<PreparedDatabase>;
  __portcullisTestDatabaseUsers?: number;
};

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  shared.__portcullisTestDatabase ??= prepareDatabase();
  shared.__portcullisTestDatabaseUsers = (shared.__portcullisTestDatabaseUsers ?? 0) + 1;
  const prepared = await shared.__portcullisTestDatabase;

  project.provide('adminDatabaseUrl', prepared.adminDatabaseUrl);
  project.provide('databaseUrl', prepared.databaseUrl);
  project.provide('systemDatabaseUrl', prepared.systemDatabaseUrl);
  project.provide('redisUrl', prepared.redisUrl);

  return async () => {
    shared.__portcullisTestDatabaseUsers = (shared.__portcullisTestDatabaseUsers ?? 1) - 1;
    if (shared.__portcullisTestDatabaseUsers > 0) return;
    if (process.env['KEEP_TEST_DATABASE']) {
      console.log(`Keeping test database ${prepared.database} (KEEP_TEST_DATABASE is set).`);
      return;
    }
    await dropDatabase(prepared.adminDatabaseUrl);
  };
}

async function prepareDatabase(): Promise<PreparedDatabase> {
  const baseAdminUrl = process.env['DATABASE_ADMIN_URL'] ?? DEFAULT_ADMIN_URL;
  const redisUrl = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
  await requireService('postgres', baseAdminUrl, 5432);
  await requireService('redis', redisUrl, 6379);

  const database = `portcullis_test_${Date.now()}_${randomBytes(4).toString('hex')}`;
  const adminDatabaseUrl = withDatabaseUrl(baseAdminUrl, { database });
  // The two runtime roles (created by the migrations; trust auth locally). DATABASE_URL / DATABASE_SYSTEM_URL may
  // supply other credentials; only their user and password are used.
  const roleUrl = (envName: string, role: string) => {
    const configured = process.env[envName];
    if (!configured) return withDatabaseUrl(adminDatabaseUrl, { user: role, password: null });
    const parts = parseDatabaseUrl(configured);
    return withDatabaseUrl(adminDatabaseUrl, { user: parts.user, password: parts.password ?? null });
  };

  await dropStaleTestDatabases(baseAdminUrl).catch(() => undefined);
  try {
    await applyMigrations({ adminUrl: adminDatabaseUrl });
  } catch (error) {
    await dropDatabase(adminDatabaseUrl).catch(() => undefined);
    if (error instanceof DbToolError) fail(`Could not prepare the test database: ${error.message}`);
    throw error;
  }

  return {
    database,
    adminDatabaseUrl,
    databaseUrl: roleUrl('DATABASE_URL', 'portcullis_app'),
    systemDatabaseUrl: roleUrl('DATABASE_SYSTEM_URL', 'portcullis_system'),
    redisUrl,
  };
}
