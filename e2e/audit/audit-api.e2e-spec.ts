import { AUDIT_TASKS_QUEUE, expireAuditExports, PostgresAuditEventStore, runAuditCli, sampleAuditEvent, verifyExportFile } from '@portcullis/audit/core';
import { createPrismaClient, type PortcullisPrismaClient } from '@portcullis/data/db';
import { testContext, waitFor } from '@portcullis/shared/util-testing';
import { Queue } from 'bullmq';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startControlPlane,
  type ControlPlaneHarness,
} from '../../apps/control-plane/src/testing/control-plane-harness';
import { freePort, startBuiltApp, waitForReady, type AppProcess } from '../support/app-process';

// The export path end to end: the control-plane API (in process, real AppModule) enqueues `audit.export.run` on the
// audit-tasks queue; the BUILT audit-worker process writes the file, its SHA-256 and manifest; the API streams the
// file; the download verifies offline with the same code as `npm run audit:verify -- --export`.
const exportDir = mkdtempSync(path.join(os.tmpdir(), 'audit-api-e2e-exports-'));
const downloads = mkdtempSync(path.join(os.tmpdir(), 'audit-api-e2e-downloads-'));
let cp: ControlPlaneHarness;
let worker: AppProcess;
let app: PortcullisPrismaClient;

beforeAll(async () => {
  cp = await startControlPlane({ AUDIT_EXPORT_DIR: exportDir });
  app = createPrismaClient({ url: testContext().databaseUrl });
  const port = await freePort();
  worker = startBuiltApp('audit-worker', {
    DATABASE_URL: testContext().databaseUrl,
    REDIS_URL: testContext().redisUrl,
    AUDIT_WORKER_HEALTH_PORT: String(port),
    QUEUE_PREFIX: cp.config.queue.prefix,
    LOG_LEVEL: 'warn',
    AUDIT_EXPORT_DIR: exportDir,
  });
  await waitForReady(`http://127.0.0.1:${port}/readyz`, worker);
});

afterAll(async () => {
  await worker?.stop();
  const tasks = new Queue(AUDIT_TASKS_QUEUE, { connection: { url: testContext().redisUrl }, prefix: cp.config.queue.prefix });
  await tasks.obliterate({ force: true }).catch(() => undefined);
  await tasks.close();
  await app?.$disconnect();
  await cp?.close();
  rmSync(exportDir, { recursive: true, force: true });
  rmSync(downloads, { recursive: true, force: true });
});

type Json = Record<string, unknown>;

async function completed(tenantId: string, token: string, id: string): Promise<Json> {
  return waitFor(
    async () => {
      const res = await cp.request('GET', `/api/v1/tenants/${tenantId}/audit/exports/${id}`, { token });
      if (res.json['status'] === 'failed') throw new Error(`export failed: ${String(res.json['error'])}`);
      return res.json['status'] === 'completed' ? res.json : undefined;
    },
    { timeoutMs: 30_000, description: `audit export ${id} completed` },
  );
}

