import { randomBytes } from 'node:crypto';
import type { SystemPrismaClient, Tenant } from '@portcullis/data/db';
import { newId, tenantId, type TenantId } from '@portcullis/shared/util-ids';

export interface TestTenant {
  readonly id: TenantId;
  readonly slug: string;
  readonly name: string;
  readonly row: Tenant;
}

/**
 * A fresh tenant for one test: tests isolate themselves by tenant, never by truncating shared tables.
 * Pass the system client (fixtures are written across RLS).
 */
export async function createTestTenant(
  systemClient: SystemPrismaClient,
  overrides: { slug?: string; name?: string } = {},
): Promise<TestTenant> {
  const slug = overrides.slug ?? `test-${randomBytes(6).toString('hex')}`;
  const row = await systemClient.tenant.create({
    data: { id: newId(), slug, name: overrides.name ?? `Test tenant ${slug}` },
  });
  return { id: tenantId(row.id), slug: row.slug, name: row.name, row };
}
