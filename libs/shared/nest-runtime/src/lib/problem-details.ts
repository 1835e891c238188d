import { HttpException } from '@nestjs/common';
import { AppError, fieldIssues, isLostDatabaseConnection, normalizeError, toProblemDetails, type ErrorCode } from '@portcullis/shared/util-errors';
import type { Logger } from '@portcullis/shared/util-logger';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ZodError } from 'zod';
import { traceIdFrom } from './trace';

const STATUS_TO_CODE: Readonly<Record<number, ErrorCode>> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  406: 'NOT_ACCEPTABLE',
  409: 'CONFLICT',
  412: 'PRECONDITION_FAILED',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  428: 'PRECONDITION_REQUIRED',
  429: 'RATE_LIMITED',
  503: 'DEPENDENCY_UNAVAILABLE',
};

/** Caller-facing sentences for Fastify's own request errors (its messages can name internals). */
const FASTIFY_MESSAGES: Readonly<Record<string, string>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'The request body is larger than this endpoint accepts.',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'This endpoint does not accept that Content-Type.',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'The Content-Length header does not match the body.',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'The request body is empty but Content-Type says JSON.',
  FST_ERR_CTP_INVALID_JSON_BODY: 'The request body is not valid JSON.',
};

/**
 * Database errors a request can meet through no fault of its own code, as the caller should see them: the database
 * away or saturated (503, try again), or another request that changed the same rows first (409). Prisma's known
 * request errors, told by name and code (this library does not depend on the database one); the message never
 * carries Prisma's (it names tables, columns and the query). Services map what they expect themselves; this is what
 * is left when a race gets past their checks.
 */
function databaseError(error: unknown): AppError | undefined {
  // The connection lost under the request, or none to be had: pg's own errors, with no code, as the adapter passes them.
  if (isLostDatabaseConnection(error)) {
    return new AppError('DEPENDENCY_UNAVAILABLE', 'The database is not available right now; try again shortly.', { retryAfterSeconds: 2, cause: error });
  }
  const known = error as { name?: unknown; code?: unknown } | null;
  if (typeof known !== 'object' || known === null || typeof known.code !== 'string') return undefined;
  if (known.name !== 'PrismaClientKnownRequestError' && known.name !== 'PrismaClientInitializationError') return undefined;
  const code = known.code;
  // P1xxx: the connection (unreachable, timed out, closed); P2024: no pooled connection in time; P2028: a transaction
  // that could not start or ran past its limit; P2037: the server's connections used up (Postgres 53300, as the pg
  // driver adapter names it); P2039 with a Postgres code the adapter names no further: out of resources (53xxx), the
  // server shutting down or starting (57P01–57P03, a failover or restart) or the connection failing (08xxx).
  if (code.startsWith('P1') || code === 'P2024' || code === 'P2028' || code === 'P2037' || (code === 'P2039' && transientPostgresCode(error))) {
    return new AppError('DEPENDENCY_UNAVAILABLE', 'The database is not available right now; try again shortly.', { retryAfterSeconds: 2, cause: error });
  }
  if (code === 'P2002') return new AppError('CONFLICT', 'This conflicts with something another request created meanwhile; reload and try again.', { cause: error });
  if (code === 'P2003') return new AppError('CONFLICT', 'Something this refers to was removed meanwhile; reload and try again.', { cause: error });
  if (code === 'P2025') return new AppError('NOT_FOUND', 'No such resource.', { cause: error });
  // P2034, or a deadlock or serialisation failure Postgres broke (40P01, 40001) however the adapter names it: two
  // changes of the same rows at once (another control-plane process's), one of them undone. Nothing the caller did wrong.
  if (code === 'P2034' || concurrencyPostgresCode(error)) return new AppError('CONFLICT', 'This conflicted with a change made at the same time; try again.', { cause: error });
  return undefined;
}

