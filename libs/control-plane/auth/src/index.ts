export { Allow, CurrentPrincipal, CurrentTenant, Public } from './lib/access.decorators';
export type { RouteAccess } from './lib/access.decorators';
export {
  AccessTokenError,
  issueAccessToken,
  MAX_ACCESS_TOKEN_TTL_SECONDS,
  verifyAccessToken,
} from './lib/access-token';
export type { AccessTokenSettings, VerifiedAccessToken } from './lib/access-token';
export { ControlPlaneAuthModule } from './lib/auth.module';
export { assertRoleStillGrants, currentRole } from './lib/current-role';
export { assertTenantWritable, tenantSuspended } from './lib/tenant-writable';
export type { ControlPlaneAuthOptions } from './lib/auth.options';
export { allowedWhileSuspended, describePermissionTable, isTenantPermission, PERMISSIONS, roleGrants, TENANT_ROLES } from './lib/permissions';
export type { Permission, TenantPermission, TenantRole } from './lib/permissions';
export type { Principal, TenantScope } from './lib/principal';
export { RouteAccessRegistry } from './lib/route-access.registry';
export type { RouteDeclaration } from './lib/route-access.registry';
