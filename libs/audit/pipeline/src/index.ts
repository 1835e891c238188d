export {
  AuditIngestWorker,
  AUDIT_BATCHER,
  AUDIT_WORKER_SETTINGS,
  retryDelayMs,
} from './lib/audit-ingest.worker';
export type { AuditWorkerSettings } from './lib/audit-ingest.worker';
export { AUDIT_EVENT_STORE, AuditPipelineModule } from './lib/audit-pipeline.module';
export type { AuditPipelineOptions } from './lib/audit-pipeline.module';
export { AUDIT_TASKS_DEPS, AuditTasksWorker } from './lib/audit-tasks.worker';
export type { AuditTasksDeps } from './lib/audit-tasks.worker';
