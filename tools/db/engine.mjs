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
import { bindMigrationAwareSqlAdapterFactory, ColumnTypeEnum } from '@prisma/driver-adapter-utils';
import * as glue from '@prisma/schema-engine-wasm/schema_engine_bg';
import { parseDatabaseUrl, quoteIdent, withMaintenanceClient } from './connection.mjs';

/** @typedef {import('@prisma/schema-engine-wasm').SchemaEngine} SchemaEngine */

const require = createRequire(import.meta.url);

/** @type {Promise<void> | undefined} */
let loading;

/** The message of the last Rust panic inside the engine (the glue reports it through this global). */
let lastPanic = '';
/** @type {{ PRISMA_WASM_PANIC_REGISTRY?: { set_message: (message: string) => void } }} */ (
  /** @type {unknown} */ (globalThis)
).PRISMA_WASM_PANIC_REGISTRY ??= {
  set_message: (message) => {
    lastPanic = message;
  },
};

/** Returns and clears the last engine panic message. */
export function takeEnginePanic() {
  const message = lastPanic;
  lastPanic = '';
  return message;
}

function loadWasm() {
  loading ??= (async () => {
    const entry = require.resolve('@prisma/schema-engine-wasm');
    const bytes = await readFile(path.join(path.dirname(entry), 'schema_engine_bg.wasm'));
    const { instance } = await WebAssembly.instantiate(bytes, {
      './schema_engine_bg.js': /** @type {WebAssembly.ModuleImports} */ (/** @type {unknown} */ (glue)),
    });
    glue.__wbg_set_wasm(instance.exports);
    /** @type {{ __wbindgen_start: () => void }} */ (
      /** @type {unknown} */ (instance.exports)
    ).__wbindgen_start();
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

/**
 * @typedef {import('@prisma/driver-adapter-utils').SqlQueryable} SqlQueryable
 * @typedef {SqlQueryable & {
 *   client: import('pg').Pool | import('pg').PoolClient,
 *   onError: (error: unknown) => never,
 *   performIO: (query: import('@prisma/driver-adapter-utils').SqlQuery) => Promise<import('pg').QueryArrayResult>,
 * }} PgQueryableInternals
 */

/**
 * Makes pg_catalog's `"char"` columns readable. The schema engine's introspection selects them (constraint types,
 * relkind...) and reads them as Rust `char`s, but the pg adapter has no mapping for the type ("Column type 'char'
 * could not be deserialized"). We relabel such columns as text before the adapter maps types, then report them to
 * the engine as `Character`. The values are already one-character strings.
 * @param {SqlQueryable} queryable
 */
function readCatalogChars(queryable) {
  const internals = /** @type {PgQueryableInternals} */ (queryable);
  /** @type {WeakMap<unknown[], number[]>} */
  const charColumnsByRows = new WeakMap();
  const performIO = internals.performIO.bind(internals);
  internals.performIO = async (query) => {
    const result = await performIO(query);
    /** @type {number[]} */
    const charColumns = [];
    result.fields.forEach((field, index) => {
      if (field.dataTypeID === PG_CHAR_OID) {
        field.dataTypeID = PG_TEXT_OID;
        charColumns.push(index);
      }
    });
    if (charColumns.length) charColumnsByRows.set(result.rows, charColumns);
    return result;
  };
  const queryRaw = internals.queryRaw.bind(internals);
  internals.queryRaw = async (query) => {
    const resultSet = await queryRaw(query);
    for (const index of charColumnsByRows.get(resultSet.rows) ?? []) {
      resultSet.columnTypes[index] = ColumnTypeEnum.Character;
    }
    return resultSet;
  };
  return queryable;
}

/**
 * Prepares a pg driver adapter for the schema engine:
 * - `"char"` columns readable (see `readCatalogChars`), also inside transactions;
 * - migration scripts run the way Prisma's native engine runs them: as one simple-protocol query, so Postgres
 *   executes all statements in one implicit transaction. The adapter's own `executeScript` splits the text on every
 *   `;`, which breaks `DO $$ ... $$` blocks and function bodies.
 * @template {import('@prisma/driver-adapter-utils').SqlDriverAdapter} A
 * @param {A} adapter
 * @returns {A}
 */
function forSchemaEngine(adapter) {
  const internals = /** @type {PgQueryableInternals} */ (/** @type {unknown} */ (readCatalogChars(adapter)));
  adapter.executeScript = async (script) => {
    try {
      await internals.client.query(script);
    } catch (error) {
      internals.onError(error);
    }
  };
  const startTransaction = adapter.startTransaction.bind(adapter);
  adapter.startTransaction = async (isolationLevel) => {
    const transaction = await startTransaction(isolationLevel);
    readCatalogChars(transaction);
    return transaction;
  };
  return adapter;
}

/**
 * The pg adapter factory with connections prepared by `forSchemaEngine`, and a shadow database that is actually dropped: PrismaPg's own `connectToShadowDb` drops it while its pool still
 *   holds a connection ("is being accessed by other users"). Ours closes the pool first and drops WITH (FORCE).
 */
class PgWithShadowDatabase extends PrismaPg {
  /** @param {ReturnType<typeof parseDatabaseUrl>} fields */
  constructor(fields) {
    super({ ...fields, max: 2 });
    this.fields = fields;
  }

  /** @type {import('@prisma/driver-adapter-utils').SqlDriverAdapter[]} */
  opened = [];

  /** @override */
  async connect() {
    const adapter = forSchemaEngine(await super.connect());
    this.opened.push(adapter);
    return adapter;
  }

  /** Closes the pools of every connection handed to the engine (freeing the engine does not). */
  async disposeAll() {
    await Promise.allSettled(this.opened.splice(0).map((adapter) => adapter.dispose()));
  }

  /** @override */
  async connectToShadowDb() {
    const { fields } = this;
    const database = `prisma_migrate_shadow_db_${randomUUID()}`;
    const url = `postgresql://${encodeURIComponent(fields.user)}${fields.password ? `:${encodeURIComponent(fields.password)}` : ''}@${fields.host}:${fields.port}/${database}`;
    await withMaintenanceClient(url, (client) => client.query(`CREATE DATABASE ${quoteIdent(database)}`));
    const adapter = forSchemaEngine(await new PrismaPg({ ...fields, database, max: 2 }).connect());
    const dispose = adapter.dispose.bind(adapter);
    adapter.dispose = async () => {
      try {
        await dispose();
      } finally {
        await withMaintenanceClient(url, (client) =>
          client.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`),
        );
      }
    };
    return adapter;
  }
}

/**
 * Opens a schema engine against `url`. Shadow databases (used to replay the migrations directory) are created next
 * to it on the same server as `prisma_migrate_shadow_db_<uuid>` and dropped afterwards, so the role needs CREATEDB.
 * @param {{ url: string, schema?: { path: string, content: string }, onLog?: (line: string) => void }} options
 * @returns {Promise<{ engine: SchemaEngine, close: () => Promise<void> }>}
 */
export async function openSchemaEngine({ url, schema, onLog }) {
  await loadWasm();
  const factory = new PgWithShadowDatabase(parseDatabaseUrl(url));
  const adapter = bindMigrationAwareSqlAdapterFactory(factory);
  const log = (/** @type {string} */ line) => onLog?.(line);
  const engine = await glue.SchemaEngine.new(
    { datamodels: schema ? [[schema.path, schema.content]] : undefined },
    log,
    adapter,
  );
  return {
    engine,
    close: async () => {
      engine.free();
      await factory.disposeAll();
    },
  };
}
