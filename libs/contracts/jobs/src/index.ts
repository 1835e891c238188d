export { AUDIT_JSON_MAX_DEPTH, auditDecision, auditEventV1, auditKind, auditOutcome } from './lib/audit-event';
export type { AuditEventV1 } from './lib/audit-event';
export {
  AUDIT_BATCH_MAX_EVENTS,
  AUDIT_EVENT_FIELDS,
  auditBatchJobId,
  auditEventBatch,
  auditEventBatchV1,
  auditEventBatchV2,
  encodeAuditEventBatchV2,
  ARGUMENTS_TOO_DEEP,
  PART_TOO_DEEP,
  parseAuditEvent,
  parseAuditEventBatch,
} from './lib/audit-event-batch';
export type {
  AuditEventBatchV1,
  AuditEventBatchV2,
  InvalidAuditEvent,
  ParsedAuditEventBatch,
} from './lib/audit-event-batch';
export {
  assertHandlersCover,
  AUDIT_JOB_RETRIES,
  isJobName,
  jobIdFor,
  jobNamesForQueue,
  JOBS,
  parseJobPayload,
  QUEUES,
} from './lib/jobs';
export type { JobHandlers, JobName, JobPayload, QueueName } from './lib/jobs';
