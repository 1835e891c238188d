import {
  Inject,
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import type { AuditAnchorSigner } from '@portcullis/audit/chain';
import {
  anchorAuditChains,
  AUDIT_TASK_JOBS,
  AUDIT_TASKS_QUEUE,
  auditExportJob,
  drainAuditOutbox,
  runAuditExport,
  expireAuditExports,
  runRetention,
  type AuditEventStore,
  type AnchorRefusal,
  type SignedHeads,
} from '@portcullis/audit/core';
import type { PortcullisPrismaClient, SystemPrismaClient } from '@portcullis/data/db';
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { AUDIT_WORKER_SETTINGS, type AuditWorkerSettings } from './audit-ingest.worker';
import { JobsInProgress } from './jobs-in-progress';

export const AUDIT_TASKS_DEPS = Symbol('AUDIT_TASKS_DEPS');

const REFUSAL_TEXT: Record<AnchorRefusal, string> = {
  head_mismatch: 'the head names a hash its event does not have',
  anchor_mismatch: 'the newest anchor names a hash its event no longer has',
  signed_head_lost: 'a head this worker signed is no longer in the chain or among the anchors',
};

export interface AuditTasksDeps {
  readonly db: PortcullisPrismaClient;
  /** Retention runs cross-tenant as portcullis_system; without it retention is off (logged at start). */
  readonly systemDb: SystemPrismaClient | null;
  readonly store: AuditEventStore;
  readonly exportDir: string;
  /** How long an export's file stays downloadable (removed by the retention job after that). */
  readonly exportTtlMs: number;
  readonly retentionEveryMs: number;
  /**
   * Control-plane events left in the outbox (needs `systemDb`): looked for every `everyMs`, taken once `graceMs` old.
   * Absent: not looked for.
   */
  readonly outbox?: { readonly everyMs: number; readonly graceMs: number };
  /**
   * Signed anchors (needs `systemDb`): every `everyMs`, each tenant chain head that moved since its last anchor is
   * signed with `signer` and stored. Absent: chains are not anchored (logged at start).
   */
  readonly anchors?: { readonly signer: AuditAnchorSigner; readonly everyMs: number };
}

/**
 * The audit worker's background tasks on their own queue (`portcullis-audit-tasks`, one at a time): exports
 * requested through the API, and retention as a BullMQ job scheduler (repeatable; one schedule however many worker
 * replicas upsert it, and a run is one job, so two replicas never prune the same tenant at once).
 */
@Injectable()
export class AuditTasksWorker implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('AuditTasksWorker');
  private worker: Worker | undefined;
  private readonly inProgress = new JobsInProgress();
  private queue: Queue | undefined;
  private outboxTimer: NodeJS.Timeout | undefined;
  private outboxDrain: Promise<void> | undefined;
  private anchorTimer: NodeJS.Timeout | undefined;
  private anchoring: Promise<void> | undefined;
  /** The heads this worker signed: a chain contradicting one of them is not signed again (`anchorAuditChains`). */
  private readonly signedHeads: SignedHeads = new Map();
  private readonly anchorCounters = {
    signed: 0,
    refused: { head_mismatch: 0, anchor_mismatch: 0, signed_head_lost: 0 } as Record<AnchorRefusal, number>,
    /** When a sweep last completed (ms since the epoch; 0: never). */
    lastSweepAt: 0,
  };
  private stopping = false;

  constructor(
    @Inject(AUDIT_WORKER_SETTINGS) private readonly settings: AuditWorkerSettings,
    @Inject(AUDIT_TASKS_DEPS) private readonly deps: AuditTasksDeps,
  ) {}

  onModuleInit(): void {
    const { connection, prefix } = this.settings;
    this.queue = new Queue(AUDIT_TASKS_QUEUE, { connection, prefix });
    this.queue.on('error', (error) => this.logger.warn(`tasks queue: ${error.message}`));
    if (this.deps.systemDb) {
      // Not awaited: boot must not wait for Redis (readiness reports it); the command goes through on reconnect.
      this.queue
        .upsertJobScheduler(
          'audit-retention',
          { every: this.deps.retentionEveryMs },
          {
            name: AUDIT_TASK_JOBS.retention,
            data: { v: 1 },
            opts: { removeOnComplete: 100, removeOnFail: 100 },
          },
        )
        .catch((error: Error) => this.logger.error(`could not schedule audit retention: ${error.message}`));
    } else {
      this.logger.warn('DATABASE_SYSTEM_URL not set: audit retention is not scheduled, and control-plane events left in the outbox are not stored');
    }
    const outbox = this.deps.outbox;
    if (this.deps.systemDb && outbox) {
      // A plain timer, not a queue job: this is the way in for events whose control plane could not reach Redis.
      this.outboxTimer = setInterval(() => {
        this.outboxDrain ??= this.drainOutbox(outbox.graceMs).finally(() => (this.outboxDrain = undefined));
      }, outbox.everyMs);
      this.outboxTimer.unref();
    }
    const anchors = this.deps.anchors;
    if (this.deps.systemDb && anchors) {
      // A plain timer on every replica: anchoring a head twice is harmless (the second is not stored).
      this.anchorTimer = setInterval(() => {
        this.anchoring ??= this.anchorChains().finally(() => (this.anchoring = undefined));
      }, anchors.everyMs);
      this.anchorTimer.unref();
      this.logger.log(`audit chain heads are signed every ${anchors.everyMs} ms with key ${anchors.signer.keyId}`);
    } else if (!anchors) {
      this.logger.warn('AUDIT_SIGNING_KEY_FILE not set: audit chain heads are not signed, so the chain proves consistency, not authenticity');
    } else {
      this.logger.warn('DATABASE_SYSTEM_URL not set: audit chain heads are not signed');
    }
    this.worker = new Worker(AUDIT_TASKS_QUEUE, (job) => this.inProgress.track(() => this.process(job)), {
      connection,
      prefix,
      concurrency: 1,
      lockDuration: 120_000,
    });
    this.worker.on('error', (error) => this.logger.warn(`tasks worker: ${error.message}`));
    // Why a task failed stays here, in the operator's log: a failed export tells its tenant only a fixed sentence.
    this.worker.on('failed', (job, error) => this.logger.error(`audit task ${job?.name ?? '?'} ${job?.id ?? '?'} failed: ${error.message}`));
  }

  /** Stores what the outbox holds past `graceMs`, a transaction of rows at a time, until it holds none. Never throws. */
  async drainOutbox(graceMs: number): Promise<void> {
    const systemDb = this.deps.systemDb;
    if (!systemDb) return;
    const skipped: string[] = [];
    try {
      // One transaction of rows at a time until none is left, or the worker stops (the rest waits for the next one).
      while (!this.stopping) {
        const { stored, invalid } = await drainAuditOutbox(systemDb, this.deps.store, { olderThanMs: graceMs, exclude: skipped });
        if (stored > 0) this.logger.log(`stored ${stored} control-plane audit event(s) from the outbox`);
        if (invalid.length > 0) this.logger.error(`audit outbox rows whose event is invalid or refused by the store, left in place: ${invalid.join(', ')}`);
        skipped.push(...invalid);
        if (stored === 0 && invalid.length === 0) return;
      }
    } catch (error) {
      // The rows stay; the next tick tries again.
      this.logger.warn(`audit outbox not drained: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /**
   * Signs and stores every tenant chain head that moved since its last anchor. Each anchor goes to the log as well: a
   * copy outside the database, which whoever can rewrite the database cannot take back. Never throws.
   */
  async anchorChains(): Promise<void> {
    const systemDb = this.deps.systemDb;
    const anchors = this.deps.anchors;
    if (!systemDb || !anchors) return;
    try {
      const { anchored, refused } = await anchorAuditChains(systemDb, anchors.signer, { signed: this.signedHeads });
      this.anchorCounters.signed += anchored.length;
      for (const r of refused) this.anchorCounters.refused[r.problem] += 1;
      this.anchorCounters.lastSweepAt = Date.now();
      for (const a of anchored) {
        this.logger.log(`audit anchor tenant=${a.tenantId} seq=${a.seq} hash=${a.hash} signedAt=${a.signedAt} key=${a.keyId} signature=${a.signature}`);
      }
      for (const r of refused) {
        this.logger.error(`audit chain head of tenant ${r.tenantId} (seq ${r.seq}) not signed: ${REFUSAL_TEXT[r.problem]}; run audit:verify`);
      }
    } catch (error) {
      this.logger.warn(`audit chains not anchored: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /**
   * Signed anchors since start (metrics): how many this worker stored, heads it refused to sign by reason (each one a
   * chain that contradicts what was signed: for an alert), and when its last sweep completed. Null: it signs none.
   */
  get anchorStats(): { readonly signed: number; readonly refused: Readonly<Record<AnchorRefusal, number>>; readonly lastSweepAt: number } | null {
    if (!this.deps.systemDb || !this.deps.anchors) return null;
    return { signed: this.anchorCounters.signed, refused: { ...this.anchorCounters.refused }, lastSweepAt: this.anchorCounters.lastSweepAt };
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopping = true;
    clearInterval(this.outboxTimer);
    clearInterval(this.anchorTimer);
    await this.outboxDrain;
    await this.anchoring;
    await this.inProgress.close(this.worker);
    await this.queue?.close();
  }

  async process(job: Job): Promise<unknown> {
    switch (job.name) {
      case AUDIT_TASK_JOBS.export: {
        const parsed = auditExportJob.safeParse(job.data);
        if (!parsed.success) throw new UnrecoverableError('invalid audit.export.run payload');
        return runAuditExport(this.deps.db, this.deps.store, parsed.data, this.deps.exportDir, this.deps.exportTtlMs);
      }
      case AUDIT_TASK_JOBS.retention: {
        if (!this.deps.systemDb) throw new UnrecoverableError('retention needs DATABASE_SYSTEM_URL');
        // Each on its own: a failing retention must not keep expired export files on disk, nor a failing file removal
        // hold back retention (the compliance deletion). The job fails (and is retried) if either did.
        let exportsExpired = 0;
        let expiryError: unknown;
        try {
          exportsExpired = (await expireAuditExports(this.deps.systemDb, this.deps.exportDir)).expired;
          if (exportsExpired > 0) this.logger.log(`removed the files of ${exportsExpired} expired export(s)`);
        } catch (error) {
          expiryError = error;
          this.logger.error(`expired audit exports not removed: ${error instanceof Error ? error.message : String(error)}`);
        }
        const signer = this.deps.anchors?.signer;
        const result = await runRetention(this.deps.systemDb, signer ? { signer } : {});
        for (const problem of result.refused) {
          this.logger.error(
            `retention left tenant ${problem.tenantId}'s audit events from seq ${problem.seq} in place: they do not verify (${problem.problem}); run audit:verify`,
          );
        }
        if (result.deleted > 0)
          this.logger.log(
            `retention deleted ${result.deleted} audit event(s) in ${result.tenants} tenant(s)`,
          );
        if (expiryError !== undefined) throw expiryError;
        return { tenants: result.tenants, deleted: result.deleted, exportsExpired };
      }
      default:
        throw new UnrecoverableError(`unknown job ${job.name}`);
    }
  }
}
