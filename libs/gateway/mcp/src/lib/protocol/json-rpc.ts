/** JSON-RPC 2.0 as MCP uses it: ids are strings or numbers (never null in requests). */
export type JsonRpcId = string | number;

export interface JsonRpcRequest {
  readonly jsonrpc: '2.0';
  readonly id: JsonRpcId;
  readonly method: string;
  readonly params?: Record<string, unknown>;
}
export interface JsonRpcNotification {
  readonly jsonrpc: '2.0';
  readonly method: string;
  readonly params?: Record<string, unknown>;
}
export interface JsonRpcResult {
  readonly jsonrpc: '2.0';
  readonly id: JsonRpcId;
  readonly result: Record<string, unknown>;
}
export interface JsonRpcErrorBody {
  readonly code: number;
  readonly message: string;
  readonly data?: unknown;
}
export interface JsonRpcError {
  readonly jsonrpc: '2.0';
  readonly id: JsonRpcId | null;
  readonly error: JsonRpcErrorBody;
}
export type JsonRpcResponse = JsonRpcResult | JsonRpcError;
export type JsonRpcMessage = JsonRpcRequest | JsonRpcNotification | JsonRpcResponse;

export const JSON_RPC = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
} as const;

export type Classified =
  | { readonly kind: 'request'; readonly message: JsonRpcRequest }
  | { readonly kind: 'notification'; readonly message: JsonRpcNotification }
  | { readonly kind: 'response'; readonly message: JsonRpcResponse }
  /**
   * `code`: Invalid Request (-32600) unless it says otherwise. `answer`: the message has no method, so it can only have
   * been meant as the response to request `id` (a transport then ends that request with the protocol error at once).
   */
  | { readonly kind: 'invalid'; readonly id: JsonRpcId | null; readonly reason: string; readonly code?: number; readonly answer?: true };

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * A JSON-RPC id the gateway takes: a string of at most 512 characters, or an integer within ±(2^53 − 1). MCP allows
 * strings and integers only (JSON-RPC's fractional ids are not MCP's, and the SDK's peers refuse them); an integer past
 * that range was rounded by the parse, so its answer would carry another id than the agent sent (a client keeping
 * int64 ids could not match it), and two of them could collide.
 */
export const isId = (value: unknown): value is JsonRpcId => (typeof value === 'string' && value.length <= 512) || Number.isSafeInteger(value);

/**
 * Sorts one parsed JSON value into request / notification / response, or says why it is not a valid
 * JSON-RPC 2.0 message. Cheap: shape checks only; method-specific params are the handler's business.
 */
export function classify(value: unknown): Classified {
  if (!isObject(value)) return { kind: 'invalid', id: null, reason: 'a JSON-RPC message must be an object' };
  const id = isId(value['id']) ? value['id'] : null;
  const method = value['method'];
  // Without "2.0", only a message holding a result or an error is taken for an answer (a stray line of a server's own
  // logging with an `id` is not).
  if (value['jsonrpc'] !== '2.0') {
    return { kind: 'invalid', id, reason: 'jsonrpc must be "2.0"', ...(method === undefined && ('result' in value || 'error' in value) ? { answer: true as const } : {}) };
  }
  if (method !== undefined) {
    if (typeof method !== 'string' || method.length === 0 || method.length > 256) {
      return { kind: 'invalid', id, reason: 'method must be a non-empty string' };
    }
    const params = value['params'];
    if (params !== undefined && !isObject(params)) {
      return { kind: 'invalid', id, reason: 'params must be an object' };
    }
    if (!('id' in value)) return { kind: 'notification', message: value as unknown as JsonRpcNotification };
    if (!isId(value['id'])) return { kind: 'invalid', id: null, reason: 'id must be a string or an integer within ±(2^53 − 1)' };
    return { kind: 'request', message: value as unknown as JsonRpcRequest };
  }
  if ('result' in value || 'error' in value) {
    if ('result' in value && 'error' in value) return { kind: 'invalid', id, reason: 'a response has result or error, not both', answer: true };
    if (!isId(value['id']) && !('error' in value && value['id'] === null)) {
      return { kind: 'invalid', id: null, reason: 'a response needs the id of its request' };
    }
    if ('error' in value) {
      const error = value['error'];
      if (!isObject(error) || typeof error['code'] !== 'number' || typeof error['message'] !== 'string') {
        return { kind: 'invalid', id, reason: 'error must have a numeric code and a message', answer: true };
      }
    } else if (!isObject(value['result'])) {
      return { kind: 'invalid', id, reason: 'result must be an object', answer: true };
    }
    return { kind: 'response', message: value as unknown as JsonRpcResponse };
  }
  return { kind: 'invalid', id, reason: 'not a request, notification or response', answer: true };
}

export function errorResponse(id: JsonRpcId | null, code: number, message: string, data?: unknown): JsonRpcError {
  return { jsonrpc: '2.0', id, error: data === undefined ? { code, message } : { code, message, data } };
}

export function resultResponse(id: JsonRpcId, result: Record<string, unknown>): JsonRpcResult {
  return { jsonrpc: '2.0', id, result };
}

/**
 * A message that holds a number its parse changed (`problem`, see `inexactNumbersByElement`): a request or a
 * notification is refused with Invalid params (the request by its id); a response, an answer an upstream awaits, is
 * passed on as an error instead, so the call waiting for it ends now rather than at its timeout.
 */
export function refuseInexact(item: Classified, problem: string | undefined): Classified {
  if (problem === undefined || item.kind === 'invalid') return item;
  if (item.kind === 'response') {
    return { kind: 'response', message: errorResponse(item.message.id, JSON_RPC.INVALID_PARAMS, `The client's answer could not be passed on: ${problem}`) };
  }
  return { kind: 'invalid', id: item.kind === 'request' ? item.message.id : null, reason: problem, code: JSON_RPC.INVALID_PARAMS };
}

/** The error an invalid message is answered with: its code, and the reason after the code's name. */
export function invalidMessageError(item: { readonly code?: number; readonly reason: string }): { readonly code: number; readonly message: string } {
  const code = item.code ?? JSON_RPC.INVALID_REQUEST;
  return { code, message: `${code === JSON_RPC.INVALID_PARAMS ? 'Invalid params' : 'Invalid Request'}: ${item.reason}` };
}
