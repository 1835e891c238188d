import { AppError } from '@portcullis/shared/util-errors';
import { isUuid } from '@portcullis/shared/util-ids';

/**
 * Cursor pagination over UUIDv7 ids (time-ordered, unique): a page is `id > after ORDER BY id LIMIT n`, so pages are
 * stable while rows are added. The cursor is opaque to clients (versioned base64url), so the scheme can change.
 */
const VERSION = 'v1';

export function encodeCursor(lastId: string): string {
  return Buffer.from(`${VERSION}:${lastId}`, 'utf8').toString('base64url');
}

/** The id to continue after, or undefined for the first page. A malformed cursor is a 400 on the `cursor` field. */
export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  const decoded = Buffer.from(cursor, 'base64url').toString('utf8');
  const [version, id] = decoded.split(':');
  if (version !== VERSION || !isUuid(id)) {
    throw new AppError('VALIDATION_FAILED', 'The request is not valid.', {
      fields: [{ path: 'cursor', message: 'not a cursor this API issued' }],
    });
  }
  return id.toLowerCase();
}

export interface Page<T> {
  readonly items: T[];
  readonly nextCursor: string | null;
}

export interface PageRequest {
  /** Exclusive lower bound on id. */
  readonly after: string | undefined;
  readonly limit: number;
}

export function pageRequest(query: { cursor?: string | undefined; limit: number }): PageRequest {
  return { after: decodeCursor(query.cursor), limit: query.limit };
}

/** Builds a page from `limit + 1` rows fetched in id order: the extra row only says whether there is more. */
export function toPage<T extends { id: string }, R>(rows: readonly T[], limit: number, map: (row: T) => R): Page<R> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items: items.map(map), nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
}
