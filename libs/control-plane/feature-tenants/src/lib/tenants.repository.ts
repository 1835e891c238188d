import { Injectable } from '@nestjs/common';
import type { PageRequest } from '@portcullis/control-plane/http';
import { findOrCreateUser, type MembershipRole, type PortcullisPrismaClient, type TenantTransaction } from '@portcullis/data/db';
import type { TenantId, UserId } from '@portcullis/shared/util-ids';
import { tenantSelect, type TenantRow } from './tenants.mapper';

type Db = PortcullisPrismaClient | TenantTransaction;

/**
 * Tenants are the root of tenancy and not row-level secured: the registry is read by id or slug. Memberships are
 * tenant-owned, so the owner is added inside the new tenant's own context.
 */
@Injectable()
export class TenantsRepository {
  async findBySlug(db: Db, slug: string): Promise<TenantRow | null> {
    return db.tenant.findUnique({ where: { slug }, select: tenantSelect });
  }

  async find(tenantId: TenantId, db: Db): Promise<TenantRow | null> {
    return db.tenant.findUnique({ where: { id: tenantId }, select: tenantSelect });
  }

  /** Locks the row for the rest of the transaction and returns it. */
  async lock(tenantId: TenantId, tx: TenantTransaction): Promise<TenantRow | null> {
    await tx.$queryRaw`SELECT id FROM tenants WHERE id = ${tenantId}::uuid FOR UPDATE`;
    return this.find(tenantId, tx);
  }

  async update(tenantId: TenantId, tx: TenantTransaction, changes: { name?: string; status?: 'active' | 'suspended' }): Promise<TenantRow> {
    return tx.tenant.update({ where: { id: tenantId }, data: changes, select: tenantSelect });
  }

  /** Held calls of the tenant still waiting for a decision are cancelled (the tenant was suspended). */
  async cancelPendingApprovals(tenantId: TenantId, tx: TenantTransaction, note: string): Promise<number> {
    const { count } = await tx.approval.updateMany({ where: { tenantId, status: 'pending' }, data: { status: 'cancelled', decisionNote: note } });
    return count;
  }

  async create(db: Db, tenant: { id: string; slug: string; name: string }): Promise<TenantRow> {
    return db.tenant.create({ data: tenant, select: tenantSelect });
  }

  /** Every tenant (platform admins), in id order. */
  async listAll(db: Db, page: PageRequest): Promise<TenantRow[]> {
    return db.tenant.findMany({
      where: page.after === undefined ? {} : { id: { gt: page.after } },
      orderBy: { id: 'asc' },
      take: page.limit + 1,
      select: tenantSelect,
    });
  }

  /** The tenants with these ids, in id order. */
  async listByIds(db: Db, ids: readonly string[], page: PageRequest): Promise<TenantRow[]> {
    return db.tenant.findMany({
      where: { id: { in: [...ids], ...(page.after === undefined ? {} : { gt: page.after }) } },
      orderBy: { id: 'asc' },
      take: page.limit + 1,
      select: tenantSelect,
    });
  }

  /** The user's memberships in every tenant (read through the `own_memberships` policy: run inside withUser). */
  async membershipsOf(tx: TenantTransaction, userId: UserId): Promise<Map<string, MembershipRole>> {
    // The tenant-scope extension requires a tenant filter on memberships; this query is the deliberate exception,
    // made safe by row-level security (withUser exposes only the user's own rows). A raw query states that openly.
    const rows = await tx.$queryRaw<{ tenant_id: string; role: MembershipRole }[]>`
      SELECT tenant_id::text AS tenant_id, role::text AS role FROM memberships WHERE user_id = ${userId}::uuid`;
    return new Map(rows.map((row) => [row.tenant_id, row.role]));
  }

  async findOrCreateUser(tx: TenantTransaction, email: string): Promise<{ id: string }> {
    return findOrCreateUser(tx, email);
  }

  async addMembership(tenantId: TenantId, tx: TenantTransaction, userId: string, role: MembershipRole, displayName: string): Promise<void> {
    await tx.membership.create({ data: { tenantId, userId, role, displayName }, select: { id: true } });
  }
}
