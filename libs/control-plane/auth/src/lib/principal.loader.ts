import { Inject, Injectable } from '@nestjs/common';
import { withTenant, type PortcullisPrismaClient } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import type { TenantId, UserId } from '@portcullis/shared/util-ids';
import type { TenantRole } from './permissions';

/** The two lookups authentication needs, per request (both by primary or unique key). */
@Injectable()
export class PrincipalLoader {
  constructor(@Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient) {}

  /** The user's current platform role, or null when the user no longer exists. */
  async user(userId: UserId): Promise<{ isPlatformAdmin: boolean } | null> {
    const row = await this.db.user.findUnique({ where: { id: userId }, select: { platformRole: true } });
    return row ? { isPlatformAdmin: row.platformRole === 'platform_admin' } : null;
  }

  /**
   * The user's role in the tenant and whether the tenant is suspended, or null when they are not a member (or the
   * tenant does not exist).
   */
  async membership(tenantId: TenantId, userId: UserId): Promise<{ role: TenantRole; suspended: boolean } | null> {
    const row = await withTenant(this.db, tenantId, (tx) =>
      tx.membership.findUnique({ where: { tenantId_userId: { tenantId, userId } }, select: { role: true, tenant: { select: { status: true } } } }),
    );
    return row ? { role: row.role, suspended: row.tenant.status === 'suspended' } : null;
  }
}
