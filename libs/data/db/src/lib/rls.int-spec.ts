/**
 * Layer 4 of tenant isolation: Postgres row-level security. These tests deliberately "forget" the tenant filter by
 * going around the Prisma extension ($queryRaw / $executeRaw, i.e. SQL written without a tenant_id condition) and
 * check that the database itself keeps tenant B's rows out of tenant A's context.
 * If RLS were disabled on `upstreams`, the read, update, delete and insert cases below would fail.
 */
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { newId } from '@portcullis/shared/util-ids';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createPrismaClient, createSystemPrismaClient } from './client';
import { withTenant } from './with-tenant';

const ctx = testContext();
const app = createPrismaClient({ url: ctx.databaseUrl, poolMax: 4 });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl, poolMax: 2 });

afterAll(async () => {
  await Promise.all([app.$disconnect(), system.$disconnect()]);
});

async function addUpstream(tenant: TestTenant, name: string) {
  return system.upstream.create({
    data: {
      tenantId: tenant.id,
      name,
      toolPrefix: name,
      transport: 'streamable_http',
      url: `http://127.0.0.1:1/${name}`,
    },
  });
}

describe('row-level security (portcullis_app)', () => {
  let a: TestTenant;
  let b: TestTenant;

  beforeEach(async () => {
    a = await createTestTenant(system);
    b = await createTestTenant(system);
    await addUpstream(a, 'alpha');
    await addUpstream(b, 'bravo');
  });

  it('connects as a role that is subject to RLS', async () => {
    const [role] = await app.$queryRaw<{ rolname: string; rolbypassrls: boolean; rolsuper: boolean }[]>`
      SELECT rolname, rolbypassrls, rolsuper FROM pg_roles WHERE rolname = current_user`;
    expect(role).toEqual({ rolname: 'portcullis_app', rolbypassrls: false, rolsuper: false });
  });

  it('an unfiltered read inside withTenant(A) returns only A rows', async () => {
    const rows = await withTenant(
      app,
      a.id,
      (tx) =>
        tx.$queryRaw<{ tenant_id: string; name: string }[]>`SELECT tenant_id::text, name FROM upstreams`,
    );
    expect(rows.map((r) => r.name)).toEqual(['alpha']);
    expect(new Set(rows.map((r) => r.tenant_id))).toEqual(new Set([a.id]));
  });

  it('an unfiltered UPDATE inside withTenant(A) cannot touch B rows', async () => {
    const updated = await withTenant(app, a.id, (tx) => tx.$executeRaw`UPDATE upstreams SET enabled = false`);
    expect(updated).toBe(1);
    const bRow = await system.upstream.findFirstOrThrow({ where: { tenantId: b.id } });
    expect(bRow.enabled).toBe(true);
  });

  it('an unfiltered DELETE inside withTenant(A) cannot delete B rows', async () => {
    const deleted = await withTenant(app, a.id, (tx) => tx.$executeRaw`DELETE FROM upstreams`);
    expect(deleted).toBe(1);
    expect(await system.upstream.count({ where: { tenantId: b.id } })).toBe(1);
  });

  it('an INSERT with B tenant_id inside withTenant(A) is rejected', async () => {
    const insert = withTenant(
      app,
      a.id,
      (tx) =>
        tx.$executeRaw`INSERT INTO upstreams (id, tenant_id, name, tool_prefix, transport, url, updated_at)
        VALUES (${newId()}::uuid, ${b.id}::uuid, 'planted', 'planted', 'streamable_http', 'http://x', now())`,
    );
    await expect(insert).rejects.toThrow(/row-level security/);
    expect(await system.upstream.count({ where: { tenantId: b.id, name: 'planted' } })).toBe(0);
  });

  it('moving an A row to tenant B is rejected (WITH CHECK)', async () => {
    const move = withTenant(
      app,
      a.id,
      (tx) => tx.$executeRaw`UPDATE upstreams SET tenant_id = ${b.id}::uuid`,
    );
    await expect(move).rejects.toThrow(/row-level security/);
  });

  it('with no tenant set, the app role sees and changes nothing', async () => {
    const rows = await app.$queryRaw<unknown[]>`SELECT * FROM upstreams`;
    expect(rows).toEqual([]);
    expect(await app.$executeRaw`DELETE FROM upstreams`).toBe(0);
    // Also on a pooled connection that had a tenant set in an earlier transaction (setting reads '' then).
    await withTenant(app, a.id, (tx) => tx.$queryRaw`SELECT 1`);
    expect(await app.$queryRaw<unknown[]>`SELECT * FROM upstreams`).toEqual([]);
  });

  it('the app role cannot delete tenants or users, in a tenant\'s context or out of it (global tables, no RLS)', async () => {
    const user = await system.user.create({ data: { email: `keep-${newId()}@example.test`, name: 'kept' }, select: { id: true } });
    await expect(app.$executeRaw`DELETE FROM tenants WHERE id = ${b.id}::uuid`).rejects.toThrow(/permission denied/);
    await expect(withTenant(app, a.id, (tx) => tx.$executeRaw`DELETE FROM tenants WHERE id = ${a.id}::uuid`)).rejects.toThrow(/permission denied/);
    await expect(app.$executeRaw`DELETE FROM users WHERE id = ${user.id}::uuid`).rejects.toThrow(/permission denied/);
    expect(await system.tenant.count({ where: { id: { in: [a.id, b.id] } } })).toBe(2);
    expect(await system.user.count({ where: { id: user.id } })).toBe(1);
  });

  it('the app role advances a tenant\'s audit chain head but cannot delete it (a new head would restart the chain at 0)', async () => {
    await system.$executeRaw`INSERT INTO audit_chain_heads (tenant_id, last_seq, updated_at) VALUES (${a.id}::uuid, 0, now()) ON CONFLICT (tenant_id) DO NOTHING`;
    await expect(withTenant(app, a.id, (tx) => tx.$executeRaw`DELETE FROM audit_chain_heads WHERE tenant_id = ${a.id}::uuid`)).rejects.toThrow(/permission denied/);
    expect(await withTenant(app, a.id, (tx) => tx.$executeRaw`UPDATE audit_chain_heads SET updated_at = now() WHERE tenant_id = ${a.id}::uuid`)).toBe(1);
    expect(await system.$queryRaw<unknown[]>`SELECT 1 FROM audit_chain_heads WHERE tenant_id = ${a.id}::uuid`).toHaveLength(1);
  });

  it('the app role creates users and changes their names, but cannot make anyone a platform admin', async () => {
    const email = `plain-${newId()}@example.test`;
    const created = await app.user.create({ data: { email, name: 'Plain' }, select: { id: true } });
    await app.$executeRaw`UPDATE users SET name = 'Renamed' WHERE id = ${created.id}::uuid`;
    const refused = /may not change platform roles/;
    await expect(app.$executeRaw`UPDATE users SET platform_role = 'platform_admin' WHERE id = ${created.id}::uuid`).rejects.toThrow(refused);
    await expect(app.user.create({ data: { email: `admin-${newId()}@example.test`, name: 'Sneaky', platformRole: 'platform_admin' } })).rejects.toThrow(refused);
    await expect(withTenant(app, a.id, (tx) => tx.user.update({ where: { id: created.id }, data: { platformRole: 'platform_admin' } }))).rejects.toThrow(refused);
    // A temporary view cannot stand in for the catalogue the guard asks (its search path is pinned).
    await expect(
      app.$transaction(async (tx) => {
        await tx.$executeRawUnsafe('CREATE TEMP VIEW pg_roles AS SELECT current_user::name AS rolname, true AS rolsuper, true AS rolbypassrls');
        await tx.$executeRaw`UPDATE users SET platform_role = 'platform_admin' WHERE id = ${created.id}::uuid`;
      }),
    ).rejects.toThrow(refused);
    // The system role (bootstrap, operators' scripts) still may; then the admin's identity is guarded too.
    await system.user.update({ where: { id: created.id }, data: { platformRole: 'platform_admin' } });
    await expect(app.$executeRaw`UPDATE users SET platform_role = 'none' WHERE id = ${created.id}::uuid`).rejects.toThrow(refused);
    await expect(app.$executeRaw`UPDATE users SET email = ${`taken-${newId()}@example.test`} WHERE id = ${created.id}::uuid`).rejects.toThrow(/identity/);
    await expect(app.$executeRaw`UPDATE users SET sso_subject = 'someone-else' WHERE id = ${created.id}::uuid`).rejects.toThrow(/identity/);
    await app.$executeRaw`UPDATE users SET name = 'Still renamable' WHERE id = ${created.id}::uuid`;
    await system.user.update({ where: { id: created.id }, data: { platformRole: 'none' } });
    expect(await system.user.findUnique({ where: { id: created.id }, select: { name: true, platformRole: true } })).toEqual({ name: 'Still renamable', platformRole: 'none' });
  });

  it('Prisma queries inside withTenant(A) that name tenant B find nothing', async () => {
    const found = await withTenant(app, a.id, (tx) => tx.upstream.findMany({ where: { tenantId: b.id } }));
    expect(found).toEqual([]);
    const updated = await withTenant(app, a.id, (tx) =>
      tx.upstream.updateMany({ where: { tenantId: b.id }, data: { enabled: false } }),
    );
    expect(updated.count).toBe(0);
    const deleted = await withTenant(app, a.id, (tx) =>
      tx.upstream.deleteMany({ where: { tenantId: b.id } }),
    );
    expect(deleted.count).toBe(0);
    const created = withTenant(app, a.id, (tx) =>
      tx.upstream.create({
        data: {
          tenantId: b.id,
          name: 'planted',
          toolPrefix: 'planted',
          transport: 'streamable_http',
          url: 'http://x',
        },
      }),
    );
    await expect(created).rejects.toThrow();
    expect(await system.upstream.count({ where: { tenantId: b.id } })).toBe(1);
  });

  it('the system role sees every tenant', async () => {
    const count = await system.upstream.count({ where: { tenantId: { in: [a.id, b.id] } } });
    expect(count).toBe(2);
  });
});

describe('row-level security coverage', () => {
  let tables: { table: string; rls: boolean; forced: boolean; policies: number }[];

  beforeAll(async () => {
    tables = await system.$queryRaw`
      SELECT c.relname AS "table", c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
             (SELECT count(*)::int FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
      WHERE c.relkind = 'r'
        AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
      ORDER BY 1`;
  });

  it('every table with a tenant_id column has RLS enabled, forced and a policy', () => {
    expect(tables.length).toBeGreaterThan(10);
    const unprotected = tables.filter((t) => !t.rls || !t.forced || t.policies === 0).map((t) => t.table);
    expect(unprotected, 'enable + force RLS and add the tenant_isolation policy in the migration').toEqual(
      [],
    );
  });
});
