/**
 * Who may do what in the control plane: the one table. A route declares one permission (`@Allow(...)`); the guard
 * checks the caller against this table and nothing else.
 *
 * - `platform:*` — platform admins (operators of the installation), whatever their tenant memberships.
 * - `user:*` — any signed-in user; the service narrows what they see (their own tenants).
 * - `tenant:*` — a member of the tenant named by the route's `:tenantId`, with one of the listed roles.
 */
export const TENANT_ROLES = ['owner', 'admin', 'auditor', 'member'] as const;
export type TenantRole = (typeof TENANT_ROLES)[number];

type PermissionRule =
  | { readonly principal: 'platform_admin' }
  | { readonly principal: 'user' }
  | { readonly principal: 'member'; readonly roles: readonly TenantRole[] };

const ALL: readonly TenantRole[] = TENANT_ROLES;
const READERS: readonly TenantRole[] = ['owner', 'admin', 'auditor'];
const MANAGERS: readonly TenantRole[] = ['owner', 'admin'];

export const PERMISSIONS = {
  'platform:tenants:write': { principal: 'platform_admin' },
  'user:tenants:read': { principal: 'user' },
  'tenant:read': { principal: 'member', roles: ALL },
  'tenant:members:read': { principal: 'member', roles: READERS },
  'tenant:members:write': { principal: 'member', roles: MANAGERS },
  'tenant:upstreams:read': { principal: 'member', roles: ALL },
  'tenant:upstreams:write': { principal: 'member', roles: MANAGERS },
  'tenant:upstream-tools:approve': { principal: 'member', roles: MANAGERS },
  'tenant:agent-clients:read': { principal: 'member', roles: READERS },
  'tenant:agent-clients:write': { principal: 'member', roles: MANAGERS },
  'tenant:api-keys:read': { principal: 'member', roles: READERS },
  'tenant:api-keys:write': { principal: 'member', roles: MANAGERS },
  /** Revoking is its own permission: it stays allowed while the tenant is suspended (a leaked key must be stoppable). */
  'tenant:api-keys:revoke': { principal: 'member', roles: MANAGERS },
  'tenant:policies:read': { principal: 'member', roles: READERS },
  'tenant:policies:write': { principal: 'member', roles: MANAGERS },
  'tenant:groups:read': { principal: 'member', roles: READERS },
  'tenant:groups:write': { principal: 'member', roles: MANAGERS },
  'tenant:audit:read': { principal: 'member', roles: READERS },
  'tenant:audit:export': { principal: 'member', roles: READERS },
  'tenant:approvals:read': { principal: 'member', roles: READERS },
  /** Approve, deny or edit a held call; never one's own (the service refuses self-approval). */
  'tenant:approvals:decide': { principal: 'member', roles: MANAGERS },
} as const satisfies Record<string, PermissionRule>;

export type Permission = keyof typeof PERMISSIONS;
export type TenantPermission = Extract<Permission, `tenant:${string}`>;

export function permissionRule(permission: Permission): PermissionRule {
  return PERMISSIONS[permission];
}

export function isTenantPermission(permission: Permission): permission is TenantPermission {
  return PERMISSIONS[permission].principal === 'member';
}

/** Whether a member with `role` holds `permission` (false for non-tenant permissions). */
export function roleGrants(role: TenantRole, permission: Permission): boolean {
  const rule: PermissionRule = PERMISSIONS[permission];
  return rule.principal === 'member' && rule.roles.includes(role);
}

/** The permission table as text (docs and the snapshot test). */
export function describePermissionTable(): string[] {
  return (Object.keys(PERMISSIONS) as Permission[]).map((permission) => {
    const rule: PermissionRule = PERMISSIONS[permission];
    const who = rule.principal === 'member' ? rule.roles.join(', ') : rule.principal;
    return `${permission} → ${who}`;
  });
}

/**
 * What members may still do in a suspended tenant: read, export the audit trail (compliance outlives a suspension),
 * and revoke API keys (a leaked key must not come back to life when the tenant is reactivated).
 */
export function allowedWhileSuspended(permission: Permission): boolean {
  return permission.endsWith(':read') || permission === 'tenant:audit:export' || permission === 'tenant:api-keys:revoke';
}
