import { Injectable } from '@nestjs/common';
import type { PageRequest } from '@portcullis/control-plane/http';
import type { TenantTransaction } from '@portcullis/data/db';
import type { TenantId } from '@portcullis/shared/util-ids';
import { groupMemberSelect, groupSelect, type GroupMemberRow, type GroupRow } from './groups.mapper';

/** Queries only; `tenantId` first and always in the where (ADR 0003). */
@Injectable()
export class GroupsRepository {
  async list(tenantId: TenantId, tx: TenantTransaction, page: PageRequest): Promise<GroupRow[]> {
    return tx.group.findMany({
      where: { tenantId, ...(page.after === undefined ? {} : { id: { gt: page.after } }) },
      orderBy: { id: 'asc' },
      take: page.limit + 1,
      select: groupSelect,
    });
  }

  async find(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<GroupRow | null> {
    return tx.group.findFirst({ where: { tenantId, id }, select: groupSelect });
  }

  /**
   * The group, its row locked (FOR UPDATE) until the transaction ends: a change of it not yet committed is waited for,
   * not read past, so what is read is what this transaction's change replaces.
   */
  async findForUpdate(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<GroupRow | null> {
    await tx.$queryRaw`SELECT id FROM groups WHERE tenant_id = ${tenantId}::uuid AND id = ${id}::uuid FOR UPDATE`;
    return this.find(tenantId, tx, id);
  }

  async findByExternalId(tenantId: TenantId, tx: TenantTransaction, externalId: string): Promise<GroupRow | null> {
    return tx.group.findUnique({ where: { tenantId_externalId: { tenantId, externalId } }, select: groupSelect });
  }

  async create(tenantId: TenantId, tx: TenantTransaction, group: { externalId: string; name: string }): Promise<GroupRow> {
    return tx.group.create({ data: { tenantId, externalId: group.externalId, name: group.name, source: 'manual' }, select: groupSelect });
  }

  async rename(tenantId: TenantId, tx: TenantTransaction, id: string, name: string): Promise<GroupRow | null> {
    const { count } = await tx.group.updateMany({ where: { tenantId, id }, data: { name } });
    return count === 0 ? null : this.find(tenantId, tx, id);
  }

  /** Deletes the group (its member rows go by cascade). */
  async delete(tenantId: TenantId, tx: TenantTransaction, id: string): Promise<boolean> {
    const { count } = await tx.group.deleteMany({ where: { tenantId, id } });
    return count > 0;
  }

  async listMembers(tenantId: TenantId, tx: TenantTransaction, groupId: string, page: PageRequest): Promise<GroupMemberRow[]> {
    return tx.groupMember.findMany({
      where: { tenantId, groupId, ...(page.after === undefined ? {} : { id: { gt: page.after } }) },
      orderBy: { id: 'asc' },
      take: page.limit + 1,
      select: groupMemberSelect,
    });
  }

  async findMember(tenantId: TenantId, tx: TenantTransaction, groupId: string, userId: string): Promise<GroupMemberRow | null> {
    return tx.groupMember.findUnique({ where: { tenantId_groupId_userId: { tenantId, groupId, userId } }, select: groupMemberSelect });
  }

  async isTenantMember(tenantId: TenantId, tx: TenantTransaction, userId: string): Promise<boolean> {
    return (await tx.membership.count({ where: { tenantId, userId } })) > 0;
  }

  async addMember(tenantId: TenantId, tx: TenantTransaction, groupId: string, userId: string): Promise<GroupMemberRow> {
    return tx.groupMember.create({ data: { tenantId, groupId, userId }, select: groupMemberSelect });
  }

  async removeMember(tenantId: TenantId, tx: TenantTransaction, groupId: string, userId: string): Promise<boolean> {
    const { count } = await tx.groupMember.deleteMany({ where: { tenantId, groupId, userId } });
    return count > 0;
  }
}
