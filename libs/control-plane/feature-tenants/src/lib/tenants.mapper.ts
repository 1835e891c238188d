import type { TenantListItem, TenantResponse } from '@portcullis/contracts/api';
import type { MembershipRole, Prisma } from '@portcullis/data/db';

export const tenantSelect = { id: true, slug: true, name: true, status: true, createdAt: true } satisfies Prisma.TenantSelect;
export type TenantRow = Prisma.TenantGetPayload<{ select: typeof tenantSelect }>;

export function toTenantResponse(row: TenantRow): TenantResponse {
  return { id: row.id, slug: row.slug, name: row.name, status: row.status, createdAt: row.createdAt.toISOString() };
}

export function toTenantListItem(row: TenantRow & { role: MembershipRole | null }): TenantListItem {
  return { ...toTenantResponse(row), role: row.role };
}
