import type { TenantTransaction } from '@portcullis/data/db';
import { AppError } from '@portcullis/shared/util-errors';
import type { TenantId } from '@portcullis/shared/util-ids';

/** The refusal of a change in a suspended tenant: by the access guard, and again inside the change's transaction. */
export const tenantSuspended = (): AppError =>
  new AppError('CONFLICT', 'This tenant is suspended: its configuration can be read and its audit trail exported, nothing changed.');

/**
 * Refuses (409) a change of a tenant that is suspended now, read in the change's own transaction. The access guard
 * read the tenant's status in a transaction of its own, and a suspension may have committed since (found by a review:
 * an API key created after its tenant's suspension had been answered 200). FOR SHARE: a suspension not yet committed
 * is waited for, not read past, and one that comes later waits for the caller's commit, so every change either lands
 * before the suspension or is refused.
 */
export async function assertTenantWritable(tenantId: TenantId, tx: TenantTransaction): Promise<void> {
  const rows = await tx.$queryRaw<{ status: string }[]>`SELECT status::text AS status FROM tenants WHERE id = ${tenantId}::uuid FOR SHARE`;
  const status = rows[0]?.status;
  if (status === undefined) throw new AppError('NOT_FOUND', 'No such tenant.');
  if (status !== 'active') throw tenantSuspended();
}
