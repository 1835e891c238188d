export { createPrismaClient, createSystemPrismaClient } from './lib/client';
export { databaseErrorSummary } from './lib/database-error';
export type { PortcullisPrismaClient, PrismaClientOptions, SystemPrismaClient } from './lib/client';
export { findOrCreateUser } from './lib/users';
export { withTenant, withUser } from './lib/with-tenant';
export type { TenantTransaction, TransactionOptions } from './lib/with-tenant';
export {
  TenantScopeError,
  assertScoped,
  modelMetadataFromClient,
  tenantScopeExtension,
} from './lib/tenant-scope';
export type { ModelMetadata, TenantScopeOptions } from './lib/tenant-scope';

// Generated types and enums. The PrismaClient constructor itself is not exported: use the factories above.
export { Prisma } from './generated/prisma/client';
export * from './generated/prisma/enums';
export type {
  AgentClient,
  ApiKey,
  Approval,
  AuditChainHead,
  AuditEvent,
  AuditExport,
  Group,
  GroupMember,
  Membership,
  OAuthAuthorizationCode,
  OAuthClient,
  OAuthConsent,
  OAuthRefreshToken,
  Policy,
  PolicyRule,
  PolicySnapshot,
  SsoConnection,
  Tenant,
  Upstream,
  UpstreamTool,
  User,
} from './generated/prisma/client';
