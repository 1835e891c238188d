export { AuditEmitter } from './lib/audit-emitter';
export type { ControlPlaneChange } from './lib/audit-emitter';
export { ChangeEventsModule } from './lib/change-events.module';
export type { ChangeEventsOptions } from './lib/change-events.options';
export { ChangePublisher } from './lib/change-publisher';
export type { StagedAuditEvent } from './lib/audit-emitter';
