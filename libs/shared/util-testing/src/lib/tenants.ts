import { randomBytes } from 'node:crypto';
import { newId, tenantId, type TenantId } from '@portcullis/shared/util-ids';

export interface TestTenant {
  readonly id: TenantId;
  readonly slug: string;
  readonly name: string;
}

/**
 * The part of the system Prisma client (`createSystemPrismaClient` in the data layer) this factory uses.
 * Structural, so this library does not depend on the data layer (whose own tests use it).
 */
export interface TenantWriter {
  readonly tenant: {
    create(args: {
      data: { id: string; slug: string; name: string };
    }): Promise<{ id: string; slug: string; name: string }>;
  };
}

/**
 * A fresh tenant for one test: tests isolate themselves by tenant, never by truncating shared tables.
 * Pass the system client (fixtures are written across row-level security).
 */
export async function createTestTenant(
  systemClient: TenantWriter,
  overrides: { slug?: string; name?: string } = {},
): Promise<TestTenant> {
  const slug = overrides.slug ?? `test-${randomBytes(6).toString('hex')}`;
  const row = await systemClient.tenant.create({
    data: { id: newId(), slug, name: overrides.name ?? `Test tenant ${slug}` },
  });
  return { id: tenantId(row.id), slug: row.slug, name: row.name };
}
