#!/usr/bin/env node
// Audit query benchmark: `npm run bench:audit-query`.
//
// Loads BENCH_ROWS audit events (default 5,000,000) for BENCH_TENANTS tenants (default 5) into a fresh database
// (migrations applied, created for the run and dropped afterwards), spread over 90 days, with INSERT ... SELECT
// FROM generate_series (the migrations' secondary indexes are dropped during the load and recreated from their own
// definitions afterwards, then ANALYZE). Then runs BENCH_QUERIES (default 200) page queries through the API's own
// query code (libs/control-plane/feature-audit `queryAuditEvents`, loaded with jiti) as the application role inside
// `withTenant` (row-level security on), mixing time windows (1 h .. 30 d), filters and second pages, and prints
// p50/p95/max overall and per filter. Target: p95 <= 200 ms.
//
// Bounded: the load is one statement per tenant with a 15 min statement timeout; the query phase is BENCH_QUERIES
// queries. 127.0.0.1 only. The rows are realistic in shape but their hashes are placeholders (no chain is verified).
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { DEFAULT_ADMIN_URL, applyMigrations, dropDatabase, withDatabaseUrl } from '../db/index.mjs';
import { importSource } from '../scripts/lib/harness.mjs';

process.env.CHECKPOINT_DISABLE ??= '1';
// The query module only (not the lib's index, which pulls in Nest): the same function the API's repository calls.
const { queryAuditEvents, decodeAuditCursor } = await importSource(
  'libs/control-plane/feature-audit/src/lib/audit-events.query.ts',
);
const { createPrismaClient, withTenant } = await importSource('libs/data/db/src/index.ts');

const ROWS = Number(process.env.BENCH_ROWS ?? 5_000_000);
const TENANTS = Number(process.env.BENCH_TENANTS ?? 5);
const QUERIES = Number(process.env.BENCH_QUERIES ?? 200);
const PAGE = 50;
const DAYS = 90;
// A few recognisable values per dimension; the generator picks among them with skew.
const USERS = 200;
const AGENTS = 40;
const UPSTREAMS = 12;
const TOOLS = 60;

const baseAdmin = process.env.DATABASE_ADMIN_URL ?? DEFAULT_ADMIN_URL;
const database = `portcullis_bench_${Date.now()}_${randomBytes(3).toString('hex')}`;
const adminUrl = withDatabaseUrl(baseAdmin, { database });
const appUrl = withDatabaseUrl(adminUrl, { user: 'portcullis_app', password: null });
const end = new Date();
const start = new Date(end.getTime() - DAYS * 86_400_000);

