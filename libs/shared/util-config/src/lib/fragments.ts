import { z } from 'zod';

/** Reusable field schemas for app configs. Each app composes its own schema from these. */
export const port = (fallback: number) => z.coerce.number().int().min(1).max(65535).default(fallback);

export const nodeEnv = z.enum(['development', 'test', 'production']).default('development');

export const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info');

const urlWithProtocols = (protocols: readonly string[], what: string) =>
  z
    .string({ error: `${what} is required` })
    .trim()
    .min(1, `${what} is required`)
    .refine((value) => {
      try {
        return protocols.includes(new URL(value).protocol);
      } catch {
        return false;
      }
    }, `must be a ${protocols.map((p) => p.replace(':', '://')).join(' or ')} URL`);

export const postgresUrl = urlWithProtocols(['postgres:', 'postgresql:'], 'a PostgreSQL URL');
export const redisUrl = urlWithProtocols(['redis:', 'rediss:'], 'a Redis URL');
export const httpUrl = urlWithProtocols(['http:', 'https:'], 'an HTTP URL');

/** Milliseconds, given as a positive integer. */
export const durationMs = (fallback: number) => z.coerce.number().int().positive().default(fallback);

/** A comma-separated list, trimmed, without empties. */
export const csv = z
  .string()
  .default('')
  .transform((value) =>
    value
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item.length > 0),
  );

/** A secret of at least `minLength` characters (never echoed in errors). */
export const secret = (minLength: number) =>
  z.string({ error: 'is required' }).min(minLength, `must be at least ${minLength} characters`);

export const booleanFlag = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0'])
    .default(fallback ? 'true' : 'false')
    .transform((value) => value === 'true' || value === '1');
