import { describe, expect, it } from 'vitest';
import { PERMISSIONS, roleGrants, TENANT_ROLES, type Permission } from './permissions';

describe('permission table', () => {
  it('gives owners every tenant permission and members only reads of the tenant and its upstreams', () => {
    const tenantPermissions = (Object.keys(PERMISSIONS) as Permission[]).filter((p) => p.startsWith('tenant:'));
    for (const permission of tenantPermissions) expect(roleGrants('owner', permission)).toBe(true);
    expect(tenantPermissions.filter((p) => roleGrants('member', p))).toEqual(['tenant:read', 'tenant:upstreams:read']);
    expect(tenantPermissions.filter((p) => roleGrants('auditor', p)).every((p) => !p.endsWith(':write'))).toBe(true);
  });

  it('never grants platform or user permissions through a tenant role', () => {
    for (const role of TENANT_ROLES) {
      expect(roleGrants(role, 'platform:tenants:write')).toBe(false);
      expect(roleGrants(role, 'user:tenants:read')).toBe(false);
    }
  });
});
