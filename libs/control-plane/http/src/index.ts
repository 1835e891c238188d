export { ApiRoute, openApiSchema } from './lib/api-docs';
export type { ApiRouteOptions } from './lib/api-docs';
export { decodeCursor, encodeCursor, pageRequest, toPage } from './lib/cursor';
export type { Page, PageRequest } from './lib/cursor';
export { IdParamPipe, ZodPipe } from './lib/zod.pipe';
export { isUniqueViolation } from './lib/db-errors';
export { parseIfMatch } from './lib/if-match';
