import { errorResponse, type JsonRpcError, type JsonRpcId } from '@portcullis/gateway/mcp';

/**
 * An error answered on the HTTP layer: status, JSON-RPC code and a caller-facing message (never
 * internals). Rendered with `data.traceId` so an operator can find the request's log lines.
 */
export class GatewayHttpError extends Error {
  constructor(
    readonly status: number,
    readonly rpcCode: number,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'GatewayHttpError';
  }
}

/** JSON-RPC codes the gateway uses beyond the reserved ones (implementation-defined range). */
export const GATEWAY_RPC = {
  UNAUTHENTICATED: -32001,
  FORBIDDEN: -32003,
  NOT_FOUND: -32004,
  NOT_ACCEPTABLE: -32006,
  PAYLOAD_TOO_LARGE: -32013,
  UNSUPPORTED_MEDIA_TYPE: -32015,
  /** A rate limit is exhausted: `data` names the limit, its scope and `retryAfterSeconds` (HTTP 429 where possible). */
  RATE_LIMITED: -32029,
  /** The tenant's policy denies the call (or no policy snapshot is in force: fail safe). */
  POLICY_DENIED: -32030,
  /** The policy requires a person's approval and this gateway has no way to obtain one. */
  APPROVAL_UNAVAILABLE: -32031,
  UPSTREAM_UNAVAILABLE: -32050,
  UPSTREAM_TIMEOUT: -32054,
  UNAVAILABLE: -32053,
} as const;

/**
 * The gateway's own rate-limit refusals. An upstream's error passes through with its code unchanged, and -32029 is in
 * the range any server may use with a meaning of its own: only a refusal the gateway made answers HTTP 429.
 */
const ownRateLimitRefusals = new WeakSet<JsonRpcError>();

export function rpcError(id: JsonRpcId | null, code: number, message: string, traceId: string, extra?: Record<string, unknown>): JsonRpcError {
  const response = errorResponse(id, code, message, { traceId, ...extra });
  if (code === GATEWAY_RPC.RATE_LIMITED) ownRateLimitRefusals.add(response);
  return response;
}

/** Whether `response` is a rate-limit refusal the gateway made itself (`rpcError`), not an upstream's error. */
export const isOwnRateLimitRefusal = (response: JsonRpcError): boolean => ownRateLimitRefusals.has(response);
