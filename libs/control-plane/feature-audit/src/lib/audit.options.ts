import type { KeyObject } from 'node:crypto';

export const AUDIT_API_OPTIONS = Symbol('AUDIT_API_OPTIONS');

export interface AuditApiOptions {
  /** Where the audit worker writes export files (AUDIT_EXPORT_DIR; the same directory, shared with the worker). */
  readonly exportDir: string;
  /** The BullMQ connection and key prefix of the audit-tasks queue (REDIS_URL, QUEUE_PREFIX). */
  readonly redisUrl: string;
  readonly queuePrefix: string;
  /** How long a request waits for Redis to take the export job. */
  readonly enqueueTimeoutMs: number;
  /** Most rows a synchronous `events.csv` / `events.jsonl` export may hold; more needs an export job. */
  readonly syncExportMaxRows: number;
  /** The audit worker's public keys by key id (AUDIT_VERIFY_KEYS_FILE): `verify` then checks the signed anchors too. */
  readonly verifyKeys?: ReadonlyMap<string, KeyObject>;
}
