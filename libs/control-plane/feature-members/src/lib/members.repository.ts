import { Injectable } from '@nestjs/common';
import type { PageRequest } from '@portcullis/control-plane/http';
import { findOrCreateUser, type MembershipRole, type TenantTransaction } from '@portcullis/data/db';
import type { TenantId } from '@portcullis/shared/util-ids';
import { memberSelect, type MemberRow } from './members.mapper';

@Injectable()
export class MembersRepository {
  async list(tenantId: TenantId, tx: TenantTransaction, page: PageRequest): Promise<MemberRow[]> {
    return tx.membership.findMany({
      where: { tenantId, ...(page.after === undefined ? {} : { id: { gt: page.after } }) },
      orderBy: { id: 'asc' },
      take: page.limit + 1,
      select: memberSelect,
    });
  }

  async find(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<MemberRow | null> {
    return tx.membership.findFirst({ where: { tenantId, id }, select: memberSelect });
  }

  async findByUser(tenantId: TenantId, tx: TenantTransaction, userId: string): Promise<MemberRow | null> {
    return tx.membership.findUnique({ where: { tenantId_userId: { tenantId, userId } }, select: memberSelect });
  }

  /**
   * Locks the tenant's owner memberships and counts them, so two concurrent demotions cannot both see "there is another
   * owner" and leave none. FOR NO KEY UPDATE: it waits for an owner's change under way (which holds the owner's role
   * FOR SHARE), but not for a row that merely references an owner (a group membership's foreign key): with FOR UPDATE,
   * an owner added to a group while they changed a role deadlocked the two (found by re-review).
   */
  async lockOwners(tenantId: TenantId, tx: TenantTransaction): Promise<number> {
    const rows = await tx.$queryRaw<{ id: string }[]>`
      SELECT id FROM memberships WHERE tenant_id = ${tenantId}::uuid AND role = 'owner' FOR NO KEY UPDATE`;
    return rows.length;
  }

  async create(tenantId: TenantId, tx: TenantTransaction, userId: string, role: MembershipRole, displayName: string): Promise<MemberRow> {
    return tx.membership.create({ data: { tenantId, userId, role, displayName }, select: memberSelect });
  }

  async updateRole(tenantId: TenantId, tx: TenantTransaction, id: string, role: MembershipRole): Promise<MemberRow | null> {
    const { count } = await tx.membership.updateMany({ where: { tenantId, id }, data: { role } });
    return count === 0 ? null : this.find(tenantId, tx, id);
  }

  async delete(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<boolean> {
    const { count } = await tx.membership.deleteMany({ where: { tenantId, id } });
    return count > 0;
  }

  /**
   * Revokes the tenant's live agent-client keys that this user created, and returns them (id and revocation time).
   * A key's secret is shown once, to whoever created it: when that person leaves the tenant, so does the secret.
   */
  async revokeKeysCreatedBy(tenantId: TenantId, tx: TenantTransaction, userId: string, at: Date): Promise<{ id: string; name: string; agentClientId: string | null }[]> {
    return tx.$queryRaw<{ id: string; name: string; agentClientId: string | null }[]>`
      UPDATE api_keys SET revoked_at = ${at}
      WHERE tenant_id = ${tenantId}::uuid AND created_by_id = ${userId}::uuid AND revoked_at IS NULL
        AND (expires_at IS NULL OR expires_at > ${at})
      RETURNING id::text AS id, name, agent_client_id::text AS "agentClientId"`;
  }

  /**
   * Users are global (one per email); adding a member may create one. A new user is named by their email: the name a
   * tenant gives goes on its membership, so no tenant's choice becomes what other tenants see.
   */
  async findOrCreateUser(tx: TenantTransaction, email: string): Promise<{ id: string }> {
    return findOrCreateUser(tx, email);
  }
}
