#!/usr/bin/env node
// What the audit API's filter indexes cost on ingest: `node tools/bench/audit-index-cost.mjs`.
//
// The Postgres stage only (PostgresAuditEventStore, batches of 500, 2 in flight, 20 tenants) in a fresh database
// (dropped at the end): a 20,000-event warm-up, then 3 alternating rounds of 60,000 events with and without the
// indexes of the audit_query_indexes migration (dropped and recreated from their own definitions). Prints events/s
// and WAL bytes per event (noisy: checkpoints add full-page images). Bounded: 380,000 events; 127.0.0.1 only.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { DEFAULT_ADMIN_URL, applyMigrations, dropDatabase, withDatabaseUrl } from '../db/index.mjs';
import { importSource } from '../scripts/lib/harness.mjs';

process.env.CHECKPOINT_DISABLE ??= '1';
const { sampleAuditEvent, PostgresAuditEventStore } = await importSource('libs/audit/core/src/index.ts');
const { createPrismaClient } = await importSource('libs/data/db/src/index.ts');

const database = `portcullis_bench_${Date.now()}_${randomBytes(3).toString('hex')}`;
const adminUrl = withDatabaseUrl(process.env.DATABASE_ADMIN_URL ?? DEFAULT_ADMIN_URL, { database });
const appUrl = withDatabaseUrl(adminUrl, { user: 'portcullis_app', password: null });
const names = ['upstream_id', 'tool', 'method', 'denied', 'approval', 'outcome'].map(
  (c) => `audit_events_tenant_id_${c}_occurred_at_idx`,
);
const median = (list) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];

let admin;
let app;
try {
  await applyMigrations({ adminUrl });
  admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  const { rows: defs } = await admin.query('SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY($1)', [names]);
  const tenants = [];
  for (let i = 0; i < 20; i += 1) {
    const { rows } = await admin.query(
      'INSERT INTO tenants (id, slug, name, updated_at) VALUES (gen_random_uuid(), $1, $1, now()) RETURNING id',
      [`index-cost-${i}`],
    );
    tenants.push(rows[0].id);
  }
  app = createPrismaClient({ url: appUrl });
  const store = new PostgresAuditEventStore(app);
  const lsn = async () => (await admin.query('SELECT pg_current_wal_lsn() AS l')).rows[0].l;
  const round = async (n) => {
    let t = 0;
    const batches = Array.from({ length: n / 500 }, () =>
      Array.from({ length: 500 }, (_, j) =>
        sampleAuditEvent(tenants[t++ % tenants.length], { tool: `tool_${j % 40}`, outcome: j % 30 === 0 ? 'error' : 'ok' }),
      ),
    );
    const w0 = await lsn();
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      [0, 1].map(async () => {
        while (next < batches.length) await store.insert(batches[next++]);
      }),
    );
    const rate = n / ((performance.now() - t0) / 1000);
    const { rows } = await admin.query('SELECT pg_wal_lsn_diff($2, $1) AS d', [w0, await lsn()]);
    return { rate, walPerEvent: Number(rows[0].d) / n };
  };
  await round(20_000);
  const results = { with: [], without: [] };
  for (let r = 0; r < 3; r += 1) {
    results.with.push(await round(60_000));
    for (const { indexname } of defs) await admin.query(`DROP INDEX "${indexname}"`);
    results.without.push(await round(60_000));
    for (const { indexdef } of defs) await admin.query(indexdef);
  }
  for (const key of ['with', 'without']) {
    const list = results[key];
    console.log(
      `${key === 'with' ? 'with the filter indexes   ' : 'without the filter indexes'}: ` +
        `${list.map((x) => x.rate.toFixed(0)).join(', ')} events/s (median ${median(list.map((x) => x.rate)).toFixed(0)}), ` +
        `WAL ${median(list.map((x) => x.walPerEvent)).toFixed(0)} bytes/event (median)`,
    );
  }
} finally {
  await app?.$disconnect().catch(() => undefined);
  await admin?.end().catch(() => undefined);
  await dropDatabase(adminUrl).catch((error) => console.error(`could not drop ${database}: ${error.message}`));
}
