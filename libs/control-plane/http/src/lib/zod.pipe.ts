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
    return this.schema.parse(value);
  }
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
