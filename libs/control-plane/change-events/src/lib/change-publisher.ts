import { Inject, Injectable } from '@nestjs/common';
import type { ChangeChannel } from '@portcullis/contracts/api';
import type { TenantId } from '@portcullis/shared/util-ids';
import { AuditEmitter } from './audit-emitter';
import { withTimeout } from './bounded';
import { CHANGE_EVENTS_OPTIONS, type ChangeEventsOptions } from './change-events.options';

/**
 * Tells gateways that a tenant's cached data changed (`PUBLISH <channel> <tenantId>`), after the change committed.
 * Uses the audit emitter's connection (one short-timeout connection for everything a change tells Redis).
 * Bounded and best effort: gateways also reconcile periodically, so a lost notice only delays the change.
 */
@Injectable()
export class ChangePublisher {
  constructor(
    private readonly connection: AuditEmitter,
    @Inject(CHANGE_EVENTS_OPTIONS) private readonly options: ChangeEventsOptions,
  ) {}

  async publish(channel: ChangeChannel, tenantId: TenantId): Promise<void> {
    try {
      await withTimeout(this.connection.redis.publish(channel, tenantId), this.options.timeoutMs, `publishing ${channel}`);
    } catch (error) {
      this.options.logger.warn(
        { err: { message: error instanceof Error ? error.message : String(error) }, channel, tenantId },
        'change notice not published; gateways will pick it up on their next reconcile',
      );
    }
  }
}
