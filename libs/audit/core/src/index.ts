export { anchorAuditChains, anchorsBetween, checkArchivedAnchors, highestAnchoredSeq, latestAnchor, parseArchivedAnchors } from './lib/audit-anchors';
export type { AnchorChainsOptions, AnchorChainsResult, AnchorRefusal, ArchivedAnchorsReport, SignedHeads } from './lib/audit-anchors';
export { AuditBatcher } from './lib/audit-batcher';
export type { AuditBatcherOptions, AuditEventFailure, AuditSubmitResult } from './lib/audit-batcher';
export { AUDIT_DEAD_JOB, AUDIT_DLQ, AuditDlq, deadLetterJobId } from './lib/audit-dlq';
export type { AuditDlqOptions, DeadLetter, DeadLetterEntry } from './lib/audit-dlq';
export { AuditStoreError } from './lib/audit-event.store';
export { drainAuditOutbox } from './lib/audit-outbox';
export type { DrainAuditOutboxOptions, DrainAuditOutboxResult } from './lib/audit-outbox';
export type { AuditEventStore, AuditInsertResult } from './lib/audit-event.store';
export { AUDIT_EVENT_COLUMNS, chainedFields, linkFromRow } from './lib/audit-row';
export type { AuditEventRow } from './lib/audit-row';
export { isTransientStoreError, PostgresAuditEventStore } from './lib/postgres-audit-event.store';
export { sampleAuditEvent } from './lib/testing';
export { asDatabaseOwner, rewriteChainFrom } from './lib/tamper.testing';
export { AUDIT_CLI_USAGE, runAuditCli } from './lib/audit-cli';
export type { AuditCliEnv, AuditCliIo } from './lib/audit-cli';
export { CHAIN_HEAD_SQL, checkpointProblem, verifyTenantChain } from './lib/verify-tenant-chain';
export type { AnchorsChecked, ChainHeadRow, ChainProblem, TenantChainReport, VerifyTenantChainOptions } from './lib/verify-tenant-chain';
export { CsvRowParser, encodeCell, encodeRow } from './lib/audit-csv';
export { auditExportFilters, CSV_COLUMNS, ExportCancelledError, ExportInterruptedError, exportAuditEvents, verifyExportFile } from './lib/audit-export';
export type {
  AuditExportFilters,
  AuditExportFormat,
  AuditExportManifest,
  ExportAuditEventsOptions,
  ExportResult,
  ExportVerdict,
  VerifyExportOptions,
} from './lib/audit-export';
export {
  AUDIT_TASK_JOBS,
  AUDIT_TASKS_QUEUE,
  auditExportJob,
  DEFAULT_EXPORT_TTL_MS,
  derivedUuid,
  expireAuditExports,
  MAX_EXPORTS_IN_PROGRESS,
  MAX_KEPT_EXPORTS,
  requestAuditExport,
  TooManyExportsError,
  runAuditExport,
  runRetention,
} from './lib/audit-tasks';
export type {
  AuditExportJob,
  RequestAuditExportInput,
  RetentionOptions,
  RetentionResult,
} from './lib/audit-tasks';
