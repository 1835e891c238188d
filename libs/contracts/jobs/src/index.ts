export { auditDecision, auditEventV1, auditKind, auditOutcome } from './lib/audit-event';
export type { AuditEventV1 } from './lib/audit-event';
export {
  assertHandlersCover,
  isJobName,
  jobIdFor,
  jobNamesForQueue,
  JOBS,
  parseJobPayload,
  QUEUES,
} from './lib/jobs';
export type { JobHandlers, JobName, JobPayload, QueueName } from './lib/jobs';
