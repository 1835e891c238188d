import { AppError } from '@portcullis/shared/util-errors';
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { AUDIT_JOB_RETRIES, jobIdFor, QUEUES, type AuditEventV1 } from '@portcullis/contracts/jobs';
import { withTenant, type PortcullisPrismaClient, type TenantTransaction } from '@portcullis/data/db';
import { PRISMA_CLIENT } from '@portcullis/data/db-nest';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { newId, type TenantId, type UserId } from '@portcullis/shared/util-ids';
import type { Logger } from '@portcullis/shared/util-logger';
import { redactSecrets } from '@portcullis/shared/util-redact';
import { Queue } from 'bullmq';
import { withTimeout } from './bounded';
import { CHANGE_EVENTS_OPTIONS, type ChangeEventsOptions } from './change-events.options';

const JOB = 'audit.event.ingest';
/** Retried by BullMQ should the worker's own bookkeeping fail (`AUDIT_JOB_RETRIES`); finished jobs kept a while. */
const JOB_OPTIONS = { ...AUDIT_JOB_RETRIES, removeOnComplete: 1_000 } as const;

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

/** An audit event written to the outbox in its change's transaction; `publish` it once the transaction commits. */
export interface StagedAuditEvent {
  readonly event: AuditEventV1;
}

/**
 * Records control-plane audit events with a transactional outbox (ADR 0010, decision 8): `stage` writes the event in
 * the transaction of the change it records, so the two commit or fail together; `publish`, after the commit, enqueues
 * it for the audit worker (`audit.event.ingest`, job id = event id, so a retried enqueue is a no-op) and deletes its
 * outbox row. A request waits at most `timeoutMs` for Redis. When that fails, or the process dies before it, the row
 * stays, and the audit worker stores it from the outbox (storing an event id twice is a no-op).
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

  constructor(
    @Inject(CHANGE_EVENTS_OPTIONS) private readonly options: ChangeEventsOptions,
    @Inject(PRISMA_CLIENT) private readonly db: PortcullisPrismaClient,
  ) {
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

  /** Writes the change's event to the outbox in `tx`, the transaction making the change (its tenant's). */
  async stage(tx: TenantTransaction, change: ControlPlaneChange): Promise<StagedAuditEvent> {
    const event = this.toEvent(change);
    await tx.auditOutbox.create({ data: { id: event.eventId, tenantId: event.tenantId, event: JSON.stringify(event) } });
    return { event };
  }

  /** `stage` for many events of one change (each key a member's removal revokes), in one statement. */
  async stageMany(tx: TenantTransaction, changes: readonly ControlPlaneChange[]): Promise<StagedAuditEvent[]> {
    const events = changes.map((change) => this.toEvent(change));
    if (events.length > 0) {
      await tx.auditOutbox.createMany({ data: events.map((event) => ({ id: event.eventId, tenantId: event.tenantId, event: JSON.stringify(event) })) });
    }
    return events.map((event) => ({ event }));
  }

  /**
   * After the change's commit: enqueues the staged events (one `addBulk`) and deletes their outbox rows (one statement).
   * Never throws: a failure is logged (without before/after) and the rows stay for the audit worker to store.
   */
  async publishMany(staged: readonly StagedAuditEvent[]): Promise<void> {
    const events = staged.map(({ event }) => event);
    const first = events[0];
    if (first === undefined) return;
    const described = { tenantId: first.tenantId, events: events.length, eventId: first.eventId, action: first.method };
    try {
      await withTimeout(
        this.queue.addBulk(events.map((event) => ({ name: JOB, data: event, opts: { jobId: jobIdFor(JOB, event), ...JOB_OPTIONS } }))),
        this.options.timeoutMs,
        'enqueueing the audit events',
      );
    } catch (error) {
      this.logger.warn({ err: { message: messageOf(error) }, ...described }, 'audit events not enqueued: kept in the outbox for the audit worker');
      return;
    }
    // Enqueued: the rows have done their job. Left behind (the database failing just now), the worker stores the events
    // again, which is a no-op.
    const ids = events.map((event) => event.eventId);
    await withTenant(this.db, first.tenantId as TenantId, (tx) => tx.auditOutbox.deleteMany({ where: { tenantId: first.tenantId, id: { in: ids } } })).catch((error: unknown) =>
      this.logger.warn({ err: { message: messageOf(error) }, ...described }, 'audit outbox rows not deleted after enqueueing; the audit worker will skip them as stored'),
    );
  }

  /** `publishMany` for one staged event. */
  publish(staged: StagedAuditEvent): Promise<void> {
    return this.publishMany([staged]);
  }

  /**
   * Records a change that has no transaction of its own (reading audit data out: exports, downloads): stages it in a
   * transaction of its own, then publishes it. A failure to stage is logged and swallowed, unless `required`: then it
   * is a 503, and the caller does not hand the data out. Once staged, the event is recorded (the outbox is durable).
   */
  async emit(change: ControlPlaneChange, options: { readonly required?: boolean } = {}): Promise<void> {
    let staged: StagedAuditEvent;
    try {
      // Bounded as every change's transaction is (the database's own limits), not by the Redis write timeout.
      staged = await withTenant(this.db, change.tenantId, (tx) => this.stage(tx, change));
    } catch (error) {
      this.logger.error(
        { err: { message: messageOf(error) }, tenantId: change.tenantId, action: change.action, targetType: change.target.type, targetId: change.target.id },
        'audit event not recorded',
      );
      if (options.required) {
        throw new AppError('DEPENDENCY_UNAVAILABLE', 'This could not be recorded in the audit trail right now, so it was not done; try again shortly.');
      }
      return;
    }
    await this.publish(staged);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.queue.close().catch(() => undefined);
    await this.connection.quit().catch(() => this.connection.disconnect());
  }
}

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));
