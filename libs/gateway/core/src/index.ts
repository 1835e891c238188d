export { ApiKeyAuthenticator } from './lib/auth/authenticator';
export type { Authenticator, AuthOutcome } from './lib/auth/authenticator';
export { ApiKeyIndex } from './lib/auth/api-key-index';
export type { ApiKeyEntry } from './lib/auth/api-key-index';
export { TenantIndex } from './lib/auth/tenant-index';
export type { TenantEntry } from './lib/auth/tenant-index';
export { mergeServerCapabilities, relayableClientCapabilities } from './lib/dispatch/capabilities';
export { BROADCAST_CHANNEL, createRedisReplicaBus, replicaChannel } from './lib/dispatch/redis-bus';
export { GatewayRequestError, SessionEngine, TASK_RESULT_MAX_WAIT_MS } from './lib/dispatch/session-engine';
export type { BusMessage, EngineDeps, EngineOptions, ReplicaBus } from './lib/dispatch/session-engine';
export { registerMcpRoutes } from './lib/http/mcp-routes';
export { GATEWAY_RPC } from './lib/http/gateway-error';
export type { McpRoutes, McpRoutesOptions } from './lib/http/mcp-routes';
export {
  acceptsEventStream,
  acceptsPostResponses,
  bearerToken,
  isJsonContentType,
  originProblem,
  requestProtocolVersion,
} from './lib/http/request-checks';
export type { OriginPolicy } from './lib/http/request-checks';
export { decodeCursor, encodeCursor } from './lib/listing/cursor';
export { deepFreeze, isDeepFrozen } from './lib/listing/immutable';
export type { ListKind, PendingPage } from './lib/listing/cursor';
export {
  assertValidSeparator,
  checkPrefixes,
  exposeName,
  isValidExposedName,
  MAX_NAME_LENGTH,
  NamingConfigError,
  prefixProblem,
  splitExposedName,
} from './lib/naming/tool-names';
export { createRefresher } from './lib/registry/refresher';
export type { Refresher } from './lib/registry/refresher';
export { UpstreamRegistry } from './lib/registry/upstream-registry';
export type { TenantUpstreams } from './lib/registry/upstream-registry';
export { composeHooks, refusalAfter } from './lib/hooks/request-hooks';
export { credentialsAfterApproval } from './lib/hooks/credentials-after-approval';
export type { Admission, ApprovalGate, RequestHooks, RequestInfo, RequestOutcome, TargetKind, TaskTool } from './lib/hooks/request-hooks';
export { NO_STREAM } from './lib/dispatch/sinks';
export { eventId, newStreamId, parseEventId, RedisReplayLog } from './lib/dispatch/replay-log';
export type { ReplayEntry, ReplayLog, ReplayLogOptions, StreamKind, StreamLog } from './lib/dispatch/replay-log';
export type { MessageSink } from './lib/dispatch/sinks';
