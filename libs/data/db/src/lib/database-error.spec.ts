import { describe, expect, it } from 'vitest';
import { databaseErrorSummary } from './database-error';

function prismaError(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

describe('databaseErrorSummary', () => {
  it("is Prisma's own sentence, without the invocation before it", () => {
    const error = prismaError('PrismaClientKnownRequestError', "\nInvalid `prisma.tenant.findUnique()` invocation:\n\n\nCan't reach database server at 127.0.0.1:1");
    expect(databaseErrorSummary(error)).toBe("Can't reach database server at 127.0.0.1:1");
  });

  it("is undefined for an error that is not the Prisma client's", () => {
    expect(databaseErrorSummary(new TypeError("Cannot read properties of undefined (reading 'sep')"))).toBeUndefined();
    expect(databaseErrorSummary('boom')).toBeUndefined();
  });
});
