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
    // Postgres text and jsonb cannot hold NUL, nor a lone UTF-16 surrogate (JSON's "\ud800" parses to one): refuse
    // them here as the caller's mistake rather than fail in the database (a 500).
    const unstorable = unstorableText(value);
    if (unstorable !== undefined) {
      throw new AppError('VALIDATION_FAILED', 'The request is not valid.', { fields: [unstorable] });
    }
    return this.schema.parse(value);
  }
}

/** `String.prototype.isWellFormed` (Node ≥ 20; not in this TypeScript lib target): no lone surrogates. */
const isWellFormed = (value: string): boolean => (value as string & { isWellFormed(): boolean }).isWellFormed();

/** Why a string can not be stored, if it cannot. */
function textProblem(value: string): string | undefined {
  if (value.includes('\u0000')) return 'must not contain a NUL character (U+0000)';
  if (!isWellFormed(value)) return 'must not contain a lone UTF-16 surrogate (invalid Unicode)';
  return undefined;
}

/** The dotted path of the first string or key Postgres could not store, and why (iterative: bodies may nest deeply). */
function unstorableText(body: unknown): { path: string; message: string } | undefined {
  const pending: [unknown, string][] = [[body, '']];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [value, path] = next;
    if (typeof value === 'string') {
      const message = textProblem(value);
      if (message !== undefined) return { path, message };
    } else if (typeof value === 'object' && value !== null) {
      for (const [key, inner] of Object.entries(value)) {
        const at = path === '' ? key : `${path}.${key}`;
        const message = textProblem(key);
        if (message !== undefined) return { path: at, message };
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