/** Deterministic UUIDs for the dimension values, so queries can name them: md5 of a label, formatted. */
const uuidSql = (label) => `md5(${label})::uuid`;
const uuidOf = (label) => {
  // Same as Postgres md5(text)::uuid.
  return import('node:crypto').then(({ createHash }) => {
    const h = createHash('md5').update(label).digest('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  });
};

function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
const fmt = (ms) => `${ms.toFixed(1)} ms`;

let admin;
let app;
try {
  console.log(`bench:audit-query — ${ROWS.toLocaleString('en')} rows, ${TENANTS} tenants, ${DAYS} days, database ${database}`);
  await applyMigrations({ adminUrl });
  admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query("SET statement_timeout = '15min'");
  await admin.query("SET maintenance_work_mem = '512MB'");
  // Bulk load only: skip the per-row foreign-key trigger (every tenant id here is a tenant created just above).
  await admin.query("SET session_replication_role = replica");

  const tenantIds = [];
  for (let i = 0; i < TENANTS; i += 1) {
    const { rows } = await admin.query(
      `INSERT INTO tenants (id, slug, name, updated_at) VALUES (gen_random_uuid(), $1, $2, now()) RETURNING id`,
      [`bench-${i}-${randomBytes(3).toString('hex')}`, `Bench ${i}`],
    );
    tenantIds.push(rows[0].id);
  }

  // Secondary indexes of audit_events as the migrations define them (not the primary key / unique constraint).
  const { rows: indexes } = await admin.query(
    `SELECT i.indexname, i.indexdef FROM pg_indexes i
     JOIN pg_class c ON c.relname = i.indexname
     JOIN pg_index x ON x.indexrelid = c.oid
     WHERE i.tablename = 'audit_events' AND NOT x.indisprimary AND NOT x.indisunique`,
  );
  for (const { indexname } of indexes) await admin.query(`DROP INDEX "${indexname}"`);

  const perTenant = Math.ceil(ROWS / TENANTS);
  const spanMs = end.getTime() - start.getTime();
  const loadStarted = performance.now();
  for (const [n, tenantId] of tenantIds.entries()) {
    const t0 = performance.now();
    // Skewed picks: a few values carry most traffic (power of a uniform random number).
    await admin.query(
      `INSERT INTO audit_events (id, tenant_id, seq, occurred_at, recorded_at, kind, method, actor_user_id, agent_client_id,
         api_key_id, mcp_session_id, upstream_id, tool, decision, reason, snapshot_version, latency_ms, arguments, outcome,
         error_code, trace_id, prev_hash, hash)
       SELECT gen_random_uuid(), $1::uuid, g,
         $2::timestamptz + ((g - 1)::double precision / $3) * ($4::double precision * interval '1 millisecond'),
         $2::timestamptz + ((g - 1)::double precision / $3) * ($4::double precision * interval '1 millisecond'),
         CASE WHEN r.k < 0.02 THEN 'control_plane'::audit_event_kind ELSE 'mcp'::audit_event_kind END,
         CASE WHEN r.k < 0.02 THEN 'policy.update' WHEN r.m < 0.85 THEN 'tools/call' WHEN r.m < 0.93 THEN 'tools/list'
              WHEN r.m < 0.97 THEN 'resources/read' ELSE 'initialize' END,
         dim.users[1 + floor(power(r.u, 2) * ${USERS})::int],
         dim.agents[1 + floor(power(r.a, 2) * ${AGENTS})::int],
         NULL, 'session-' || (g / 40),
         CASE WHEN g % 5003 = 0 THEN dim.rare_upstream ELSE dim.upstreams[1 + floor(power(r.p, 2) * ${UPSTREAMS})::int] END,
         CASE WHEN g % 4999 = 0 THEN 'tool_rare' ELSE 'tool_' || floor(power(r.t, 2) * ${TOOLS})::int END,
         CASE WHEN r.d < 0.9 THEN 'allow'::audit_decision WHEN r.d < 0.98 THEN 'deny'::audit_decision
              ELSE 'require_approval'::audit_decision END,
         'rule r1', 7, (r.l * 400)::int, jsonb_build_object('n', g % 1000, 'q', 'lookup'),
         CASE WHEN r.d >= 0.9 AND r.d < 0.98 THEN 'denied' WHEN r.o < 0.04 THEN 'error' WHEN r.o < 0.05 THEN 'timeout' ELSE 'ok' END,
         NULL, lpad(to_hex(g), 32, '0'), lpad(to_hex(g - 1), 64, '0'), lpad(to_hex(g), 64, '0')
       FROM generate_series(1, $3::bigint) AS g
       CROSS JOIN (SELECT
           (SELECT array_agg(${uuidSql(`'user-' || i`)} ORDER BY i) FROM generate_series(0, ${USERS}) i) AS users,
           (SELECT array_agg(${uuidSql(`'agent-' || i`)} ORDER BY i) FROM generate_series(0, ${AGENTS}) i) AS agents,
           (SELECT array_agg(${uuidSql(`'upstream-' || i`)} ORDER BY i) FROM generate_series(0, ${UPSTREAMS}) i) AS upstreams,
           ${uuidSql(`'upstream-rare'`)} AS rare_upstream
         ) dim
       CROSS JOIN LATERAL (SELECT random() + g * 0 AS k, random() AS m, random() AS u, random() AS a, random() AS p,
                                  random() AS t, random() AS d, random() AS o, random() AS l) r`,
      [tenantId, start.toISOString(), perTenant, spanMs],
    );
    await admin.query(
      `INSERT INTO audit_chain_heads (tenant_id, last_seq, last_hash, updated_at) VALUES ($1::uuid, $2::bigint, md5($2::bigint::text || $1::text), now())`,
      [tenantId, perTenant],
    );
    console.log(`  tenant ${n + 1}/${TENANTS}: ${perTenant.toLocaleString('en')} rows in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  await admin.query('SET session_replication_role = origin');
  const t1 = performance.now();
  for (const { indexname, indexdef } of indexes) {
    await admin.query(indexdef);
    console.log(`  index ${indexname}`);
  }
  await admin.query('VACUUM ANALYZE audit_events');
  const { rows: size } = await admin.query(
    `SELECT pg_size_pretty(pg_table_size('audit_events')) AS heap, pg_size_pretty(pg_indexes_size('audit_events')) AS idx`,
  );
  console.log(
    `loaded in ${((t1 - loadStarted) / 1000).toFixed(0)} s, indexes + analyze ${((performance.now() - t1) / 1000).toFixed(0)} s; ` +
      `table ${size[0].heap}, indexes ${size[0].idx}`,
  );

  // ---- queries through the API's code, as the application role with row-level security ----
  app = createPrismaClient({ url: appUrl });
  const windows = [
    ['1 h', 3_600_000],
    ['1 d', 86_400_000],
    ['7 d', 7 * 86_400_000],
    ['30 d', 30 * 86_400_000],
  ];
  const filterKinds = [
    ['none', async () => ({})],
    ['actorUserId', async () => ({ actorUserId: await uuidOf(`user-${Math.floor(Math.random() * 40)}`) })],
    ['agentClientId', async () => ({ agentClientId: await uuidOf(`agent-${Math.floor(Math.random() * 10)}`) })],
    ['upstreamId', async () => ({ upstreamId: await uuidOf(`upstream-${Math.floor(Math.random() * UPSTREAMS)}`) })],
    ['tool', async () => ({ tool: `tool_${Math.floor(Math.random() * 20)}` })],
    ['method', async () => ({ method: ['tools/list', 'resources/read', 'initialize'][Math.floor(Math.random() * 3)] })],
    ['decision', async () => ({ decision: Math.random() < 0.5 ? 'deny' : 'require_approval' })],
    ['outcome', async () => ({ outcome: Math.random() < 0.5 ? 'error' : 'timeout' })],
    // Values in about 1 of 5,000 events: the case a (tenant, occurred_at) index alone cannot serve.
    ['tool (rare)', async () => ({ tool: 'tool_rare' })],
    ['upstreamId (rare)', async () => ({ upstreamId: await uuidOf('upstream-rare') })],
  ];
  const pick = (list) => list[Math.floor(Math.random() * list.length)];
  const runOne = async (kinds = filterKinds, tx = {}) => {
    const tenantId = pick(tenantIds);
    const [windowName, windowMs] = pick(windows);
    const [filterName, make] = pick(kinds);
    const to = new Date(start.getTime() + windowMs + Math.random() * (end.getTime() - start.getTime() - windowMs));
    const filters = { from: new Date(to.getTime() - windowMs).toISOString(), to: to.toISOString(), ...(await make()) };
    const t0 = performance.now();
    const first = await withTenant(app, tenantId, (t) => queryAuditEvents(t, tenantId, filters, { after: undefined, limit: PAGE }), tx);
    const ms1 = performance.now() - t0;
    let ms2;
    if (first.nextCursor) {
      const t2 = performance.now();
      await withTenant(
        app,
        tenantId,
        (t) => queryAuditEvents(t, tenantId, filters, { after: decodeAuditCursor(first.nextCursor), limit: PAGE }),
        tx,
      );
      ms2 = performance.now() - t2;
    }
    return { windowName, filterName, ms1, ms2, rows: first.rows.length };
  };

  for (let i = 0; i < 20; i += 1) await runOne(); // warm-up (connections, plans), not counted
  const results = [];
  const q0 = performance.now();
  for (let i = 0; i < QUERIES; i += 1) results.push(await runOne());
  const elapsed = performance.now() - q0;

  const all = results.flatMap((r) => (r.ms2 === undefined ? [r.ms1] : [r.ms1, r.ms2])).sort((a, b) => a - b);
  console.log(
    `\n${all.length} page queries (${QUERIES} first pages + ${all.length - QUERIES} second pages) in ${(elapsed / 1000).toFixed(1)} s`,
  );
  console.log(`overall: p50 ${fmt(pct(all, 50))}  p95 ${fmt(pct(all, 95))}  max ${fmt(all[all.length - 1])}`);
  const group = (key, results) => {
    const by = new Map();
    for (const r of results) {
      const list = by.get(r[key]) ?? [];
      list.push(r.ms1);
      if (r.ms2 !== undefined) list.push(r.ms2);
      by.set(r[key], list);
    }
    for (const [name, list] of by) {
      list.sort((a, b) => a - b);
      console.log(`  ${key === 'filterName' ? 'filter' : 'window'} ${name.padEnd(18)} n=${String(list.length).padStart(3)}  p50 ${fmt(pct(list, 50)).padStart(9)}  p95 ${fmt(pct(list, 95)).padStart(9)}`);
    }
  };
  group('filterName', results);
  group('windowName', results);
  const p95 = pct(all, 95);
  console.log(`\ntarget p95 <= 200 ms: ${p95 <= 200 ? 'met' : 'NOT met'} (${fmt(p95)})`);

  // Why the filter indexes exist: the same filtered queries without the audit_query_indexes migration's indexes.
  if (process.env.BENCH_COMPARE !== '0') {
    const filterIndexes = indexes.map((i) => i.indexname).filter((name) => /_(upstream_id|tool|method|denied|approval|outcome)_occurred_at_idx$/.test(name));
    for (const name of filterIndexes) await admin.query(`DROP INDEX "${name}"`);
    const compareKinds = filterKinds.filter(([name]) => /upstreamId|tool|method|decision|outcome/.test(name));
    const without = [];
    // Bounded: 60 queries or 3 minutes, each allowed 60 s (the API's transactions allow 5 s).
    const stopAt = performance.now() + 180_000;
    for (let i = 0; i < 60 && performance.now() < stopAt; i += 1) without.push(await runOne(compareKinds, { timeout: 60_000 }));
    const flat = without.flatMap((r) => (r.ms2 === undefined ? [r.ms1] : [r.ms1, r.ms2])).sort((a, b) => a - b);
    console.log(`\nwithout ${filterIndexes.join(', ')}:`);
    console.log(`  ${flat.length} filtered page queries: p50 ${fmt(pct(flat, 50))}  p95 ${fmt(pct(flat, 95))}  max ${fmt(flat[flat.length - 1])}`);
    group('filterName', without);
  }
} finally {
  await app?.$disconnect().catch(() => undefined);
  await admin?.end().catch(() => undefined);
  await dropDatabase(adminUrl).catch((error) => console.error(`could not drop ${database}: ${error.message}`));
  console.log(`dropped ${database}`);
}
