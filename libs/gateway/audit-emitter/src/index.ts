export { createAuditEmitter } from './lib/audit-emitter';
export type {
  AuditBatchJob,
  AuditEmitter,
  AuditEmitterLogger,
  AuditEmitterOptions,
  AuditEmitterStats,
  AuditEventJob,
  AuditJob,
  AuditJobFormat,
  AuditJobProducer,
  EmitResult,
} from './lib/audit-emitter';
export { FileAuditSpool, MemoryAuditSpool } from './lib/audit-spool';
export type { AuditSpool } from './lib/audit-spool';
export { createAuditQueueProducer } from './lib/bullmq-producer';
export type { AuditQueueProducer, AuditQueueProducerOptions } from './lib/bullmq-producer';
export { auditHooks } from './lib/audit-hooks';
export type { AuditHooks, AuditHooksOptions, AuditNote } from './lib/audit-hooks';
