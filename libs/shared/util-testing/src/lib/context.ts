import { inject } from 'vitest';

// What tools/testing/global-setup.ts provides to the int and e2e projects.
declare module 'vitest' {
  export interface ProvidedContext {
    /** The run's database as `portcullis_app` (row-level security applies). */
    databaseUrl: string;
    /** The run's database as `portcullis_system` (BYPASSRLS): fixtures and cross-tenant assertions. */
    systemDatabaseUrl: string;
    /** The run's database as its owner/superuser. */
    adminDatabaseUrl: string;
    redisUrl: string;
  }
}

export interface TestContext {
  readonly databaseUrl: string;
  readonly systemDatabaseUrl: string;
  readonly adminDatabaseUrl: string;
  readonly redisUrl: string;
}

/** The URLs of this test run's services (int and e2e projects only). */
export function testContext(): TestContext {
  return {
    databaseUrl: inject('databaseUrl'),
    systemDatabaseUrl: inject('systemDatabaseUrl'),
    adminDatabaseUrl: inject('adminDatabaseUrl'),
    redisUrl: inject('redisUrl'),
  };
}
