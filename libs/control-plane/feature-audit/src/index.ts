export { AuditModule } from './lib/audit.module';
export { AuditService, MAX_VERIFIES, MAX_VERIFIES_PER_TENANT } from './lib/audit.service';
export type { AuditApiOptions } from './lib/audit.options';
export {
  auditFilterSql,
  countAuditEventsUpTo,
  decodeAuditCursor,
  encodeAuditCursor,
  queryAuditEvents,
} from './lib/audit-events.query';
export type { AuditCursor, AuditEventQueryRow, AuditEventsPage } from './lib/audit-events.query';
export { loadVerifyKeys } from './lib/verify-keys';
