import type { AuditIngestWorker, AuditTasksWorker } from '@portcullis/audit/pipeline';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

/** What the worker's metrics read off it when scraped. */
export type WorkerMetricsSource = Pick<AuditIngestWorker, 'stats' | 'jobCounts'>;
/** The signed anchors' part (absent or null: the worker signs none, and the series are not served). */
export type AnchorMetricsSource = Pick<AuditTasksWorker, 'anchorStats'>;

/**
 * Prometheus metrics of the audit worker, served on its probe port (`GET /metrics`): the audit queue's backlog by
 * state and the dead-letter queue's size (is the worker keeping up? is anything waiting for an operator?), events
 * stored and jobs retried or dead-lettered since start, and Node's process metrics. Everything is read when scraped.
 */
export function createWorkerMetrics(
  source: WorkerMetricsSource,
  anchors?: AnchorMetricsSource,
): { readonly contentType: string; collect(): Promise<string> } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'portcullis_audit_worker_' });
  new Gauge({
    name: 'portcullis_audit_worker_queue_jobs',
    help: 'Jobs in the audit queue by state (waiting, active, delayed, failed), and dead letters waiting for an operator (queue "dead_letter").',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect() {
      const { audit, deadLetters } = await source.jobCounts();
      for (const [state, count] of Object.entries(audit)) this.set({ queue: 'audit', state }, count);
      this.set({ queue: 'dead_letter', state: 'waiting' }, deadLetters);
    },
  });
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  counter('portcullis_audit_worker_events_stored_total', 'Audit events stored (or found stored already) since start.', () => source.stats.eventsStored);
  counter('portcullis_audit_worker_jobs_retried_total', 'Audit jobs put back for a later attempt since start.', () => source.stats.jobsRetried);
  counter('portcullis_audit_worker_jobs_dead_lettered_total', 'Audit jobs (or the rest of a batch) moved to the dead-letter queue since start.', () => source.stats.jobsDeadLettered);
  if (anchors?.anchorStats) {
    const stats = () => anchors.anchorStats ?? { signed: 0, refused: {} as Record<string, number>, lastSweepAt: 0 };
    counter('portcullis_audit_worker_anchors_signed_total', 'Audit chain heads this worker signed and stored since start.', () => stats().signed);
    new Counter({
      name: 'portcullis_audit_worker_anchor_refusals_total',
      help: 'Chain heads left unsigned since start because the chain contradicts what was signed (alert on any): head_mismatch, anchor_mismatch, signed_head_lost.',
      labelNames: ['problem'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const [problem, count] of Object.entries(stats().refused)) this.inc({ problem }, count);
      },
    });
    new Gauge({
      name: 'portcullis_audit_worker_anchor_sweep_timestamp_seconds',
      help: 'When the last signing sweep completed (Unix time; 0 before the first). Events newer than this rest on the chain alone.',
      registers: [registry],
      collect() {
        this.set(stats().lastSweepAt / 1_000);
      },
    });
  }
  return { contentType: registry.contentType, collect: () => registry.metrics() };
}
