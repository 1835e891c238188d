import { describe, expect, it } from 'vitest';
import { isLostDatabaseConnection } from './lost-connection';

describe('isLostDatabaseConnection', () => {
  it("knows the pg driver's and pool's errors for a connection lost or out of reach, also as a cause", () => {
    for (const message of [
      'Connection terminated unexpectedly',
      'Connection terminated',
      'Connection terminated due to connection timeout',
      'Client has encountered a connection error and is not queryable',
      'Client was closed and is not queryable',
      'Query read timeout',
      'timeout exceeded when trying to connect',
    ]) {
      expect(isLostDatabaseConnection(new Error(message)), message).toBe(true);
      expect(isLostDatabaseConnection(new Error('query failed', { cause: new Error(message) })), message).toBe(true);
    }
    // Under a raw query Prisma throws P2010 with its own wording in `meta`.
    const raw = Object.assign(new Error('Invalid `prisma.$queryRaw()` invocation: Raw query failed.'), { code: 'P2010', meta: { code: 'N/A', message: 'Server has closed the connection.' } });
    expect(isLostDatabaseConnection(raw)).toBe(true);
    const closed = Object.assign(new Error('Raw query failed. Code: `N/A`.'), { code: 'P2010', meta: { driverAdapterError: { name: 'DriverAdapterError', cause: { kind: 'ConnectionClosed' } } } });
    expect(isLostDatabaseConnection(closed)).toBe(true);
    // The adapter's error unwrapped.
    expect(isLostDatabaseConnection(Object.assign(new Error('ConnectionClosed', { cause: { kind: 'ConnectionClosed' } }), { name: 'DriverAdapterError' }))).toBe(true);
    expect(isLostDatabaseConnection(Object.assign(new Error('UniqueConstraintViolation', { cause: { kind: 'UniqueConstraintViolation' } }), { name: 'DriverAdapterError' }))).toBe(false);
    expect(isLostDatabaseConnection(Object.assign(new Error('Raw query failed.'), { code: 'P2010', meta: { code: '42P01', message: 'relation "x" does not exist' } }))).toBe(false);
  });

  it('takes nothing else for one: a query error, a bug, a non-error', () => {
    for (const error of [new Error('relation "x" does not exist'), new TypeError('x is not a function'), new Error('The Connection terminated'), 'Connection terminated', null, undefined]) {
      expect(isLostDatabaseConnection(error)).toBe(false);
    }
  });
});
