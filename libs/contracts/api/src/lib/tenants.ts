import { z } from 'zod';
import { tenantSlug } from './common';

export const tenantStatus = z.enum(['active', 'suspended']);
export const membershipRole = z.enum(['owner', 'admin', 'auditor', 'member']);
export type MembershipRole = z.infer<typeof membershipRole>;

export const createTenantRequest = z.strictObject({
  slug: tenantSlug,
  name: z.string().trim().min(1).max(200),
  /** Optional first owner; created as a user if nobody has that email yet. */
  ownerEmail: z.email().max(320).toLowerCase().optional(),
});
export type CreateTenantRequest = z.infer<typeof createTenantRequest>;

/** Platform admins rename a tenant or suspend / reactivate it (at least one field). */
export const updateTenantRequest = z
  .strictObject({
    name: z.string().trim().min(1).max(200).optional(),
    status: tenantStatus.optional(),
  })
  .refine((body) => body.name !== undefined || body.status !== undefined, 'give name or status');
export type UpdateTenantRequest = z.infer<typeof updateTenantRequest>;

export const tenantResponse = z.object({
  id: z.uuid(),
  slug: tenantSlug,
  name: z.string(),
  status: tenantStatus,
  createdAt: z.iso.datetime({ offset: true }),
});
export type TenantResponse = z.infer<typeof tenantResponse>;

/** A tenant as listed to a caller: `role` is the caller's own role there (null for a platform admin who is not a member). */
export const tenantListItem = tenantResponse.extend({ role: membershipRole.nullable() });
export type TenantListItem = z.infer<typeof tenantListItem>;
