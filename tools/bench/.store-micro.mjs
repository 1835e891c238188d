import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createJiti } from 'jiti';
import pg from 'pg';
import { DEFAULT_ADMIN_URL, applyMigrations, dropDatabase, withDatabaseUrl } from '../db/index.mjs';
const root = '/work/main';
const { compilerOptions } = JSON.parse(readFileSync(resolve(root, 'tsconfig.base.json'), 'utf8'));
const alias = Object.fromEntries(Object.entries(compilerOptions.paths).map(([n, [t]]) => [n, resolve(root, t)]));
const jiti = createJiti(import.meta.url, { alias, interopDefault: true });
const { sampleAuditEvent, PostgresAuditEventStore } = await jiti.import(resolve(root, 'libs/audit/core/src/index.ts'));
const { createPrismaClient } = await jiti.import(resolve(root, 'libs/data/db/src/index.ts'));
const adminUrl = withDatabaseUrl(DEFAULT_ADMIN_URL, { database: 'portcullis_storemicro_' + Date.now() });
await applyMigrations({ adminUrl });
const admin = new pg.Client({ connectionString: adminUrl }); await admin.connect();
const tenants = [];
for (let i = 0; i < 20; i++) tenants.push((await admin.query(`INSERT INTO tenants (id, slug, name, updated_at) VALUES (gen_random_uuid(), $1, $1, now()) RETURNING id`, ['t' + i])).rows[0].id);
const db = createPrismaClient({ url: withDatabaseUrl(adminUrl, { user: 'portcullis_app', password: null }) });
const store = new PostgresAuditEventStore(db);
let n = 0;
async function run(name, batches, size, tenantsPerBatch) {
  const c0 = process.cpuUsage(); const t0 = Date.now(); let events = 0;
  for (let b = 0; b < batches; b++) {
    const batch = Array.from({ length: size }, (_, i) => sampleAuditEvent(tenants[(b * tenantsPerBatch + (i % tenantsPerBatch)) % 20], { arguments: { n: n++, path: '/tickets/42' } }));
    await store.insert(batch); events += size;
  }
  const c = process.cpuUsage(c0);
  console.log(name.padEnd(34), 'client CPU', ((c.user + c.system) / events).toFixed(1), 'µs/event;', Math.round(events * 1000 / (Date.now() - t0)), 'events/s wall (1 in flight)');
}
await run('warmup', 5, 500, 1);
await run('500/batch, 1 tenant', 20, 500, 1);
await run('2000/batch, 20 tenants', 5, 2000, 20);
await run('5000/batch, 20 tenants', 2, 5000, 20);
await run('2000/batch, 4 tenants', 5, 2000, 4);
await db.$disconnect(); await admin.end(); await dropDatabase(adminUrl);
