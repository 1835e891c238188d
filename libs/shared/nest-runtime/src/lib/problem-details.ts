import { HttpException } from '@nestjs/common';
import { AppError, fieldIssues, normalizeError, toProblemDetails, type ErrorCode } from '@portcullis/shared/util-errors';
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

/** Maps anything thrown while handling a request to an AppError the caller may see. */
export function toAppError(error: unknown): { appError: AppError; errorId?: string } {
  if (error instanceof AppError) return { appError: error };
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
  const traceId = traceIdFrom(request.headers);
  const { appError, errorId } = toAppError(error);
  const problem = toProblemDetails(appError, {
    traceId,
    instance: request.url.split('?')[0] ?? request.url,
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
