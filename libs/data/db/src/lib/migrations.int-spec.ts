/**
 * Data migrations as a managed Postgres runs them: the migration role owns the tables but is neither superuser nor
 * BYPASSRLS, so the row-level security the tables force binds it too. A backfill written without that in mind sees no
 * row (no tenant is set during a migration) and changes nothing, without an error. Each case applies the migrations
 * before its own to a scratch database, hands the tables to such an owner, and runs its migration as that owner.
 */
import { testContext } from '@portcullis/shared/util-testing';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const MIGRATIONS = path.join(__dirname, '../../../../../prisma/migrations');
const suffix = randomBytes(4).toString('hex');
const database = `portcullis_migration_spec_${suffix}`;
const owner = `portcullis_migration_owner_${suffix}`;
const adminUrl = testContext().adminDatabaseUrl;

const urlOf = (name: string): string => {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
};

async function asAdmin<T>(run: (client: pg.Client) => Promise<T>, name = new URL(adminUrl).pathname.slice(1) || 'postgres'): Promise<T> {
  const client = new pg.Client({ connectionString: urlOf(name) });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

const migrationSql = (dir: string): string => readFileSync(path.join(MIGRATIONS, dir, 'migration.sql'), 'utf8');
const migrationDirs = (): string[] => readdirSync(MIGRATIONS).filter((name) => /^\d{14}_/.test(name)).sort();

beforeAll(async () => {
  await asAdmin(async (client) => {
    await client.query(`CREATE DATABASE ${database}`);
    await client.query(`CREATE ROLE ${owner} NOSUPERUSER NOBYPASSRLS`);
  });
});

afterAll(async () => {
  await asAdmin(async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await client.query(`DROP ROLE IF EXISTS ${owner}`);
  });
});

describe('data migrations run by a table owner that row-level security binds', () => {
  it('approval_target_kind labels an older prompt approval a prompt, and leaves row-level security forced', async () => {
    const target = '20261205064647_approval_target_kind';
    await asAdmin(async (db) => {
      for (const dir of migrationDirs()) {
        if (dir >= target) break;
        await db.query(migrationSql(dir));
      }
      await db.query(`GRANT CREATE, USAGE ON SCHEMA public TO ${owner}`);
      await db.query(`ALTER TABLE "approvals" OWNER TO ${owner}`);
      await db.query(`ALTER TABLE "upstream_tools" OWNER TO ${owner}`);
      // A prompt held before the kind was recorded, and the upstream's listing saying `summarize` is a prompt (written
      // past the tables' triggers and foreign keys: only these rows matter here).
      const tenant = randomUUID();
      const upstream = randomUUID();
      await db.query('SET session_replication_role = replica');
      await db.query(
        `INSERT INTO "upstream_tools" (tenant_id, upstream_id, kind, name, definition, content_hash, updated_at) VALUES ($1, $2, 'prompt', 'summarize', '{}', 'h', now())`,
        [tenant, upstream],
      );
      const held = await db.query<{ id: string }>(
        `INSERT INTO "approvals" (tenant_id, upstream_id, tool, arguments_hash, arguments, expires_at, updated_at) VALUES ($1, $2, 'summarize', 'x', '{}', now(), now()) RETURNING id`,
        [tenant, upstream],
      );
      await db.query('SET session_replication_role = DEFAULT');

      await db.query(`SET ROLE ${owner}`);
      await db.query(migrationSql(target));
      await db.query('RESET ROLE');

      const after = await db.query<{ kind: string }>('SELECT kind FROM "approvals" WHERE id = $1', [held.rows[0]?.id]);
      expect(after.rows[0]?.kind).toBe('prompt');
      const forced = await db.query<{ relname: string; relforcerowsecurity: boolean }>(
        `SELECT relname, relforcerowsecurity FROM pg_class WHERE relname IN ('approvals', 'upstream_tools') ORDER BY relname`,
      );
      expect(forced.rows).toEqual([
        { relname: 'approvals', relforcerowsecurity: true },
        { relname: 'upstream_tools', relforcerowsecurity: true },
      ]);
    }, database);
  });
});
