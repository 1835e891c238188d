import type { PortcullisPrismaClient } from '@portcullis/data/db';

/**
 * A readiness check for Postgres (`SELECT 1`), shaped like nest-runtime's ReadinessCheck:
 * `{ provide: READINESS_CHECKS, useFactory: (db) => [databaseReadinessCheck(db)], inject: [PRISMA_CLIENT] }`.
 */
export function databaseReadinessCheck(client: Pick<PortcullisPrismaClient, '$queryRaw'>, name = 'postgres') {
  return {
    name,
    async check(): Promise<void> {
      await client.$queryRaw`SELECT 1`;
    },
  };
}
