import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client';
import { tenantScopeExtension } from './tenant-scope';

export interface PrismaClientOptions {
  /** postgresql:// URL. */
  readonly url: string;
  /** Pool size (pg default: 10). */
  readonly poolMax?: number;
  /** Shown in pg_stat_activity. */
  readonly applicationName?: string;
}

function baseClient({ url, poolMax, applicationName }: PrismaClientOptions) {
  const adapter = new PrismaPg({
    connectionString: url,
    ...(poolMax === undefined ? {} : { max: poolMax }),
    ...(applicationName === undefined ? {} : { application_name: applicationName }),
  });
  return new PrismaClient({ adapter });
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
