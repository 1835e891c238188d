import { isUuid, type TenantId, type UserId } from '@portcullis/shared/util-ids';
import type { PortcullisPrismaClient } from './client';

/** The client inside a transaction (no $connect, $transaction... of its own). */
export type TenantTransaction = Parameters<Parameters<PortcullisPrismaClient['$transaction']>[0]>[0];

export interface TransactionOptions {
  readonly maxWait?: number;
  readonly timeout?: number;
  readonly isolationLevel?: 'ReadCommitted' | 'RepeatableRead' | 'Serializable';
}

async function inContext<T>(
  client: PortcullisPrismaClient,
  setting: 'app.tenant_id' | 'app.user_id',
  value: string,
  fn: (tx: TenantTransaction) => Promise<T>,
  options: TransactionOptions,
): Promise<T> {
  // The branded type is the real guard; this catches casts and data from outside TypeScript.
  if (!isUuid(value)) throw new TypeError(`${setting} must be a UUID`);
  return client.$transaction(async (tx) => {
    // Transaction-local (third argument true): the setting ends with the transaction, so a pooled connection never
    // carries one tenant's context into another request.
    await tx.$queryRaw`SELECT set_config(${setting}, ${value}, true)`;
    return fn(tx);
  }, options);
}

/**
 * Runs `fn` in a transaction whose row-level-security context is `tenantId`: with the application role, queries in
 * it see and write only that tenant's rows, whatever their where clauses say.
 */
export function withTenant<T>(
  client: PortcullisPrismaClient,
  tenantId: TenantId,
  fn: (tx: TenantTransaction) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  return inContext(client, 'app.tenant_id', tenantId, fn, options);
}

/**
 * Runs `fn` in a transaction where the signed-in user can read their own memberships in every tenant (the tenant
 * switcher, before a tenant is chosen). Nothing else tenant-owned is visible.
 */
export function withUser<T>(
  client: PortcullisPrismaClient,
  userId: UserId,
  fn: (tx: TenantTransaction) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  return inContext(client, 'app.user_id', userId, fn, options);
}
