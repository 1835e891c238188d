import { Prisma } from '@portcullis/data/db';

/** A unique constraint refused the write (two requests raced past a service's own check). */
export function isUniqueViolation(error: unknown): boolean {
  return error instanceof Prisma.PrismaClientKnownRequestError && error.code === 'P2002';
}
