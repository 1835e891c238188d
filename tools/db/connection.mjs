// @ts-check
/**
 * Connection helpers for the database tooling: URL parsing, reachability with a useful message, and creating the
 * target database when it does not exist yet.
 */
import pg from 'pg';
import { START_HINTS } from '../scripts/lib/services.mjs';

export const DEFAULT_ADMIN_URL = 'postgresql://postgres@127.0.0.1:5432/portcullis';
export const DEFAULT_APP_URL = 'postgresql://portcullis_app@127.0.0.1:5432/portcullis';

export const DEFAULT_SYSTEM_URL = 'postgresql://portcullis_system@127.0.0.1:5432/portcullis';

export const POSTGRES_START_HINT = [
  'Start it with:',
  ...START_HINTS.postgres.map((line) => `  ${line}`),
].join('\n');

/** A failure the CLI reports as a message (no stack trace). */
export class DbToolError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'DbToolError';
  }
}

/**
 * Splits a postgres URL into pg client fields. Separate fields matter: `pg` lets `connectionString` override a
 * `database` given next to it, which breaks connecting to another database (maintenance, shadow) on the same server.
 * @param {string} url
 * @returns {{ host: string, port: number, user: string, password: string | undefined, database: string }}
 */
export function parseDatabaseUrl(url) {
  /** @type {URL} */
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    throw new DbToolError(`Not a valid database URL: ${redactUrl(url)}`);
  }
  if (parsed.protocol !== 'postgresql:' && parsed.protocol !== 'postgres:') {
    throw new DbToolError(`Expected a postgresql:// URL, got ${parsed.protocol}//...`);
  }
  /** A part of the URL with its percent-escapes decoded; a malformed one (a literal `%`) is the caller's to fix. */
  const decoded = (/** @type {string} */ part, /** @type {string} */ what) => {
    try {
      return decodeURIComponent(part);
    } catch {
      throw new DbToolError(`The database URL's ${what} has a malformed percent-escape (write a literal % as %25)`);
    }
  };
  const database = decoded(parsed.pathname.replace(/^\//, ''), 'database name');
  if (!database) throw new DbToolError(`The database URL names no database: ${redactUrl(url)}`);
  return {
    host: decoded(parsed.hostname, 'host') || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 5432,
    user: decoded(parsed.username, 'user') || 'postgres',
    password: parsed.password ? decoded(parsed.password, 'password') : undefined,
    database,
  };
}

/**
 * The same URL pointing at another database (or with another user).
 * @param {string} url
 * @param {{ database?: string, user?: string, password?: string | null }} change
 */
export function withDatabaseUrl(url, change) {
  const parsed = new URL(url);
  if (change.database !== undefined) parsed.pathname = `/${encodeURIComponent(change.database)}`;
  if (change.user !== undefined) parsed.username = encodeURIComponent(change.user);
  if (change.password !== undefined)
    parsed.password = change.password === null ? '' : encodeURIComponent(change.password);
  return parsed.toString();
}

/** @param {string} url */
export function redactUrl(url) {
  // The query goes whole: libpq takes credentials there too (`?password=`, `?sslpassword=`), and nothing in it helps
  // an operator read the message.
  const query = url.indexOf('?');
  const bare = query === -1 ? url : `${url.slice(0, query)}?***`;
  // Everything between the user name and the host's `@` (the last one: a password typed raw may hold `@` too), also
  // with an empty user name.
  const start = bare.indexOf('://');
  const at = bare.lastIndexOf('@');
  if (start === -1 || at < start) return bare;
  const userinfo = bare.slice(start + 3, at);
  const colon = userinfo.indexOf(':');
  return colon === -1 ? bare : `${bare.slice(0, start + 3)}${userinfo.slice(0, colon)}:***${bare.slice(at)}`;
}

/** @param {unknown} error */
function isConnectionRefused(error) {
  const code = /** @type {{ code?: string }} */ (error)?.code;
  return (
    code === 'ECONNREFUSED' ||
    code === 'ENOTFOUND' ||
    code === 'EHOSTUNREACH' ||
    code === 'ETIMEDOUT' ||
    code === '57P03'
  );
}

/**
 * Runs `fn` with a client connected to the server's maintenance database (`postgres`).
 * @template T
 * @param {string} url any database URL on the server (its credentials are used)
 * @param {(client: pg.Client) => Promise<T>} fn
 * @returns {Promise<T>}
 */
export async function withMaintenanceClient(url, fn) {
  const client = new pg.Client({
    ...parseDatabaseUrl(url),
    database: 'postgres',
    connectionTimeoutMillis: 5000,
  });
  try {
    await client.connect();
  } catch (error) {
    throw unreachable(url, error);
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * @param {string} url
 * @param {unknown} error
 */
export function unreachable(url, error) {
  const { host, port } = parseDatabaseUrl(url);
  const reason = error instanceof Error ? error.message : String(error);
  if (isConnectionRefused(error)) {
    return new DbToolError(
      `PostgreSQL is not reachable at ${host}:${port} (${reason}).\n${POSTGRES_START_HINT}`,
    );
  }
  return new DbToolError(
    `Could not connect to PostgreSQL at ${host}:${port} as ${redactUrl(url)}: ${reason}`,
  );
}

/** @param {string} name */
export function quoteIdent(name) {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Creates the URL's database if it does not exist. Returns true when it was created.
 * @param {string} url
 */
export async function ensureDatabase(url) {
  const { database } = parseDatabaseUrl(url);
  return withMaintenanceClient(url, async (client) => {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (found.rowCount) return false;
    try {
      await client.query(`CREATE DATABASE ${quoteIdent(database)}`);
    } catch (error) {
      // Another process may have created it in the meantime.
      if (/** @type {{ code?: string }} */ (error).code === '42P04') return false;
      throw error;
    }
    return true;
  });
}

/**
 * Drops the URL's database (terminating its sessions first).
 * @param {string} url
 */
export async function dropDatabase(url) {
  const { database } = parseDatabaseUrl(url);
  await withMaintenanceClient(url, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
  });
}
