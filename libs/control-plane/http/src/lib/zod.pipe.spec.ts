import { AppError } from '@portcullis/shared/util-errors';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ZodPipe } from './zod.pipe';

describe('ZodPipe', () => {
  const pipe = new ZodPipe(z.object({ rules: z.array(z.object({ id: z.string() })), args: z.unknown().optional() }));
  /** What the pipe threw for `body`, or undefined. */
  const attempt = (body: unknown) => {
    try {
      pipe.transform(body);
      return undefined;
    } catch (error) {
      return error;
    }
  };

  it('refuses a NUL character in any string or key with a 400 naming its path (Postgres cannot store it)', () => {
    const inValue = attempt({ rules: [{ id: 'ok' }, { id: 'a\u0000b' }] });
    expect(inValue).toBeInstanceOf(AppError);
    expect(inValue).toMatchObject({ code: 'VALIDATION_FAILED', fields: [{ path: 'rules.1.id' }] });
    expect(attempt({ rules: [], args: { 'k\u0000': 1 } })).toMatchObject({ fields: [{ path: 'args.k\u0000' }] });
    expect(pipe.transform({ rules: [{ id: 'ok' }] })).toEqual({ rules: [{ id: 'ok' }] });
  });

  it('refuses a lone UTF-16 surrogate (JSON "\\ud800") in any string or key: Postgres cannot store it either', () => {
    const lone = JSON.parse('{"rules":[{"id":"a\\ud800b"}]}') as unknown;
    expect(attempt(lone)).toMatchObject({ code: 'VALIDATION_FAILED', fields: [{ path: 'rules.0.id', message: expect.stringContaining('lone UTF-16 surrogate') }] });
    expect(attempt({ rules: [], args: { ['k\udfff']: 1 } })).toMatchObject({ fields: [{ path: 'args.k\udfff' }] });
    // A surrogate pair (an emoji) is fine.
    expect(pipe.transform({ rules: [{ id: 'ok \u{1F600}' }] })).toEqual({ rules: [{ id: 'ok \u{1F600}' }] });
  });

  it('scans deeply nested bodies without overflowing the stack', () => {
    let deep: unknown = 'x\u0000';
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(() => pipe.transform({ rules: [], args: deep })).toThrow(AppError);
  });
});
