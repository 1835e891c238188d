import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * Opaque pagination cursors for merged listings.
 *
 * A merged page is the next page of every upstream that still has one, fetched in parallel. The cursor
 * therefore lists, in the listing's deterministic upstream order, each upstream that has more and the
 * upstream's own cursor. Upstream cursors stay opaque to us; the agent sees one base64url string.
 *
 * With the session's cursor key the cursor is sealed (AES-128-GCM): an upstream's own cursor may name what it
 * listed last (`after=file:///srv/hr/layoffs.xlsx`), an item the policy hid from this agent, and its upstream's id
 * is the tenant's. Sealed, the agent reads neither, and a cursor of another session does not open.
 */
export type ListKind = 'tools' | 'prompts' | 'resources' | 'resourceTemplates';

export interface PendingPage {
  readonly upstreamId: string;
  readonly cursor: string;
  /** Which of the upstream's pages `cursor` asks for (its first is 1; a cursor of an older gateway's says none: 2). */
  readonly page?: number;
}

interface CursorBody {
  readonly v: 1;
  readonly k: ListKind;
  readonly p: readonly (readonly [string, string])[];
  /**
   * Which page of its upstream each part of `p` asks for. A field of its own, which a replica of an older gateway
   * (during a rolling upgrade) ignores rather than refusing the cursor.
   */
  readonly n?: readonly number[];
}

/**
 * Most pages of one upstream a listing goes through: an upstream whose cursors go round in a cycle (page 1, 2, 1, 2…)
 * would otherwise have an agent that pages to the end page for ever. A cycle of one page is caught at once (the
 * session engine compares the cursor with the one asked); longer ones end here. A thousand pages is a million items
 * at a thousand a page.
 */
export const MAX_UPSTREAM_PAGES = 1_000;

/**
 * Longest upstream cursor carried on: a longer one ends that upstream's listing (logged). MCP cursors are short
 * opaque tokens; the bound keeps the merged cursor, which holds one per upstream, within MAX_CURSOR_LENGTH.
 */
export const MAX_UPSTREAM_CURSOR_LENGTH = 16 * 1024;
/**
 * Longest cursor taken back: every cursor the gateway issues must fit (about 4/3 of its upstreams' cursors, each at
 * most MAX_UPSTREAM_CURSOR_LENGTH, and their ids), and a request body holds it (GATEWAY_BODY_LIMIT_BYTES, 4 MiB).
 */
export const MAX_CURSOR_LENGTH = 1024 * 1024;

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A new session's cursor key (AES-128), as kept in its record. */
export const newCursorKey = (): string => randomBytes(16).toString('base64url');

/** The cursor for the pages still pending; sealed with `key` (a session's cursor key) when given. */
export function encodeCursor(kind: ListKind, pending: readonly PendingPage[], key?: string): string {
  const body: CursorBody = { v: 1, k: kind, p: pending.map((page) => [page.upstreamId, page.cursor] as const), n: pending.map((page) => page.page ?? 2) };
  const plain = Buffer.from(JSON.stringify(body), 'utf8');
  if (key === undefined) return plain.toString('base64url');
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-128-gcm', Buffer.from(key, 'base64url'), iv);
  const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
  return sealed.toString('base64url');
}

/** The JSON text of a cursor: opened with `key` when given (undefined if it does not open), else decoded. */
function cursorText(cursor: string, key: string | undefined): string | undefined {
  const bytes = Buffer.from(cursor, 'base64url');
  if (key === undefined) return bytes.toString('utf8');
  if (bytes.length <= IV_BYTES + TAG_BYTES) return undefined;
  try {
    const decipher = createDecipheriv('aes-128-gcm', Buffer.from(key, 'base64url'), bytes.subarray(0, IV_BYTES));
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    return Buffer.concat([decipher.update(bytes.subarray(IV_BYTES, bytes.length - TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}

/**
 * The pending pages, or undefined for anything that is not a cursor we issued for this kind of listing (with `key`:
 * sealed with that key).
 */
export function decodeCursor(kind: ListKind, cursor: unknown, key?: string): PendingPage[] | undefined {
  if (typeof cursor !== 'string' || cursor.length === 0 || cursor.length > MAX_CURSOR_LENGTH) return undefined;
  let body: unknown;
  try {
    const text = cursorText(cursor, key);
    if (text === undefined) return undefined;
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null) return undefined;
  const { v, k, p, n } = body as Partial<CursorBody>;
  if (v !== 1 || k !== kind || !Array.isArray(p) || p.length === 0) return undefined;
  if (n !== undefined && (!Array.isArray(n) || n.length !== p.length)) return undefined;
  const pages: PendingPage[] = [];
  // A cursor we issued names each upstream once: a forged one repeating an upstream would fan one listing out into
  // hundreds of upstream calls.
  const seen = new Set<string>();
  for (const [index, entry] of (p as unknown[]).entries()) {
    if (!Array.isArray(entry) || entry.length !== 2) return undefined;
    const [upstreamId, upstreamCursor] = entry as unknown[];
    const page: unknown = n === undefined ? 2 : n[index];
    // Nor an empty upstream cursor: it is never issued (an upstream's empty nextCursor ends its listing), and would
    // serve that upstream's first page again.
    // Nor one longer than any the gateway carries on: a forged part is otherwise sent upstream as is, and keys the
    // listing cache (up to the whole cursor's length) in every page cached for it.
    if (
      typeof upstreamId !== 'string' ||
      typeof upstreamCursor !== 'string' ||
      upstreamCursor.length === 0 ||
      upstreamCursor.length > MAX_UPSTREAM_CURSOR_LENGTH ||
      seen.has(upstreamId) ||
      !Number.isSafeInteger(page) ||
      (page as number) < 2 ||
      (page as number) > MAX_UPSTREAM_PAGES
    ) {
      return undefined;
    }
    seen.add(upstreamId);
    pages.push({ upstreamId, cursor: upstreamCursor, page: page as number });
  }
  return pages;
}
