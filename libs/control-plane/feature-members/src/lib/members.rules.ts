import type { MembershipRole } from '@portcullis/data/db';
import { memberErrors } from './members.errors';

/** Owners manage owners: only an owner may grant the owner role, or change or remove someone who is an owner. */
export function assertMayManage(actorRole: MembershipRole, targetRoleBefore: MembershipRole | null, targetRoleAfter: MembershipRole | null): void {
  if (actorRole === 'owner') return;
  if (targetRoleBefore === 'owner' || targetRoleAfter === 'owner') throw memberErrors.onlyOwnersManageOwners();
}

/** A change that takes away an owner must leave at least one. */
export function assertKeepsAnOwner(ownerCount: number, targetRoleBefore: MembershipRole, targetRoleAfter: MembershipRole | null): void {
  if (targetRoleBefore === 'owner' && targetRoleAfter !== 'owner' && ownerCount <= 1) throw memberErrors.lastOwner();
}
