import { Injectable, type PipeTransform } from '@nestjs/common';
import { AppError } from '@portcullis/shared/util-errors';
import { isUuid } from '@portcullis/shared/util-ids';
import type { z } from 'zod';

/**
 * Validates a body or query with a zod schema from libs/contracts/api. A ZodError reaches the problem+json filter,
 * which answers 400 VALIDATION_FAILED listing every failing field.
 */
@Injectable()
export class ZodPipe<S extends z.ZodType> implements PipeTransform<unknown, z.output<S>> {
  constructor(private readonly schema: S) {}

  transform(value: unknown): z.output<S> {
    // Postgres text and jsonb cannot hold NUL: refuse it here as the caller's mistake rather than fail in the database.
    const nulAt = nulPath(value);
    if (nulAt !== undefined) {
      throw new AppError('VALIDATION_FAILED', 'The request is not valid.', {
        fields: [{ path: nulAt, message: 'must not contain a NUL character (U+0000)' }],
      });
    }
    return this.schema.parse(value);
  }
}

/** The dotted path of a string or key holding U+0000, if any (iterative: bodies may nest deeply). */
function nulPath(body: unknown): string | undefined {
  const pending: [unknown, string][] = [[body, '']];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [value, path] = next;
    if (typeof value === 'string') {
      if (value.includes('\u0000')) return path;
    } else if (typeof value === 'object' && value !== null) {
      for (const [key, inner] of Object.entries(value)) {
        const at = path === '' ? key : `${path}.${key}`;
        if (key.includes('\u0000')) return at;
        pending.push([inner, at]);
      }
    }
  }
  return undefined;
}

/**
 * A resource id from the path. Not a UUID means it cannot exist: 404, the same answer as an id of another tenant.
 * Returns the plain string; the repository's tenant filter is what makes it safe to use.
 */
@Injectable()
export class IdParamPipe implements PipeTransform<string, string> {
  transform(value: string): string {
    if (!isUuid(value)) throw new AppError('NOT_FOUND', 'No such resource.');
    return value.toLowerCase();
  }
}
