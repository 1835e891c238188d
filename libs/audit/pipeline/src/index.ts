export { AUDIT_EVENT_STORE } from './lib/audit-event.store';
export type { AuditEventStore } from './lib/audit-event.store';
export { AuditIngestProcessor } from './lib/audit-ingest.processor';
export { AuditPipelineModule } from './lib/audit-pipeline.module';
export type { AuditPipelineOptions } from './lib/audit-pipeline.module';
export { PrismaAuditEventStore } from './lib/prisma-audit-event.store';
