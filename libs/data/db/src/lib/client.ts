import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client';
import { tenantScopeExtension } from './tenant-scope';

export interface PrismaClientOptions {
  /** postgresql:// URL. */
  readonly url: string;
  /** Pool size (pg default: 10). */
  readonly poolMax?: number;
  /** Shown in pg_stat_activity. */
  readonly applicationName?: string;
  /**
   * Bound on one statement, in ms: Postgres cancels it (`statement_timeout`), and the client gives up a little later
   * should the server not answer at all (`query_timeout`). Unset: no bound (pg's default).
   */
  readonly statementTimeoutMs?: number;
  /** Bound on opening a connection or waiting for a free one in the pool, in ms. Unset: wait forever (pg's default). */
  readonly connectTimeoutMs?: number;
  /**
   * Default bounds of an interactive transaction (`$transaction(fn)`, `withTenant`), in ms: how long it may run, and
   * wait to start. Unset: Prisma's, 5 s and 2 s. A call's own options still win.
   */
  readonly transaction?: { readonly timeoutMs: number; readonly maxWaitMs: number };
}

function baseClient({ url, poolMax, applicationName, statementTimeoutMs, connectTimeoutMs, transaction }: PrismaClientOptions) {
  const pool = new pg.Pool({
    connectionString: url,
    ...(poolMax === undefined ? {} : { max: poolMax }),
    ...(applicationName === undefined ? {} : { application_name: applicationName }),
    ...(statementTimeoutMs === undefined ? {} : { statement_timeout: statementTimeoutMs, query_timeout: statementTimeoutMs + 1_000 }),
    ...(connectTimeoutMs === undefined ? {} : { connectionTimeoutMillis: connectTimeoutMs }),
    // Every connection's first statement, awaited before the pool hands it out (a failure is the connect's error): the
    // adapter reads a timestamptz's text as UTC whatever offset it carries, so a session in another zone (the server's,
    // a role's or database's setting, the connection string's options) would put every time read off by it, and the
    // audit chain's hashes, taken over stored times, would not verify.
    onConnect: async (client: pg.ClientBase) => {
      await client.query("SET TIME ZONE 'UTC'");
    },
  });
  const adapter = new PrismaPg(pool, { disposeExternalPool: true });
  return new PrismaClient({
    adapter,
    ...(transaction === undefined ? {} : { transactionOptions: { timeout: transaction.timeoutMs, maxWait: transaction.maxWaitMs } }),
  });
}

/**
 * The application's client. Connect it as `portcullis_app` (NOBYPASSRLS): tenant-owned rows are visible only inside
 * `withTenant()`, and queries on tenant-owned models must filter by `tenantId`.
 */
export function createPrismaClient(options: PrismaClientOptions) {
  return baseClient(options).$extends(tenantScopeExtension({ requireTenantFilter: true }));
}

export type PortcullisPrismaClient = ReturnType<typeof createPrismaClient>;

declare const systemClient: unique symbol;

/** A client that bypasses row-level security. Only `createSystemPrismaClient` produces one. */
export type SystemPrismaClient = PortcullisPrismaClient & { readonly [systemClient]: true };

/**
 * The unscoped client, for migrations, seed, ops scripts and cross-tenant jobs only (e.g. loading every tenant's
 * API key hashes into the gateway's cache). Connect it as `portcullis_system` (BYPASSRLS). It still rejects
 * `undefined` in where clauses and creates without a tenant, but does not require a tenantId filter.
 */
export function createSystemPrismaClient(options: PrismaClientOptions): SystemPrismaClient {
  return baseClient(options).$extends(
    tenantScopeExtension({ requireTenantFilter: false }),
  ) as SystemPrismaClient;
}
