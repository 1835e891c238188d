#!/usr/bin/env node
// @ts-check
// Database commands (package.json db:* scripts). Migrations run through Prisma's WebAssembly schema engine, so
// they work offline (docs/adr/0002-offline-migrations.md).
//
//   node tools/scripts/db.mjs migrate        apply pending migrations (creates the database if missing)
//   node tools/scripts/db.mjs status         applied / pending / edited / failed migrations
//   node tools/scripts/db.mjs drift          exit 1 if prisma/schema.prisma and prisma/migrations disagree
//   node tools/scripts/db.mjs new <name>     write prisma/migrations/<timestamp>_<name>/migration.sql from the diff
//   node tools/scripts/db.mjs seed           idempotent demo data (tenants, users, upstreams, policies, API keys)
//
// Environment: DATABASE_ADMIN_URL (owner/superuser; migrations and seed), default
// postgresql://postgres@127.0.0.1:5432/portcullis. DATABASE_URL (application role) is not used here.
import {
  DEFAULT_ADMIN_URL,
  DbToolError,
  applyMigrations,
  checkDrift,
  createMigration,
  ensureDatabase,
  migrationStatus,
  parseDatabaseUrl,
} from '../db/index.mjs';
import { importSource } from './lib/harness.mjs';

process.env.CHECKPOINT_DISABLE ??= '1';
const adminUrl = process.env.DATABASE_ADMIN_URL ?? DEFAULT_ADMIN_URL;

function where() {
  const { host, port, database } = parseDatabaseUrl(adminUrl);
  return `${database} on ${host}:${port}`;
}

const commands = {
  async migrate() {
    const { applied, createdDatabase } = await applyMigrations({ adminUrl });
    if (createdDatabase) console.log(`Created database ${where()}.`);
    if (applied.length === 0) console.log(`${where()}: no pending migrations.`);
    else
      console.log(
        `${where()}: applied ${applied.length} migration(s):\n${applied.map((n) => `  ${n}`).join('\n')}`,
      );
    return 0;
  },

  async status() {
    const status = await migrationStatus({ adminUrl });
    const section = (/** @type {string} */ title, /** @type {string[]} */ names) =>
      names.length ? `${title}:\n${names.map((n) => `  ${n}`).join('\n')}` : '';
    console.log(
      [
        `Migrations for ${where()}`,
        section('applied', status.applied),
        section('pending', status.pending),
        section('EDITED after being applied', status.edited),
        section('FAILED', status.failed),
        section('in the database but not in prisma/migrations', status.missingLocally),
        status.upToDate ? 'Up to date.' : 'Not up to date: run `npm run db:migrate` (or see above).',
      ]
        .filter(Boolean)
        .join('\n'),
    );
    return status.upToDate ? 0 : 1;
  },

  async drift() {
    const result = await checkDrift({ adminUrl });
    if (result.inSync) {
      console.log('prisma/schema.prisma and prisma/migrations agree.');
      return 0;
    }
    console.error(
      'Drift: prisma/schema.prisma differs from what prisma/migrations produce.\n\n' +
        `${result.summary}\n\nSQL that would reconcile them:\n\n${result.script}\n\n` +
        'Create a migration for it with: npm run db:new-migration -- <name>',
    );
    return 1;
  },

  async new() {
    const name = process.argv[3];
    if (!name) {
      console.error('Usage: npm run db:new-migration -- <name>   (letters, digits, underscores)');
      return 2;
    }
    const { created } = await createMigration({ adminUrl, name });
    if (!created) {
      console.log('No schema changes: nothing to migrate.');
      return 0;
    }
    console.log(`Created ${created}/migration.sql. Review it, then run npm run db:migrate.`);
    return 0;
  },

  async seed() {
    await ensureDatabase(adminUrl);
    const status = await migrationStatus({ adminUrl });
    if (!status.upToDate)
      throw new DbToolError(`${where()} is not fully migrated: run npm run db:migrate first.`);
    // prisma/seed.ts is TypeScript and uses the workspace's libraries: load it with jiti (a devDependency), giving
    // it the tsconfig path aliases.
    /** @type {{ seed: (options: { adminUrl: string, log: (line: string) => void }) => Promise<void> }} */
    const mod = await importSource('prisma/seed.ts');
    await mod.seed({ adminUrl, log: (line) => console.log(line) });
    return 0;
  },
};

const command = /** @type {keyof typeof commands | undefined} */ (process.argv[2]);
if (!command || !(command in commands)) {
  console.error(`Usage: node tools/scripts/db.mjs <${Object.keys(commands).join('|')}>`);
  process.exit(2);
}

try {
  process.exitCode = await commands[command]();
} catch (error) {
  if (error instanceof DbToolError) {
    console.error(`db ${command}: ${error.message}`);
    process.exitCode = 1;
  } else {
    throw error;
  }
}
