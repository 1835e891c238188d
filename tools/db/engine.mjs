// @ts-check
/**
 * Loads Prisma's WebAssembly schema engine and connects it to Postgres through the `pg` driver adapter.
 *
 * The package's own entry (`schema_engine.js`) imports the .wasm file as an ES module, which Node 20 cannot do
 * without a flag, so we instantiate the module ourselves against its JS glue (`schema_engine_bg.js`): the same
 * thing the entry does, minus the wasm-module import. This is an internal Prisma API: the package is pinned in
 * package.json and docs/adr/0002-offline-migrations.md lists what to re-check on upgrade.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils';
import * as glue from '@prisma/schema-engine-wasm/schema_engine_bg';
import { parseDatabaseUrl, quoteIdent, withMaintenanceClient } from './connection.mjs';

/** @typedef {import('@prisma/schema-engine-wasm').SchemaEngine} SchemaEngine */

const require = createRequire(import.meta.url);

/** @type {Promise<void> | undefined} */
let loading;

function loadWasm() {
  loading ??= (async () => {
    const entry = require.resolve('@prisma/schema-engine-wasm');
    const bytes = await readFile(path.join(path.dirname(entry), 'schema_engine_bg.wasm'));
    const { instance } = await WebAssembly.instantiate(bytes, {
      './schema_engine_bg.js': /** @type {WebAssembly.ModuleImports} */ (/** @type {unknown} */ (glue)),
    });
    glue.__wbg_set_wasm(instance.exports);
    /** @type {{ __wbindgen_start: () => void }} */ (/** @type {unknown} */ (instance.exports)).__wbindgen_start();
  })();
  return loading;
}

/** The version string of the loaded engine (for diagnostics). */
export async function engineVersion() {
  await loadWasm();
  return glue.version();
}

const PG_CHAR_OID = 18; // the one-byte internal `"char"` type of pg_catalog (relkind, contype, ...)
const PG_TEXT_OID = 25;

/** @param {unknown} result */
function charColumnsAsText(result) {
  for (const one of Array.isArray(result) ? result : [result]) {
    for (const field of /** @type {{ fields?: { dataTypeID: number }[] }} */ (one)?.fields ?? []) {
      if (field.dataTypeID === PG_CHAR_OID) field.dataTypeID = PG_TEXT_OID;
    }
  }
  return result;
}

/**
 * A pg client that reports pg_catalog's `"char"` columns as text. The schema engine's introspection queries select
 * such columns, and the pg driver adapter has no mapping for that type ("Column type 'char' could not be
 * deserialized"). The values already arrive as one-character strings, so relabelling the column is enough.
 */
class CatalogFriendlyClient extends pg.Client {
  /** @param {...any} args */
  // @ts-expect-error -- pg's overloads cannot be re-declared one by one in JSDoc; this forwards all of them.
  query(...args) {
    // @ts-expect-error -- see above.
    const result = super.query(...args);
    return result && typeof result.then === 'function' ? result.then(charColumnsAsText) : result;
  }
}

/**
 * The pg adapter factory, with a shadow database that is actually dropped: PrismaPg's own `connectToShadowDb` drops
 * the database while its pool still holds a connection ("is being accessed by other users"). Ours closes the pool
 * first and drops WITH (FORCE).
 */
class PgWithShadowDatabase extends PrismaPg {
  /** @param {ReturnType<typeof parseDatabaseUrl>} fields */
  constructor(fields) {
    super({ ...fields, max: 2, Client: CatalogFriendlyClient });
    this.fields = fields;
  }

  /** @override */
  async connectToShadowDb() {
    const { fields } = this;
    const database = `prisma_migrate_shadow_db_${randomUUID()}`;
    const url = `postgresql://${encodeURIComponent(fields.user)}${fields.password ? `:${encodeURIComponent(fields.password)}` : ''}@${fields.host}:${fields.port}/${database}`;
    await withMaintenanceClient(url, (client) => client.query(`CREATE DATABASE ${quoteIdent(database)}`));
    const adapter = await new PrismaPg({ ...fields, database, max: 2, Client: CatalogFriendlyClient }).connect();
    const dispose = adapter.dispose.bind(adapter);
    adapter.dispose = async () => {
      try {
        await dispose();
      } finally {
        await withMaintenanceClient(url, (client) => client.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`));
      }
    };
    return adapter;
  }
}

/**
 * Opens a schema engine against `url`. Shadow databases (used to replay the migrations directory) are created next
 * to it on the same server as `prisma_migrate_shadow_db_<uuid>` and dropped afterwards, so the role needs CREATEDB.
 * @param {{ url: string, schema?: { path: string, content: string }, onLog?: (line: string) => void }} options
 * @returns {Promise<{ engine: SchemaEngine, close: () => void }>}
 */
export async function openSchemaEngine({ url, schema, onLog }) {
  await loadWasm();
  const adapter = bindMigrationAwareSqlAdapterFactory(new PgWithShadowDatabase(parseDatabaseUrl(url)));
  const log = (/** @type {string} */ line) => onLog?.(line);
  const engine = await glue.SchemaEngine.new(
    { datamodels: schema ? [[schema.path, schema.content]] : undefined },
    log,
    adapter,
  );
  return {
    engine,
    close: () => engine.free(),
  };
}
