/**
 * Opaque pagination cursors for merged listings.
 *
 * A merged page is the next page of every upstream that still has one, fetched in parallel. The cursor
 * therefore lists, in the listing's deterministic upstream order, each upstream that has more and the
 * upstream's own cursor. Upstream cursors stay opaque to us; the agent sees one base64url string.
 */
export type ListKind = 'tools' | 'prompts' | 'resources' | 'resourceTemplates';

export interface PendingPage {
  readonly upstreamId: string;
  readonly cursor: string;
}

interface CursorBody {
  readonly v: 1;
  readonly k: ListKind;
  readonly p: readonly (readonly [string, string])[];
}

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

export function encodeCursor(kind: ListKind, pending: readonly PendingPage[]): string {
  const body: CursorBody = { v: 1, k: kind, p: pending.map((page) => [page.upstreamId, page.cursor] as const) };
  return Buffer.from(JSON.stringify(body), 'utf8').toString('base64url');
}

/** The pending pages, or undefined for anything that is not a cursor we issued for this kind of listing. */
export function decodeCursor(kind: ListKind, cursor: unknown): PendingPage[] | undefined {
  if (typeof cursor !== 'string' || cursor.length === 0 || cursor.length > MAX_CURSOR_LENGTH) return undefined;
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null) return undefined;
  const { v, k, p } = body as Partial<CursorBody>;
  if (v !== 1 || k !== kind || !Array.isArray(p) || p.length === 0) return undefined;
  const pages: PendingPage[] = [];
  // A cursor we issued names each upstream once: a forged one repeating an upstream would fan one listing out into
  // hundreds of upstream calls.
  const seen = new Set<string>();
  for (const entry of p as unknown[]) {
    if (!Array.isArray(entry) || entry.length !== 2) return undefined;
    const [upstreamId, upstreamCursor] = entry as unknown[];
    // Nor an empty upstream cursor: it is never issued (an upstream's empty nextCursor ends its listing), and would
    // serve that upstream's first page again.
    // Nor one longer than any the gateway carries on: a forged part is otherwise sent upstream as is, and keys the
    // listing cache (up to the whole cursor's length) in every page cached for it.
    if (
      typeof upstreamId !== 'string' ||
      typeof upstreamCursor !== 'string' ||
      upstreamCursor.length === 0 ||
      upstreamCursor.length > MAX_UPSTREAM_CURSOR_LENGTH ||
      seen.has(upstreamId)
    ) {
      return undefined;
    }
    seen.add(upstreamId);
    pages.push({ upstreamId, cursor: upstreamCursor });
  }
  return pages;
}
