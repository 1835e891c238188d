export { AppError, errorCatalog, isAppError } from './lib/app-error';
export type { AppErrorOptions, ErrorCode, ErrorMapping, FieldIssue } from './lib/app-error';
export { fieldIssues, normalizeError, toJsonRpcError, toProblemDetails } from './lib/render';
export type { JsonRpcErrorObject, ProblemDetails, RenderedError } from './lib/render';
export { isStackExhausted } from './lib/stack';
export { isLostDatabaseConnection } from './lib/lost-connection';