/** The Postgres SQLSTATE behind a known request error: a driver adapter's (P2039 and others), or a raw query's (P2010). */
function postgresCode(error: unknown): string | undefined {
  const meta = (error as { meta?: { code?: unknown; driverAdapterError?: { cause?: { originalCode?: unknown } } } }).meta;
  const code = meta?.driverAdapterError?.cause?.originalCode ?? meta?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A deadlock Postgres broke (40P01), or a serialisation failure (40001). */
const concurrencyPostgresCode = (error: unknown): boolean => {
  const code = postgresCode(error);
  return code === '40P01' || code === '40001';
};

/** The Postgres SQLSTATE behind a driver adapter's error (P2039) says the server is away or saturated, not the query wrong. */
function transientPostgresCode(error: unknown): boolean {
  const sqlState = postgresCode(error);
  if (sqlState === undefined) return false;
  // 57014: a statement cancelled by the statement timeout (a server too busy to answer in time).
  return sqlState.startsWith('53') || sqlState.startsWith('08') || ['57P01', '57P02', '57P03', '57014'].includes(sqlState);
}

/** Maps anything thrown while handling a request to an AppError the caller may see. */
export function toAppError(error: unknown): { appError: AppError; errorId?: string } {
  if (error instanceof AppError) return { appError: error };
  const database = databaseError(error);
  if (database) return { appError: database };
  if (error instanceof ZodError) {
    return {
      appError: new AppError('VALIDATION_FAILED', 'The request is not valid.', { fields: fieldIssues(error.issues) }),
    };
  }
  if (error instanceof HttpException) {
    const status = error.getStatus();
    const code = STATUS_TO_CODE[status];
    if (code) return { appError: new AppError(code, status === 404 ? 'No such resource.' : error.message) };
  }
  const fastifyError = error as Partial<FastifyError> | null;
  if (fastifyError && typeof fastifyError === 'object' && typeof fastifyError.statusCode === 'number') {
    const code = STATUS_TO_CODE[fastifyError.statusCode];
    if (code && fastifyError.statusCode < 500) {
      const isJsonSyntax = error instanceof SyntaxError || fastifyError.code === 'FST_ERR_CTP_INVALID_JSON_BODY';
      const message =
        (fastifyError.code && FASTIFY_MESSAGES[fastifyError.code]) ??
        (isJsonSyntax ? FASTIFY_MESSAGES['FST_ERR_CTP_INVALID_JSON_BODY'] : undefined) ??
        'The request could not be processed.';
      return { appError: new AppError(code, message ?? 'The request could not be processed.') };
    }
  }
  return normalizeError(error);
}

export function sendProblem(
  request: FastifyRequest,
  reply: FastifyReply,
  error: unknown,
  logger: Logger,
): FastifyReply {
  return writeProblem(request, reply, error, logger, request.url.split('?')[0] ?? request.url);
}

/**
 * Fastify's `frameworkErrors`: what its router refuses before any route, hook or Nest filter runs, answered as
 * problem+json like every other error. Without `instance`: the path is what was wrong, and is not echoed back.
 * - a malformed percent-escape in the path (`/tenants/%zz`, FST_ERR_BAD_URL): 400;
 * - a path parameter longer than the router's `maxParamLength` (100; FST_ERR_MAX_PARAM_LENGTH): 404, not Fastify's
 *   414. Every parameter is an id, slug or other name far shorter than that (a UUID is 36 characters, a slug at most
 *   63), so no resource has such a name, and a malformed id is answered 404 everywhere else; the URI itself is not
 *   too long for the server, which is what 414 would say.
 * Anything else (an async route constraint failing; there are none) is an internal error, logged with its error id.
 */
export function sendRouterProblem(error: Partial<FastifyError>, request: FastifyRequest, reply: FastifyReply, logger: Logger): FastifyReply {
  const refused =
    error.code === 'FST_ERR_BAD_URL'
      ? new AppError('BAD_REQUEST', 'The request path is not a valid URL: it has a malformed percent-escape.')
      : error.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? new AppError('NOT_FOUND', 'No such resource.')
        : error;
  return writeProblem(request, reply, refused, logger, undefined);
}

function writeProblem(request: FastifyRequest, reply: FastifyReply, error: unknown, logger: Logger, instance: string | undefined): FastifyReply {
  const traceId = traceIdFrom(request.headers);
  const { appError, errorId } = toAppError(error);
  const problem = toProblemDetails(appError, {
    traceId,
    ...(instance === undefined ? {} : { instance }),
    ...(errorId === undefined ? {} : { errorId }),
  });
  if (errorId !== undefined) {
    logger.error({ err: error, errorId, traceId, method: request.method, url: request.url }, 'unhandled error');
  } else if (problem.status >= 500) {
    logger.warn({ code: problem.code, traceId, url: request.url }, appError.message);
  }
  if (appError.retryAfterSeconds !== undefined) reply.header('retry-after', String(appError.retryAfterSeconds));
  return reply.status(problem.status).header('content-type', 'application/problem+json').send(problem);
}
