import { AppError } from '@portcullis/shared/util-errors';
import { newId } from '@portcullis/shared/util-ids';
import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor, pageRequest, toPage } from './cursor';

describe('cursor pagination', () => {
  it('round-trips an id through an opaque cursor', () => {
    const id = newId();
    const cursor = encodeCursor(id);
    expect(cursor).not.toContain(id);
    expect(decodeCursor(cursor)).toBe(id);
    expect(decodeCursor(undefined)).toBeUndefined();
  });

  it('refuses cursors it did not issue, naming the field', () => {
    for (const bad of ['garbage', Buffer.from('v2:x').toString('base64url'), encodeCursor('not-a-uuid')]) {
      try {
        decodeCursor(bad);
        expect.unreachable();
      } catch (error) {
        expect(error).toBeInstanceOf(AppError);
        expect((error as AppError).fields).toEqual([{ path: 'cursor', message: expect.any(String) }]);
      }
    }
  });

  it('pages with limit + 1 rows and points the next cursor at the last returned item', () => {
    const rows = [newId(), newId(), newId()].map((id) => ({ id }));
    const first = toPage(rows, 2, (row) => row.id);
    expect(first.items).toEqual([rows[0]?.id, rows[1]?.id]);
    expect(pageRequest({ cursor: first.nextCursor ?? undefined, limit: 2 }).after).toBe(rows[1]?.id);
    expect(toPage(rows.slice(0, 2), 2, (row) => row.id).nextCursor).toBeNull();
  });
});
