import type { Logger } from '@portcullis/shared/util-logger';

export const CHANGE_EVENTS_OPTIONS = Symbol('CHANGE_EVENTS_OPTIONS');

export interface ChangeEventsOptions {
  readonly redisUrl: string;
  /** BullMQ key prefix shared with the audit worker (QUEUE_PREFIX). */
  readonly queuePrefix: string;
  /** Longest a request waits for Redis to take an audit job or a change notice. */
  readonly timeoutMs: number;
  readonly logger: Logger;
}
