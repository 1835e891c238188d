export { page, pageQuery, problemDetails, readinessReport, tenantSlug } from './lib/common';
export type { PageQuery, ProblemDetailsResponse } from './lib/common';
export { createTenantRequest, membershipRole, tenantResponse, tenantStatus } from './lib/tenants';
export type { CreateTenantRequest, MembershipRole, TenantResponse } from './lib/tenants';
