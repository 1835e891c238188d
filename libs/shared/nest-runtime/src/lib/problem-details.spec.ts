import { describe, expect, it } from 'vitest';
import { toAppError } from './problem-details';

/** An error as Prisma throws it (its class lives in the database library; it is told by name and code). */
const prismaError = (code: string, name = 'PrismaClientKnownRequestError') =>
  Object.assign(new Error(`Invalid \`db.upstream.create()\` invocation: table "upstreams" column "tenant_id" (${code})`), { name, code });

describe('toAppError with database errors', () => {
  it.each([
    ['P1001', 503, 'DEPENDENCY_UNAVAILABLE'],
    ['P1017', 503, 'DEPENDENCY_UNAVAILABLE'],
    ['P2024', 503, 'DEPENDENCY_UNAVAILABLE'],
    ['P2028', 503, 'DEPENDENCY_UNAVAILABLE'],
    ['P2037', 503, 'DEPENDENCY_UNAVAILABLE'],
    ['P2002', 409, 'CONFLICT'],
    ['P2003', 409, 'CONFLICT'],
    ['P2034', 409, 'CONFLICT'],
    ['P2025', 404, 'NOT_FOUND'],
  ])('answers %s as %i, saying nothing of the query', (code, status, appCode) => {
    const { appError, errorId } = toAppError(prismaError(code));
    expect(appError.code).toBe(appCode);
    expect(appError.mapping.http).toBe(status);
    expect(errorId).toBeUndefined();
    expect(appError.message).not.toMatch(/upstreams|tenant_id|invocation/);
    if (status === 503) expect(appError.retryAfterSeconds).toBeGreaterThan(0);
  });

  it.each([
    ['53300', 'DEPENDENCY_UNAVAILABLE'],
    ['57P01', 'DEPENDENCY_UNAVAILABLE'],
    ['57P03', 'DEPENDENCY_UNAVAILABLE'],
    ['57014', 'DEPENDENCY_UNAVAILABLE'],
    ['08006', 'DEPENDENCY_UNAVAILABLE'],
    ['42P01', 'INTERNAL'],
    ['40P01', 'CONFLICT'],
    ['40001', 'CONFLICT'],
    [undefined, 'INTERNAL'],
  ])('answers a driver adapter error (P2039) with Postgres code %s as %s: a server away or saturated is 503, a query fault is not', (sqlState, appCode) => {
    const error = Object.assign(prismaError('P2039'), { meta: { driverAdapterError: { cause: { kind: 'postgres', originalCode: sqlState } } } });
    const { appError } = toAppError(error);
    expect(appError.code).toBe(appCode);
    if (appCode === 'DEPENDENCY_UNAVAILABLE') expect(appError.retryAfterSeconds).toBeGreaterThan(0);
  });

  it('answers a deadlock or serialisation failure Postgres broke under a raw query (P2010) as a conflict to retry, not a 500', () => {
    for (const sqlState of ['40P01', '40001']) {
      expect(toAppError(Object.assign(prismaError('P2010'), { meta: { code: sqlState, message: 'deadlock detected' } })).appError.code).toBe('CONFLICT');
    }
    expect(toAppError(Object.assign(prismaError('P2010'), { meta: { code: '42P01' } })).appError.code).toBe('INTERNAL');
  });

  it('answers a client that cannot start (no database) as 503, and anything else it does not know as an internal error', () => {
    expect(toAppError(prismaError('P1000', 'PrismaClientInitializationError')).appError.code).toBe('DEPENDENCY_UNAVAILABLE');
    const unknown = toAppError(prismaError('P2010'));
    expect(unknown.appError.code).toBe('INTERNAL');
    expect(unknown.errorId).toBeDefined();
    expect(toAppError(Object.assign(new Error('x'), { code: 'P1001' })).appError.code).toBe('INTERNAL');
  });

  it("answers the pg driver's own errors for a connection lost under the request, or none to be had, as 503", () => {
    for (const message of ['Connection terminated unexpectedly', 'Connection terminated due to connection timeout', 'timeout exceeded when trying to connect', 'Query read timeout']) {
      const { appError, errorId } = toAppError(new Error(message));
      expect(appError.code, message).toBe('DEPENDENCY_UNAVAILABLE');
      expect(appError.retryAfterSeconds).toBeGreaterThan(0);
      expect(errorId).toBeUndefined();
    }
  });
});
