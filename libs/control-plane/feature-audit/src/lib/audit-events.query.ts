import { AUDIT_EVENT_COLUMNS, type AuditEventRow } from '@portcullis/audit/core';
import type { AuditEventFilters } from '@portcullis/contracts/api';
import type { TenantTransaction } from '@portcullis/data/db';
import { AppError } from '@portcullis/shared/util-errors';
import { isUuid, type TenantId } from '@portcullis/shared/util-ids';

/**
 * The audit query the API runs (and `npm run bench:audit-query` measures): a tenant's events, newest first, in a
 * time range with optional equality filters, paged by a keyset cursor on `(occurred_at, id)`. Every filter has a
 * `(tenant_id, <column>, occurred_at)` index (or `(tenant_id, occurred_at)` alone), so a page reads about `limit`
 * index entries whatever the table size. Nest-free so the benchmark can load it.
 */

/** Where a page continues: strictly older than this event. Microsecond time, as Postgres stores it. */
export interface AuditCursor {
  readonly occurredAt: string;
  readonly id: string;
}

const CURSOR_VERSION = 'a1';
const MICRO_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

/** A time in the cursor's layout that is a real instant Postgres can hold (month 13 or hour 99 has the layout too). */
function isRealTime(occurredAt: string): boolean {
  if (!MICRO_ISO.test(occurredAt) || occurredAt.startsWith('0000')) return false;
  const millis = Date.parse(`${occurredAt.slice(0, 23)}Z`);
  return !Number.isNaN(millis) && new Date(millis).toISOString().slice(0, 23) === occurredAt.slice(0, 23);
}

export function encodeAuditCursor(cursor: AuditCursor): string {
  return Buffer.from(`${CURSOR_VERSION}|${cursor.occurredAt}|${cursor.id}`, 'utf8').toString('base64url');
}

/** A malformed cursor is a 400 on the `cursor` field, like the other cursors of the API. */
export function decodeAuditCursor(cursor: string | undefined): AuditCursor | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  const [version, occurredAt, id, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  if (version !== CURSOR_VERSION || rest.length > 0 || !occurredAt || !isRealTime(occurredAt) || !isUuid(id)) {
    throw new AppError('VALIDATION_FAILED', 'The request is not valid.', {
      fields: [{ path: 'cursor', message: 'not a cursor this API issued' }],
    });
  }
  return { occurredAt, id: id.toLowerCase() };
}

/** Columns of `audit_events` in the order `AuditEventRow` names them, plus the cursor's microsecond time. */
const SELECT_COLUMNS = `${AUDIT_EVENT_COLUMNS},
  to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at`;

/** A stored event as the API query reads it: the row plus the cursor's timestamp at microsecond precision. */
export type AuditEventQueryRow = AuditEventRow & { recorded_at: Date; cursor_at: string };

const DECISION_LITERALS: Record<NonNullable<AuditEventFilters['decision']>, string> = {
  allow: `'allow'::audit_decision`,
  deny: `'deny'::audit_decision`,
  require_approval: `'require_approval'::audit_decision`,
};

/** `AND ...` conditions for the filters, appending their values to `params` ($n placeholders). */
export function auditFilterSql(filters: AuditEventFilters, params: unknown[]): string {
  const parts: string[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    parts.push(sql.replace('?', `$${params.length}`));
  };
  if (filters.from !== undefined) add('occurred_at >= ?::timestamptz', filters.from);
  if (filters.to !== undefined) add('occurred_at < ?::timestamptz', filters.to);
  if (filters.actorUserId !== undefined) add('actor_user_id = ?::uuid', filters.actorUserId);
  if (filters.agentClientId !== undefined) add('agent_client_id = ?::uuid', filters.agentClientId);
  if (filters.upstreamId !== undefined) add('upstream_id = ?::uuid', filters.upstreamId);
  if (filters.tool !== undefined) add('tool = ?', filters.tool);
  if (filters.method !== undefined) add('method = ?', filters.method);
  // Enum equality is not leakproof, so under row-level security Postgres will not use `decision = x` as an index
  // condition; the partial indexes `... WHERE decision = 'deny'` (and 'require_approval') are chosen by proving their
  // predicate from the value. Written as a literal so the proof holds even under a generic (prepared) plan; the
  // value comes from a closed list, never from the caller's text.
  if (filters.decision !== undefined) {
    const literal = DECISION_LITERALS[filters.decision];
    if (literal === undefined) throw new TypeError(`unknown decision ${String(filters.decision)}`);
    parts.push(`decision = ${literal}`);
  }
  if (filters.outcome !== undefined) add('outcome = ?', filters.outcome);
  return parts.map((p) => ` AND ${p}`).join('');
}

export interface AuditEventsPage {
  readonly rows: AuditEventQueryRow[];
  readonly nextCursor: string | null;
}

/**
 * One page, newest first. Runs inside the caller's `withTenant` transaction (row-level security applies) and also
 * names the tenant in the where clause. Fetches `limit + 1` rows: the extra one only says whether there is more.
 */
export async function queryAuditEvents(
  tx: TenantTransaction,
  tenantId: TenantId,
  filters: AuditEventFilters,
  page: { readonly after: AuditCursor | undefined; readonly limit: number; readonly afterSeq?: bigint },
): Promise<AuditEventsPage> {
  const params: unknown[] = [tenantId];
  let where = auditFilterSql(filters, params);
  if (page.afterSeq !== undefined) {
    // Chain order from a sequence number (the (tenant_id, seq) unique index): a tenant's events commit in seq order
    // under its chain head's lock, so what a reader has not seen yet is always after the last seq it saw.
    params.push(page.afterSeq.toString(), page.limit);
    const rows = await tx.$queryRawUnsafe<AuditEventQueryRow[]>(
      `SELECT ${SELECT_COLUMNS} FROM audit_events WHERE tenant_id = $1::uuid${where} AND seq > $${params.length - 1}::bigint
       ORDER BY seq ASC LIMIT $${params.length}`,
      ...params,
    );
    return { rows, nextCursor: null };
  }
  if (page.after) {
    params.push(page.after.occurredAt, page.after.id);
    where += ` AND (occurred_at, id) < ($${params.length - 1}::timestamptz, $${params.length}::uuid)`;
  }
  params.push(page.limit + 1);
  const rows = await tx.$queryRawUnsafe<AuditEventQueryRow[]>(
    `SELECT ${SELECT_COLUMNS} FROM audit_events WHERE tenant_id = $1::uuid${where}
     ORDER BY occurred_at DESC, id DESC LIMIT $${params.length}`,
    ...params,
  );
  const items = rows.slice(0, page.limit);
  const last = items[items.length - 1];
  return {
    rows: items,
    nextCursor: rows.length > page.limit && last ? encodeAuditCursor({ occurredAt: last.cursor_at, id: last.id }) : null,
  };
}

/** How many events match, counting at most `cap + 1` (enough to refuse an over-large synchronous export cheaply). */
export async function countAuditEventsUpTo(
  tx: TenantTransaction,
  tenantId: TenantId,
  filters: AuditEventFilters,
  cap: number,
): Promise<number> {
  const params: unknown[] = [tenantId];
  const where = auditFilterSql(filters, params);
  params.push(cap + 1);
  const rows = await tx.$queryRawUnsafe<{ n: bigint | number }[]>(
    `SELECT count(*) AS n FROM (SELECT 1 FROM audit_events WHERE tenant_id = $1::uuid${where} LIMIT $${params.length}) capped`,
    ...params,
  );
  return Number(rows[0]?.n ?? 0);
}
