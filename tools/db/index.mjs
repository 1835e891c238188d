// @ts-check
// Database tooling (migrations through Prisma's WebAssembly schema engine). See docs/adr/0002-offline-migrations.md.
export {
  DEFAULT_ADMIN_URL,
  DEFAULT_APP_URL,
  DEFAULT_SYSTEM_URL,
  DbToolError,
  dropDatabase,
  ensureDatabase,
  parseDatabaseUrl,
  redactUrl,
  unreachable,
  withDatabaseUrl,
} from './connection.mjs';
export {
  applyMigrations,
  checkDrift,
  createMigration,
  migrationStatus,
  readMigrations,
} from './migrations.mjs';
// Service checks shared with npm start / npm test (re-exported here with types, see index.d.mts).
export { START_HINTS, canConnect, hostPort } from '../scripts/lib/services.mjs';