describe('audit export jobs through the API and the built worker', () => {
  it('produces a downloadable CSV that verifies offline (sha256, manifest first/last hash); the export is audited', async () => {
    const tenant = await cp.tenant();
    const auditor = await cp.member(tenant.id, 'auditor');
    const events = Array.from({ length: 25 }, (_, i) =>
      sampleAuditEvent(tenant.id, {
        occurredAt: new Date(Date.UTC(2026, 10, 1, 0, i)).toISOString(),
        tool: i % 2 === 0 ? '=cmd|"/c calc"!A1' : 'tickets__create_ticket',
        arguments: { i, note: 'a, "b"\nc' },
      }),
    );
    await new PostgresAuditEventStore(app).insert(events);
    const base = `/api/v1/tenants/${tenant.id}/audit/exports`;

    const created = await cp.request('POST', base, { token: auditor.token, body: { format: 'csv' } });
    expect(created.status, created.text).toBe(202);
    const id = String(created.json['id']);
    const done = await completed(tenant.id, auditor.token, id);
    // Unfiltered: the whole chain up to the head when the job started (the request's own audit event may be in it).
    expect(done).toMatchObject({ firstSeq: '1', downloadPath: `${base}/${id}/download` });
    const rowCount = Number(done['rowCount']);
    expect(rowCount).toBeGreaterThanOrEqual(25);
    expect(String(done['lastSeq'])).toBe(String(rowCount));

    const file = await cp.request('GET', `${base}/${id}/download`, { token: auditor.token });
    expect(file.status).toBe(200);
    expect(file.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(file.headers['content-disposition']).toBe(`attachment; filename="${id}.csv"`);
    const sha256 = createHash('sha256').update(file.text, 'utf8').digest('hex');
    expect(sha256).toBe(done['sha256']);
    expect(file.headers['repr-digest']).toBe(`sha-256=:${Buffer.from(sha256, 'hex').toString('base64')}:`);
    expect(file.text).toContain(`"'=cmd|""/c calc""!A1"`);

    const manifestRes = await cp.request('GET', `${base}/${id}/manifest`, { token: auditor.token });
    expect(manifestRes.json).toMatchObject({ sha256, rowCount, firstHash: done['firstHash'], lastHash: done['lastHash'], contiguous: true });
    const head = await cp.system.auditChainHead.findUniqueOrThrow({ where: { tenantId: tenant.id } });
    const first = await cp.system.auditEvent.findFirstOrThrow({ where: { tenantId: tenant.id, seq: 1n } });
    expect(manifestRes.json['firstHash']).toBe(first.hash);
    expect((manifestRes.json['chainRange'] as Json)['headSeq']).toBe(String(rowCount));
    expect(head.lastSeq).toBeGreaterThanOrEqual(BigInt(rowCount));

    const csvPath = path.join(downloads, `${id}.csv`);
    const manifestPath = path.join(downloads, `${id}.csv.manifest.json`);
    writeFileSync(csvPath, file.text);
    writeFileSync(manifestPath, manifestRes.text);
    expect(await verifyExportFile(csvPath, manifestPath)).toMatchObject({ ok: true, rows: rowCount, sha256 });
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    expect(await runAuditCli(['verify', '--export', csvPath, '--manifest', manifestPath], {}, io)).toBe(0);

    // One changed character in the downloaded file is caught offline.
    writeFileSync(csvPath, readFileSync(csvPath, 'utf8').replace('tickets__create_ticket', 'tickets__create_tickeT'));
    expect(await verifyExportFile(csvPath, manifestPath)).toMatchObject({ ok: false });

    // Audited: the request and the download by the control plane, the run by the worker (in the tenant's own chain).
    const emitted = await cp.eventsAtLeast(tenant.id, 2);
    expect(emitted.map((e) => e.method)).toEqual(expect.arrayContaining(['audit.export.request', 'audit.export.download']));
    const run = await waitFor(
      () => cp.system.auditEvent.findFirst({ where: { tenantId: tenant.id, method: 'audit.export', targetId: id } }),
      { timeoutMs: 20_000, description: 'the worker audited the export' },
    );
    expect(run).toMatchObject({ actorUserId: auditor.id, outcome: 'ok' });

    // Past its expiry the retention job removes the file: the download is refused, the manifest stays available.
    expect((await expireAuditExports(cp.system, exportDir, { now: new Date(Date.now() + 8 * 86_400_000) })).expired).toBeGreaterThanOrEqual(1);
    const gone = await cp.request('GET', `${base}/${id}/download`, { token: auditor.token });
    expect(gone.status).toBe(404);
    expect(gone.text).toContain('no longer available');
    expect((await cp.request('GET', `${base}/${id}`, { token: auditor.token })).json).toMatchObject({ status: 'expired' });
    expect((await cp.request('GET', `${base}/${id}/manifest`, { token: auditor.token })).json).toMatchObject({ sha256 });
  });

  it('applies the filters to the job, records them in the manifest, and keeps each row verifiable', async () => {
    const tenant = await cp.tenant();
    const admin = await cp.member(tenant.id, 'admin');
    await new PostgresAuditEventStore(app).insert(
      Array.from({ length: 12 }, (_, i) =>
        sampleAuditEvent(tenant.id, { decision: i % 3 === 0 ? 'deny' : 'allow', method: i === 0 ? 'tools/list' : 'tools/call' }),
      ),
    );
    const base = `/api/v1/tenants/${tenant.id}/audit/exports`;
    const created = await cp.request('POST', base, {
      token: admin.token,
      body: { format: 'jsonl', filters: { decision: 'deny', method: 'tools/call' } },
    });
    const id = String(created.json['id']);
    const done = await completed(tenant.id, admin.token, id);
    expect(done['rowCount']).toBe(3);
    expect(done['manifest']).toMatchObject({ filters: { decision: 'deny', method: 'tools/call' }, contiguous: false });

    const file = await cp.request('GET', `${base}/${id}/download`, { token: admin.token });
    const rows = file.text.trim().split('\n').map((l) => JSON.parse(l) as Json);
    expect(rows.map((r) => r['seq'])).toEqual(['4', '7', '10']);
    const jsonlPath = path.join(downloads, `${id}.jsonl`);
    const manifestPath = `${jsonlPath}.manifest.json`;
    writeFileSync(jsonlPath, file.text);
    writeFileSync(manifestPath, JSON.stringify(done['manifest']));
    expect(await verifyExportFile(jsonlPath, manifestPath)).toMatchObject({ ok: true, rows: 3 });

    // Another tenant's admin cannot download it.
    const other = await cp.tenant();
    const stranger = await cp.member(other.id, 'owner');
    expect((await cp.request('GET', `${base}/${id}/download`, { token: stranger.token })).status).toBe(404);
    expect((await cp.request('GET', `/api/v1/tenants/${other.id}/audit/exports/${id}/download`, { token: stranger.token })).status).toBe(404);
  });
});
