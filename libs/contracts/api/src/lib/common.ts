import { z } from 'zod';

/** RFC 9457 problem details as every control-plane error is sent. */
export const problemDetails = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  code: z.string(),
  traceId: z.string(),
  instance: z.string().optional(),
  errorId: z.string().optional(),
  /** One entry per invalid field; policy compile errors also name the rule (`ruleId`, null for non-rule paths). */
  errors: z.array(z.object({ path: z.string(), message: z.string(), ruleId: z.string().nullable().optional() })).optional(),
  retryAfterSeconds: z.number().optional(),
});
export type ProblemDetailsResponse = z.infer<typeof problemDetails>;

/** Cursor pagination: an opaque cursor and a bounded page size. */
export const pageQuery = z.object({
  cursor: z.string().max(512).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});
export type PageQuery = z.infer<typeof pageQuery>;

export const page = <T extends z.ZodType>(item: T) =>
  z.object({ items: z.array(item), nextCursor: z.string().nullable() });

/** A tenant slug: the `<tenant>` in `/t/<tenant>/mcp`. Lowercase letters, digits, inner hyphens. */
export const tenantSlug = z
  .string()
  .min(2)
  .max(63)
  .regex(/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/, 'lowercase letters, digits and inner hyphens only');

export const readinessReport = z.object({
  status: z.enum(['ok', 'unavailable']),
  checks: z.record(z.string(), z.enum(['ok', 'unavailable', 'timeout'])),
});
