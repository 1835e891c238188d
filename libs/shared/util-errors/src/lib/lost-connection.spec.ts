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
  });

  it('takes nothing else for one: a query error, a bug, a non-error', () => {
    for (const error of [new Error('relation "x" does not exist'), new TypeError('x is not a function'), new Error('The Connection terminated'), 'Connection terminated', null, undefined]) {
      expect(isLostDatabaseConnection(error)).toBe(false);
    }
  });
});
