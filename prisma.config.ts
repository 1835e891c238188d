// Prisma CLI configuration. Only `prisma generate` is used here (migrations run through tools/db, see
// docs/adr/0002-offline-migrations.md), but the file stays valid for the real CLI where its native engine exists.

// Every Prisma CLI command first looks for the native schema engine and tries to download it (impossible offline).
// `generate` never runs it, so point it at a harmless binary unless the caller provides a real one.
process.env.PRISMA_SCHEMA_ENGINE_BINARY ??= '/bin/true';
process.env.CHECKPOINT_DISABLE ??= '1';

import { defineConfig } from 'prisma/config';

// The CLI's migrate/introspect commands need the owner role, not the application role. Read the variables directly:
// `env()` throws when a variable is unset, even for `generate`. Prisma 7 does not load .env files.
const url =
  process.env.DATABASE_ADMIN_URL ??
  process.env.DATABASE_URL ??
  'postgresql://postgres@127.0.0.1:5432/portcullis';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: {
    path: 'prisma/migrations',
    seed: 'node tools/scripts/db.mjs seed',
  },
  datasource: { url },
});
