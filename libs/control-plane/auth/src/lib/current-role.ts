import type { TenantTransaction } from '@portcullis/data/db';
import { AppError } from '@portcullis/shared/util-errors';
import { roleGrants, type TenantPermission, type TenantRole } from './permissions';
import type { TenantScope } from './principal';

/**
 * The actor's role in the scope's tenant as it is now, read in the caller's transaction; undefined when they are no
 * longer a member. The access guard read the role in a transaction of its own, which a demotion or removal may have
 * followed since. FOR SHARE: a change of the row not yet committed is waited for, not read past, and one that comes
 * later waits for the caller's commit — so what the caller writes on the strength of this role (a key, a decision) is
 * there for the change to see.
 */
export async function currentRole(scope: TenantScope, tx: TenantTransaction): Promise<TenantRole | undefined> {
  const rows = await tx.$queryRaw<{ role: TenantRole }[]>`
    SELECT role FROM memberships WHERE tenant_id = ${scope.tenantId}::uuid AND user_id = ${scope.actor.userId}::uuid FOR SHARE`;
  return rows[0]?.role;
}

/**
 * Refuses (403) a change whose actor no longer holds `permission` in the tenant, read in the change's own transaction
 * (`currentRole`): a change that waited its turn (the tenant's write queue, the snapshot lock) after the access guard let
 * it in lands only if the actor is still allowed it, so none lands after their removal or demotion was answered (found
 * by a review: a removed admin's queued policy save set the tenant to allow everything).
 */
export async function assertRoleStillGrants(scope: TenantScope, permission: TenantPermission, tx: TenantTransaction): Promise<void> {
  const role = await currentRole(scope, tx);
  if (role === undefined || !roleGrants(role, permission)) {
    throw new AppError('FORBIDDEN', 'Your role in this tenant no longer allows this change (it changed after the request was sent).');
  }
}
