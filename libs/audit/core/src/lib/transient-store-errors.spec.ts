import { describe, expect, it } from 'vitest';
import { isTransientStoreError } from './postgres-audit-event.store';

describe('isTransientStoreError', () => {
  it('waits out a database away: refused, reset, lost under a batch, none in time, a server restarting', () => {
    const transient = [
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      Object.assign(new Error('Can\'t reach database server'), { code: 'P1001' }),
      new Error('Connection terminated unexpectedly'),
      new Error('timeout exceeded when trying to connect'),
      Object.assign(new Error('adapter'), { code: 'P2039', meta: { driverAdapterError: { cause: { originalCode: '57P01' } } } }),
    ];
    for (const error of transient) expect(isTransientStoreError(error), error.message).toBe(true);
  });

  it('does not wait out what retrying cannot mend: a query the server refuses, a bug', () => {
    const lasting = [
      Object.assign(new Error('adapter'), { code: 'P2039', meta: { driverAdapterError: { cause: { originalCode: '22P02' } } } }),
      new TypeError('Cannot read properties of undefined'),
      new Error('value too long for type character varying(256)'),
    ];
    for (const error of lasting) expect(isTransientStoreError(error), error.message).toBe(false);
  });
});
