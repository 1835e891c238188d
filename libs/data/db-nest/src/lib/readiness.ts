import type { PortcullisPrismaClient } from '@portcullis/data/db';

/**
 * A readiness check for Postgres, shaped like nest-runtime's ReadinessCheck:
 * `{ provide: READINESS_CHECKS, useFactory: (db) => [databaseReadinessCheck(db)], inject: [PRISMA_CLIENT] }`.
 *
 * For the application's client, whose queries rely on row-level security (ADR 0003): until the role it connects as is
 * known not to be a superuser or BYPASSRLS, each check asks, and a privileged role keeps the app not ready. A
 * `DATABASE_URL` naming such a role (the database's owner, `portcullis_system`) would otherwise serve every query with
 * the tenant policies silently off. Once the role passed, a check is `SELECT 1`.
 */
export function databaseReadinessCheck(client: Pick<PortcullisPrismaClient, '$queryRaw'>, name = 'postgres') {
  let roleChecked = false;
  return {
    name,
    async check(): Promise<void> {
      if (roleChecked) {
        await client.$queryRaw`SELECT 1`;
        return;
      }
      const [role] = await client.$queryRaw<{ privileged: boolean }[]>`
        SELECT coalesce((SELECT rolsuper OR rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user), false) AS privileged`;
      if (role?.privileged !== false) {
        throw new Error('the database role of DATABASE_URL is a superuser or bypasses row-level security: connect as the application role (portcullis_app)');
      }
      roleChecked = true;
    },
  };
}
