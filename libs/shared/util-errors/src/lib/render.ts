import { randomUUID } from 'node:crypto';
import { AppError, errorCatalog, type FieldIssue } from './app-error';

/** RFC 9457 problem details, as the control plane sends them (`application/problem+json`). */
export interface ProblemDetails {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly code: string;
  readonly traceId: string;
  readonly instance?: string;
  readonly errorId?: string;
  readonly errors?: readonly FieldIssue[];
  readonly retryAfterSeconds?: number;
}

export interface JsonRpcErrorObject {
  readonly code: number;
  readonly message: string;
  readonly data: {
    readonly code: string;
    readonly traceId: string;
    readonly errorId?: string;
    readonly errors?: readonly FieldIssue[];
    readonly retryAfterSeconds?: number;
  };
}

const PROBLEM_TYPE_BASE = 'https://portcullis.dev/problems/';

export interface RenderedError {
  /** What the caller may see. */
  readonly appError: AppError;
  /** Set when the error was not an AppError: log it with the original under this id. */
  readonly errorId?: string;
}

/** Anything thrown becomes an AppError; unknown errors become INTERNAL with an error id to log. */
export function normalizeError(error: unknown): RenderedError {
  if (error instanceof AppError) return { appError: error };
  const errorId = randomUUID();
  return {
    appError: new AppError('INTERNAL', `An unexpected error occurred (error id ${errorId}).`, { cause: error }),
    errorId,
  };
}

export function toProblemDetails(
  error: AppError,
  context: { traceId: string; instance?: string; errorId?: string },
): ProblemDetails {
  const mapping = errorCatalog[error.code];
  return {
    type: `${PROBLEM_TYPE_BASE}${error.code.toLowerCase().replace(/_/g, '-')}`,
    title: mapping.title,
    status: mapping.http,
    detail: error.message,
    code: error.code,
    traceId: context.traceId,
    ...(context.instance === undefined ? {} : { instance: context.instance }),
    ...(context.errorId === undefined ? {} : { errorId: context.errorId }),
    ...(error.fields.length > 0 ? { errors: error.fields } : {}),
    ...(error.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: error.retryAfterSeconds }),
  };
}

export function toJsonRpcError(error: AppError, context: { traceId: string; errorId?: string }): JsonRpcErrorObject {
  const mapping = errorCatalog[error.code];
  return {
    code: mapping.jsonRpc,
    message: error.message,
    data: {
      code: error.code,
      traceId: context.traceId,
      ...(context.errorId === undefined ? {} : { errorId: context.errorId }),
      ...(error.fields.length > 0 ? { errors: error.fields } : {}),
      ...(error.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: error.retryAfterSeconds }),
    },
  };
}

/** Turns zod-style issues into field issues (paths joined with dots). */
export function fieldIssues(issues: readonly { path: readonly PropertyKey[]; message: string }[]): FieldIssue[] {
  return issues.map((issue) => ({
    path: issue.path.map((segment) => String(segment)).join('.') || '(body)',
    message: issue.message,
  }));
}
