/**
 * One error model for every app. A code maps to exactly one HTTP status and one JSON-RPC code; adding a
 * code without a mapping is a compile error (the catalog is a `Record<ErrorCode, ...>`).
 */
export type ErrorCode =
  | 'VALIDATION_FAILED'
  | 'BAD_REQUEST'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'CONFLICT'
  | 'PRECONDITION_FAILED'
  | 'PRECONDITION_REQUIRED'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'NOT_ACCEPTABLE'
  | 'RATE_LIMITED'
  | 'UPSTREAM_UNAVAILABLE'
  | 'UPSTREAM_TIMEOUT'
  | 'DEPENDENCY_UNAVAILABLE'
  | 'INTERNAL';

export interface ErrorMapping {
  readonly http: number;
  /** JSON-RPC 2.0 error code: the reserved ones where they fit, the implementation range otherwise. */
  readonly jsonRpc: number;
  readonly title: string;
}

export const errorCatalog: Readonly<Record<ErrorCode, ErrorMapping>> = {
  VALIDATION_FAILED: { http: 400, jsonRpc: -32602, title: 'Validation failed' },
  BAD_REQUEST: { http: 400, jsonRpc: -32600, title: 'Bad request' },
  UNAUTHENTICATED: { http: 401, jsonRpc: -32001, title: 'Authentication required' },
  FORBIDDEN: { http: 403, jsonRpc: -32003, title: 'Forbidden' },
  NOT_FOUND: { http: 404, jsonRpc: -32004, title: 'Not found' },
  METHOD_NOT_ALLOWED: { http: 405, jsonRpc: -32601, title: 'Method not allowed' },
  CONFLICT: { http: 409, jsonRpc: -32009, title: 'Conflict' },
  PRECONDITION_FAILED: { http: 412, jsonRpc: -32012, title: 'Precondition failed' },
  PRECONDITION_REQUIRED: { http: 428, jsonRpc: -32028, title: 'Precondition required' },
  PAYLOAD_TOO_LARGE: { http: 413, jsonRpc: -32013, title: 'Payload too large' },
  UNSUPPORTED_MEDIA_TYPE: { http: 415, jsonRpc: -32015, title: 'Unsupported media type' },
  NOT_ACCEPTABLE: { http: 406, jsonRpc: -32006, title: 'Not acceptable' },
  RATE_LIMITED: { http: 429, jsonRpc: -32029, title: 'Rate limit exceeded' },
  UPSTREAM_UNAVAILABLE: { http: 502, jsonRpc: -32050, title: 'Upstream unavailable' },
  UPSTREAM_TIMEOUT: { http: 504, jsonRpc: -32054, title: 'Upstream timed out' },
  DEPENDENCY_UNAVAILABLE: { http: 503, jsonRpc: -32053, title: 'Service temporarily unavailable' },
  INTERNAL: { http: 500, jsonRpc: -32603, title: 'Internal error' },
};

export interface FieldIssue {
  readonly path: string;
  readonly message: string;
}

export interface AppErrorOptions {
  /** Safe, caller-facing details (never secrets, never internal addresses). */
  readonly fields?: readonly FieldIssue[];
  readonly retryAfterSeconds?: number;
  readonly cause?: unknown;
}

export class AppError extends Error {
  readonly fields: readonly FieldIssue[];
  readonly retryAfterSeconds: number | undefined;

  constructor(
    readonly code: ErrorCode,
    /** A caller-facing sentence. It is shown as-is: keep internals out of it. */
    message: string,
    options: AppErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.fields = options.fields ?? [];
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  get mapping(): ErrorMapping {
    return errorCatalog[this.code];
  }
}

export const isAppError = (value: unknown): value is AppError => value instanceof AppError;
