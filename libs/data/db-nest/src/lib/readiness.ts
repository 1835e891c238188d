import type { PortcullisPrismaClient } from '@portcullis/data/db';

/**
 * A readiness check for Postgres, shaped like nest-runtime's ReadinessCheck:
 * `{ provide: READINESS_CHECKS, useFactory: (db) => [databaseReadinessCheck(db)], inject: [PRISMA_CLIENT] }`.
 *
 * For the application's client, whose queries rely on row-level security (ADR 0003): every check asks whether the role
 * it connects as is a superuser or BYPASSRLS, and such a role keeps the app not ready. A `DATABASE_URL` naming such a
 * role (the database's owner, `portcullis_system`), or an `ALTER ROLE portcullis_app BYPASSRLS` while the app runs,
 * would otherwise serve every query with the tenant policies silently off. One catalog row a check: no dearer than
 * `SELECT 1`.
 */
export function databaseReadinessCheck(client: Pick<PortcullisPrismaClient, '$queryRaw'>, name = 'postgres') {
  return {
    name,
    async check(): Promise<void> {
      const [role] = await client.$queryRaw<{ privileged: boolean }[]>`
        SELECT coalesce((SELECT rolsuper OR rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user), false) AS privileged`;
      if (role?.privileged !== false) {
        throw new Error('the database role of DATABASE_URL is a superuser or bypasses row-level security: connect as the application role (portcullis_app)');
      }
    },
  };
}
