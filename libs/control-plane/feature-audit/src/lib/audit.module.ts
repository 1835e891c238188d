import { Module, type DynamicModule } from '@nestjs/common';
import { AuditTasksQueue } from './audit-tasks.queue';
import { AuditController } from './audit.controller';
import { AUDIT_API_OPTIONS, type AuditApiOptions } from './audit.options';
import { AuditRepository } from './audit.repository';
import { AuditService } from './audit.service';

/** The audit API: event query, chain verification, exports (auditor, owner, admin). */
@Module({})
export class AuditModule {
  static forRoot(options: AuditApiOptions): DynamicModule {
    return {
      module: AuditModule,
      controllers: [AuditController],
      providers: [{ provide: AUDIT_API_OPTIONS, useValue: options }, AuditRepository, AuditService, AuditTasksQueue],
    };
  }
}
