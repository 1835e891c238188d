import { AppError } from '@portcullis/shared/util-errors';
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { jobIdFor, QUEUES, type AuditEventV1 } from '@portcullis/contracts/jobs';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { newId, type TenantId, type UserId } from '@portcullis/shared/util-ids';
import type { Logger } from '@portcullis/shared/util-logger';
import { redactSecrets } from '@portcullis/shared/util-redact';
import { Queue } from 'bullmq';
import { withTimeout } from './bounded';
import { CHANGE_EVENTS_OPTIONS, type ChangeEventsOptions } from './change-events.options';

const JOB = 'audit.event.ingest';

/** One control-plane change, as services describe it. */
export interface ControlPlaneChange {
  readonly tenantId: TenantId;
  readonly actor: { readonly userId: UserId; readonly traceId: string; readonly traceparent: string | null };
  /** Dotted `<resource>.<verb>`: `upstream.create`, `member.role_change`... */
  readonly action: string;
  readonly target: { readonly type: string; readonly id: string };
  /** API representations before and after (null for create / delete); redacted again here. */
  readonly before: unknown;
  readonly after: unknown;
  /** The policy snapshot version this change produced or activated, if it affected enforcement. */
  readonly snapshotVersion?: number | null;
}

/**
 * Enqueues control-plane audit events for the audit worker (`audit.event.ingest`, job id = event id, so a retried
 * enqueue is a no-op). A request waits at most `timeoutMs` for Redis; on failure it logs (without before/after) and
 * carries on, because the change itself is already committed.
 */
@Injectable()
export class AuditEmitter implements OnApplicationShutdown {
  private readonly connection: Redis;

  /** The connection this emitter owns; ChangePublisher publishes through it too. */
  get redis(): Redis {
    return this.connection;
  }

  private readonly queue: Queue;
  private readonly logger: Logger;

  constructor(@Inject(CHANGE_EVENTS_OPTIONS) private readonly options: ChangeEventsOptions) {
    this.logger = options.logger;
    this.connection = createRedisClient({ url: options.redisUrl, connectionName: 'control-plane-audit', maxRetriesPerRequest: 1 });
    this.queue = new Queue(QUEUES.audit, { connection: this.connection, prefix: options.queuePrefix });
    this.queue.on('error', (error) => this.logger.warn({ err: { message: error.message } }, 'audit queue error'));
  }

  /** Builds the event; exposed for tests and for callers that want the id. */
  toEvent(change: ControlPlaneChange, now: Date = new Date()): AuditEventV1 {
    return {
      v: 1,
      eventId: newId(),
      tenantId: change.tenantId,
      occurredAt: now.toISOString(),
      kind: 'control_plane',
      method: change.action,
      actorUserId: change.actor.userId,
      agentClientId: null,
      apiKeyId: null,
      mcpSessionId: null,
      upstreamId: change.target.type === 'upstream' ? change.target.id : null,
      tool: null,
      targetType: change.target.type,
      targetId: change.target.id,
      decision: null,
      reason: null,
      snapshotVersion: change.snapshotVersion ?? null,
      approvalId: null,
      latencyMs: null,
      outcome: 'ok',
      errorCode: null,
      arguments: redactSecrets({ before: change.before ?? null, after: change.after ?? null }) as AuditEventV1['arguments'],
      traceId: change.actor.traceId,
      traceparent: change.actor.traceparent,
    };
  }

  /**
   * Enqueues the change's audit event. A failure is logged and swallowed: the change is made already. With `required`
   * (reading audit data out: exports, downloads) it is a 503 instead, and the caller does not hand the data out.
   */
  async emit(change: ControlPlaneChange, options: { readonly required?: boolean } = {}): Promise<void> {
    const event = this.toEvent(change);
    const jobId = jobIdFor(JOB, event);
    try {
      await withTimeout(
        this.queue.add(JOB, event, { jobId, attempts: 5, backoff: { type: 'exponential', delay: 1_000 }, removeOnComplete: 1_000 }),
        this.options.timeoutMs,
        'enqueueing the audit event',
      );
    } catch (error) {
      this.logger.error(
        {
          err: { message: error instanceof Error ? error.message : String(error) },
          eventId: event.eventId,
          tenantId: event.tenantId,
          action: event.method,
          targetType: event.targetType,
          targetId: event.targetId,
        },
        'audit event not enqueued',
      );
      if (options.required) {
        throw new AppError('DEPENDENCY_UNAVAILABLE', 'This could not be recorded in the audit trail right now, so it was not done; try again shortly.');
      }
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.queue.close().catch(() => undefined);
    await this.connection.quit().catch(() => this.connection.disconnect());
  }
}
