import { QUEUES } from '@portcullis/contracts/jobs';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { AuditJobProducer } from './audit-emitter';

export interface AuditQueueProducerOptions {
  readonly redisUrl: string;
  /** BullMQ key prefix; the audit worker must use the same one (its QUEUE_PREFIX). */
  readonly prefix: string;
  readonly connectionName?: string;
}

export interface AuditQueueProducer extends AuditJobProducer {
  close(): Promise<void>;
}

/**
 * A BullMQ producer for the audit queue that fails fast while Redis is unreachable: no offline queue (a command
 * issued while disconnected rejects at once instead of waiting for a reconnect) and one retry per command. The
 * emitter turns those failures into spooling.
 */
export function createAuditQueueProducer(options: AuditQueueProducerOptions): AuditQueueProducer {
  const connection = new Redis(options.redisUrl, {
    connectionName: options.connectionName ?? 'audit-emitter',
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.max(0, attempt - 1), 1_000),
  });
  connection.on('error', () => undefined);
  const queue = new Queue(QUEUES.audit, { connection, prefix: options.prefix });
  queue.on('error', () => undefined);
  return {
    addBulk: (jobs) => queue.addBulk(jobs),
    async close() {
      await queue.close().catch(() => undefined);
      connection.disconnect();
    },
  };
}
