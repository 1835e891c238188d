import { Module, type DynamicModule } from '@nestjs/common';
import { AuditEmitter } from './audit-emitter';
import { CHANGE_EVENTS_OPTIONS, type ChangeEventsOptions } from './change-events.options';
import { ChangePublisher } from './change-publisher';

/** What every control-plane change tells the rest of the system: an audit event and, where relevant, a change notice. */
@Module({})
export class ChangeEventsModule {
  static forRoot(options: ChangeEventsOptions): DynamicModule {
    return {
      module: ChangeEventsModule,
      global: true,
      providers: [{ provide: CHANGE_EVENTS_OPTIONS, useValue: options }, AuditEmitter, ChangePublisher],
      exports: [AuditEmitter, ChangePublisher],
    };
  }
}
