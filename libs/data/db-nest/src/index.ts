export { DbModule, PRISMA_CLIENT, SYSTEM_PRISMA_CLIENT } from './lib/db.module';
export type { DbModuleOptions, PortcullisPrismaClient, SystemPrismaClient } from './lib/db.module';
export { databaseReadinessCheck } from './lib/readiness';
