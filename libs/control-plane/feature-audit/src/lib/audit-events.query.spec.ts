import { AppError } from '@portcullis/shared/util-errors';
import { newId } from '@portcullis/shared/util-ids';
import { describe, expect, it } from 'vitest';
import { auditFilterSql, decodeAuditCursor, encodeAuditCursor } from './audit-events.query';

describe('audit cursor', () => {
  it('round-trips microsecond time and id, opaquely', () => {
    const cursor = { occurredAt: '2026-11-01T10:20:30.123456Z', id: newId() };
    const encoded = encodeAuditCursor(cursor);
    expect(encoded).not.toContain(cursor.id);
    expect(decodeAuditCursor(encoded)).toEqual(cursor);
    expect(decodeAuditCursor(undefined)).toBeUndefined();
    expect(decodeAuditCursor('')).toBeUndefined();
  });

  it('refuses anything it did not issue with a 400 on `cursor`', () => {
    const forged = [
      'not-base64-at-all!',
      Buffer.from(`v1:${newId()}`).toString('base64url'),
      Buffer.from(`a1|2026-11-01T10:20:30Z|${newId()}`).toString('base64url'),
      Buffer.from(`a1|2026-11-01T10:20:30.123456Z|nope`).toString('base64url'),
      Buffer.from(`a1|2026-11-01T10:20:30.123456Z|${newId()}|extra`).toString('base64url'),
      // The layout of a time, but no time Postgres can hold (it answered 22008: a 500).
      Buffer.from(`a1|2026-13-45T99:00:00.000000Z|${newId()}`).toString('base64url'),
      Buffer.from(`a1|2026-02-30T10:20:30.123456Z|${newId()}`).toString('base64url'),
      Buffer.from(`a1|0000-01-01T00:00:00.000000Z|${newId()}`).toString('base64url'),
    ];
    for (const cursor of forged) {
      try {
        decodeAuditCursor(cursor);
        expect.unreachable(cursor);
      } catch (error) {
        expect(error).toBeInstanceOf(AppError);
        expect((error as AppError).code).toBe('VALIDATION_FAILED');
      }
    }
  });
});

describe('auditFilterSql', () => {
  it('binds every caller-supplied value as a parameter; only the closed decision list is written as a literal', () => {
    const params: unknown[] = ['tenant'];
    const sql = auditFilterSql(
      { from: '2026-11-01T00:00:00Z', tool: "x'; DROP TABLE audit_events; --", decision: 'deny', method: 'tools/call' },
      params,
    );
    expect(sql).toBe(
      " AND occurred_at >= $2::timestamptz AND tool = $3 AND method = $4 AND decision = 'deny'::audit_decision",
    );
    expect(params).toEqual(['tenant', '2026-11-01T00:00:00Z', "x'; DROP TABLE audit_events; --", 'tools/call']);
    expect(() => auditFilterSql({ decision: "deny' OR true --" as 'deny' }, [])).toThrow(TypeError);
    expect(auditFilterSql({}, [])).toBe('');
  });
});
