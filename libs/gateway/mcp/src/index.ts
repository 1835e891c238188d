export { Cancellation, untilAborted } from './lib/cancellation/cancellation';
export type { CancelSignal } from './lib/cancellation/cancellation';
export { classify, errorResponse, invalidMessageError, isId, JSON_RPC, refuseInexact, resultResponse } from './lib/protocol/json-rpc';
export type {
  Classified,
  JsonRpcError,
  JsonRpcErrorBody,
  JsonRpcId,
  JsonRpcMessage,
  JsonRpcNotification,
  JsonRpcRequest,
  JsonRpcResponse,
  JsonRpcResult,
} from './lib/protocol/json-rpc';
export { MAX_EVENT_ID_CHARS, SseParser, sseFrame } from './lib/protocol/sse';
export type { SseEvent } from './lib/protocol/sse';
export {
  allowsBatches,
  DEFAULT_HEADERLESS_VERSION,
  isSupportedVersion,
  LATEST_PROTOCOL_VERSION,
  negotiateVersion,
  primesStreams,
  SUPPORTED_PROTOCOL_VERSIONS,
} from './lib/protocol/versions';
export type { ProtocolVersion } from './lib/protocol/versions';
export {
  isWellFormedSessionId,
  LOG_LEVELS,
  MAX_SUBSCRIBED_URI_CHARS,
  MAX_SUBSCRIPTIONS_PER_SESSION,
  newSessionId,
  REFUSED_SUBSCRIPTION_CODES,
  sessionBelongsTo,
  subscribedUpstream,
  subscribedUpstreams,
  subscriptionCovers,
  subscriptionFits,
  withLogLevel,
  withSubscription,
} from './lib/session/session';
export type { Principal, SessionRecord } from './lib/session/session';
export { RedisSessionStore } from './lib/session/session-store';
export type { RecordChange, RecordEdit, SessionOwner, SessionStore, UpstreamState, UpstreamSwap } from './lib/session/session-store';
export { MAX_TASK_ROUTE_TTL_MS, MAX_TASKS_PER_SESSION, MemoryTaskRouteStore, RedisTaskRouteStore, TaskRouteError } from './lib/session/task-routes';
export type { StoredTaskRoute, TaskRoute, TaskRouteStore } from './lib/session/task-routes';
export { endpointOf, sameConnection, sessionElsewhere, UpstreamRpcError, UpstreamUnavailableError } from './lib/upstream/upstream';
export { maskResult, maskUpstreamError } from './lib/upstream/secret-mask';
export type {
  ClientIdentity,
  UpstreamCircuit,
  UpstreamConfig,
  UpstreamConnector,
  UpstreamRequestOptions,
  UpstreamServerInfo,
  UpstreamSession,
  UpstreamSessionState,
  UpstreamTransport,
} from './lib/upstream/upstream';
