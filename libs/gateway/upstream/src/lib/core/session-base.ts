import type { JsonRpcNotification, UpstreamConfig, UpstreamSessionState } from '@portcullis/gateway/mcp';
import type { CircuitBreaker } from './circuit-breaker';
import type { UpstreamLogger } from './logger';
import type { ServerRequestHandler } from './wire';
import type { HeldAnswers } from '../http/held-answers';

/** What every session gets from the connector. */
export interface SessionContext {
  readonly config: UpstreamConfig;
  readonly breaker: CircuitBreaker;
  readonly logger: UpstreamLogger;
  readonly maxMessageBytes: number;
  /** The replica's count of answer bytes held while they arrive (Streamable HTTP calls). */
  readonly heldAnswers?: HeldAnswers;
  /** The connector keeps open sessions so `shutdown()` can end them. */
  readonly registry: Set<DisposableSession>;
}

/** A session the connector can tear down at shutdown without telling the upstream (no DELETE). */
export interface DisposableSession {
  dispose(): void;
}

export type NotificationHandler = (notification: JsonRpcNotification) => void;
export type { ServerRequestHandler };

export const placeholderState = (protocolVersion: string): UpstreamSessionState => ({
  sessionId: null,
  protocolVersion,
});

/** Log fields naming an upstream without anything secret (no URL, headers, command or env). */
export const logFields = (config: UpstreamConfig): Record<string, unknown> => ({
  upstreamId: config.id,
  tenantId: config.tenantId,
  upstream: config.name,
  transport: config.transport,
});

/**
 * Hands an upstream's notification to the gateway. A handler that throws (a message nested too deeply to serialise for
 * another replica, say) costs that one notification, logged: called from a socket's or a pipe's data listener, the
 * throw would otherwise take the replica down (HTTP) or kill a process other sessions share (stdio).
 */
export function notifyQuietly(
  handler: NotificationHandler | undefined,
  notification: JsonRpcNotification,
  ctx: Pick<SessionContext, 'config' | 'logger'>,
): void {
  if (handler === undefined) return;
  try {
    handler(notification);
  } catch (error) {
    ctx.logger.warn({ ...logFields(ctx.config), err: error }, 'notification handler threw');
  }
}
