import type { TenantTransaction } from '@portcullis/data/db';
import type { TenantRole } from './permissions';
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
