import { AppError } from '@portcullis/shared/util-errors';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ZodPipe } from './zod.pipe';

describe('ZodPipe', () => {
  const pipe = new ZodPipe(z.object({ rules: z.array(z.object({ id: z.string() })), args: z.unknown().optional() }));

  it('refuses a NUL character in any string or key with a 400 naming its path (Postgres cannot store it)', () => {
    const attempt = (body: unknown) => {
      try {
        pipe.transform(body);
        return undefined;
      } catch (error) {
        return error;
      }
    };
    const inValue = attempt({ rules: [{ id: 'ok' }, { id: 'a\u0000b' }] });
    expect(inValue).toBeInstanceOf(AppError);
    expect(inValue).toMatchObject({ code: 'VALIDATION_FAILED', fields: [{ path: 'rules.1.id' }] });
    expect(attempt({ rules: [], args: { 'k\u0000': 1 } })).toMatchObject({ fields: [{ path: 'args.k\u0000' }] });
    expect(pipe.transform({ rules: [{ id: 'ok' }] })).toEqual({ rules: [{ id: 'ok' }] });
  });

  it('scans deeply nested bodies without overflowing the stack', () => {
    let deep: unknown = 'x\u0000';
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(() => pipe.transform({ rules: [], args: deep })).toThrow(AppError);
  });
});
