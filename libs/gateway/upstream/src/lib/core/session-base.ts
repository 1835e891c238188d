import type { JsonRpcNotification, UpstreamConfig, UpstreamSessionState } from '@portcullis/gateway/mcp';
import type { CircuitBreaker } from './circuit-breaker';
import type { UpstreamLogger } from './logger';
import type { ServerRequestHandler } from './wire';

/** What every session gets from the connector. */
export interface SessionContext {
  readonly config: UpstreamConfig;
  readonly breaker: CircuitBreaker;
  readonly logger: UpstreamLogger;
  readonly maxMessageBytes: number;
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
