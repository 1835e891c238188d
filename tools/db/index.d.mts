// Types for tools/db/index.mjs, so TypeScript callers (tools/testing/global-setup.ts) are checked against it.
export declare const DEFAULT_ADMIN_URL: string;
export declare const DEFAULT_APP_URL: string;
export declare const DEFAULT_SYSTEM_URL: string;

export declare class DbToolError extends Error {}

export interface DatabaseUrlParts {
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
}

export declare function parseDatabaseUrl(url: string): DatabaseUrlParts;
export declare function withDatabaseUrl(
  url: string,
  change: { database?: string; user?: string; password?: string | null },
): string;
export declare function redactUrl(url: string): string;
/** The error to show for a failed connection to `url` (its password masked). */
export declare function unreachable(url: string, error: unknown): DbToolError;
export declare function ensureDatabase(url: string): Promise<boolean>;
export declare function dropDatabase(url: string): Promise<void>;

export interface MigrationStatus {
  hasMigrationsTable: boolean;
  applied: string[];
  pending: string[];
  edited: string[];
  failed: string[];
  missingLocally: string[];
  upToDate: boolean;
}

export declare function migrationStatus(options: {
  adminUrl: string;
  dir?: string;
}): Promise<MigrationStatus>;
export declare function applyMigrations(options: {
  adminUrl: string;
  dir?: string;
}): Promise<{ applied: string[]; createdDatabase: boolean }>;
export declare function createMigration(options: {
  adminUrl: string;
  name: string;
  dir?: string;
  now?: Date;
}): Promise<{ created: string | null; script: string | null }>;
export declare function checkDrift(options: {
  adminUrl: string;
  dir?: string;
}): Promise<{ inSync: boolean; summary: string; script: string }>;
export declare function readMigrations(dir?: string): Promise<unknown>;

export declare const START_HINTS: { readonly postgres: readonly string[]; readonly redis: readonly string[] };
export declare function canConnect(host: string, port: number, timeoutMs?: number): Promise<boolean>;
export declare function hostPort(url: string, defaultPort: number): { host: string; port: number };
