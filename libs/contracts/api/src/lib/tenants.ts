import { z } from 'zod';
import { tenantSlug } from './common';

export const tenantStatus = z.enum(['active', 'suspended']);
export const membershipRole = z.enum(['owner', 'admin', 'auditor', 'member']);
export type MembershipRole = z.infer<typeof membershipRole>;

export const createTenantRequest = z.object({
  slug: tenantSlug,
  name: z.string().trim().min(1).max(200),
});
export type CreateTenantRequest = z.infer<typeof createTenantRequest>;

export const tenantResponse = z.object({
  id: z.uuid(),
  slug: tenantSlug,
  name: z.string(),
  status: tenantStatus,
  createdAt: z.iso.datetime({ offset: true }),
});
export type TenantResponse = z.infer<typeof tenantResponse>;
