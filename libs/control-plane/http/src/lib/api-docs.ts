import { applyDecorators, HttpCode } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiQuery, ApiResponse, ApiTags, type SchemaObject } from '@nestjs/swagger';
import { page, problemDetails } from '@portcullis/contracts/api';
import { z } from 'zod';

/** OpenAPI 3.0 schema of a zod schema (the same schema that validates the request or shapes the response). */
export function openApiSchema(schema: z.ZodType, io: 'input' | 'output'): SchemaObject {
  return z.toJSONSchema(schema, { target: 'openapi-3.0', io, unrepresentable: 'any' }) as SchemaObject;
}

const problem = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: openApiSchema(problemDetails, 'output') } },
});

export interface ApiRouteOptions {
  readonly summary: string;
  readonly tag: string;
  /** Success status (default 200). */
  readonly status?: number;
  readonly body?: z.ZodType;
  /** Response body schema; omit for 204. */
  readonly response?: z.ZodType;
  /** The response is a cursor page of `response` items. */
  readonly paged?: boolean;
  /** Extra error answers this route gives besides 400/401/403/404. */
  readonly conflicts?: boolean;
}

/** Documents a route from its zod contracts, and sets its success status. */
export function ApiRoute(options: ApiRouteOptions): MethodDecorator {
  const status = options.status ?? 200;
  const responseSchema = options.response
    ? openApiSchema(options.paged ? page(options.response) : options.response, 'output')
    : undefined;
  return applyDecorators(
    ApiTags(options.tag),
    ApiOperation({ summary: options.summary }),
    HttpCode(status),
    ...(options.paged
      ? [
          ApiQuery({ name: 'cursor', required: false, type: String, description: 'nextCursor of the previous page' }),
          ApiQuery({ name: 'limit', required: false, type: Number, description: '1–200, default 50' }),
        ]
      : []),
    ...(options.body ? [ApiBody({ schema: openApiSchema(options.body, 'input') })] : []),
    ApiResponse({
      status,
      description: 'Success',
      ...(responseSchema ? { content: { 'application/json': { schema: responseSchema } } } : {}),
    }),
    ApiResponse({ status: 400, ...problem('Validation failed: `errors` lists each field.') }),
    ApiResponse({ status: 401, ...problem('No token, or an expired or invalid one.') }),
    ApiResponse({ status: 403, ...problem('Your role does not allow this.') }),
    ApiResponse({ status: 404, ...problem('No such resource (or not in a tenant you belong to).') }),
    ...(options.conflicts ? [ApiResponse({ status: 409, ...problem('Conflicts with existing data.') })] : []),
  );
}

