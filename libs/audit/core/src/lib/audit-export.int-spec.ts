import { computeAuditHash, type StoredChainLink } from '@portcullis/audit/chain';
import { createPrismaClient, createSystemPrismaClient } from '@portcullis/data/db';
import pg from 'pg';
import { newId } from '@portcullis/shared/util-ids';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runAuditCli } from './audit-cli';
import { ExportCancelledError, ExportInterruptedError, exportAuditEvents, verifyExportFile } from './audit-export';
import { EXPORT_FAILED_MESSAGE, expireAuditExports, MAX_KEPT_EXPORTS, requestAuditExport, runAuditExport, runRetention } from './audit-tasks';
import type { AuditEventStore } from './audit-event.store';
import { PostgresAuditEventStore } from './postgres-audit-event.store';
import { rehashAsVersion1 } from './tamper.testing';
import { sampleAuditEvent } from './testing';
import { verifyTenantChain } from './verify-tenant-chain';

const ctx = testContext();
const app = createPrismaClient({ url: ctx.databaseUrl });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
const store = new PostgresAuditEventStore(app);
const dir = mkdtempSync(path.join(os.tmpdir(), 'audit-export-'));

afterAll(async () => {
  await Promise.all([app.$disconnect(), system.$disconnect()]);
  rmSync(dir, { recursive: true, force: true });
});

const nasty = [
  '=HYPERLINK("http://evil.example","click")',
  '+1-2',
  '-3',
  '@SUM(A1:A2)',
  "'already quoted",
  'comma, "quotes" and\r\nnew lines',
  '',
];
const agent = newId();

async function seededTenant(): Promise<TestTenant> {
  const tenant = await createTestTenant(system);
  const events = Array.from({ length: 40 }, (_, i) =>
    sampleAuditEvent(tenant.id, {
      reason: nasty[i % nasty.length] ?? null,
      tool: i % 2 === 0 ? 'tickets__create_ticket' : 'files__read',
      agentClientId: i % 4 === 0 ? agent : null,
      arguments: i % 5 === 0 ? null : { i, text: nasty[i % nasty.length] ?? '', list: [1, -2.5, true, null] },
      decision: i % 3 === 0 ? 'deny' : 'allow',
    }),
  );
  await store.insert(events);
  return tenant;
}

async function cli(...argv: string[]) {
  const lines: string[] = [];
  const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
  return { code: await runAuditCli(argv, {}, io), text: lines.join('\n') };
}

describe('audit export (real Postgres, application role)', () => {
  it.each(['csv', 'jsonl'] as const)(
    'exports a whole chain to %s with a manifest that verifies offline',
    async (format) => {
      const tenant = await seededTenant();
      const outPath = path.join(dir, `${tenant.slug}.${format}`);
      const { manifest, manifestPath, sha256Path } = await exportAuditEvents(app, tenant.id, {
        format,
        filters: {},
        outPath,
        pageSize: 7,
      });
      expect(manifest).toMatchObject({
        rowCount: 40,
        firstSeq: '1',
        lastSeq: '40',
        contiguous: true,
        format,
      });
      expect(readFileSync(sha256Path, 'utf8')).toBe(`${manifest.sha256}  ${path.basename(outPath)}\n`);
      const report = await verifyExportFile(outPath, manifestPath);
      expect(report).toEqual({
        ok: true,
        rows: 40,
        sha256: manifest.sha256,
        chain: `seq 0..40 complete, head hash ${manifest.chainRange.headHash}`,
        anchor: expect.stringContaining(`hash at seq 40`),
        anchored: null,
      });
      const { code, text } = await cli('verify', '--export', outPath, '--manifest', manifestPath);
      expect(code).toBe(0);
      expect(text).toContain('OK export');
      // The offline check proves consistency with the manifest only; the output says how to anchor it.
      expect(text).toContain(`must be ${manifest.chainRange.headHash}`);
      if (format === 'csv') {
        const csv = readFileSync(outPath, 'utf8');
        // No cell a spreadsheet would evaluate: every formula-like value starts with a quote.
        for (const bad of [',=', ',"=', ',+1', ',-3,', ',@', ',"@']) expect(csv).not.toContain(bad);
        for (const good of [",'+1-2,", ",'-3,", ",'@SUM(A1:A2),", ",''already quoted,"])
          expect(csv).toContain(good);
        expect(csv).toContain(`"'=HYPERLINK(""http://evil.example"",""click"")"`);
      }
    },
  );

  it.each(['csv', 'jsonl'] as const)('verifies a %s export whose multi-byte text straddles the reader’s chunks', async (format) => {
    const tenant = await createTestTenant(system);
    // 3-byte characters over ~240 KB per event: the 64 KiB read chunks cut through characters.
    await store.insert(Array.from({ length: 3 }, (_, i) => sampleAuditEvent(tenant.id, { arguments: { i, text: '日本語'.repeat(27_000 + i) } })));
    const outPath = path.join(dir, `${tenant.slug}-wide.${format}`);
    const { manifestPath } = await exportAuditEvents(app, tenant.id, { format, filters: {}, outPath, pageSize: 2 });
    expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: true, rows: 3 });
  });

  it('exports a filtered subset whose rows still verify one by one', async () => {
    const tenant = await seededTenant();
    const outPath = path.join(dir, `${tenant.slug}-filtered.csv`);
    const { manifest, manifestPath } = await exportAuditEvents(app, tenant.id, {
      format: 'csv',
      filters: { agentClientId: agent, decision: 'deny', tool: 'tickets__create_ticket' },
      outPath,
    });
    expect(manifest.rowCount).toBe(4); // i = 0, 12, 24, 36
    expect(manifest.contiguous).toBe(false);
    expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: true, rows: 4 });
  });

  it('detects an edited export, with or without a matching digest', async () => {
    const tenant = await seededTenant();
    const outPath = path.join(dir, `${tenant.slug}-tampered.jsonl`);
    const { manifest, manifestPath } = await exportAuditEvents(app, tenant.id, {
      format: 'jsonl',
      filters: {},
      outPath,
    });
    const edited = readFileSync(outPath, 'utf8').replace('"outcome":"ok"', '"outcome":"error"');
    writeFileSync(outPath, edited);
    expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({
      ok: false,
      problem: expect.stringMatching(/^sha256/),
    });
    // A forger who also fixes the digest in the manifest is caught by the row hash.
    writeFileSync(
      manifestPath,
      JSON.stringify({ ...manifest, sha256: createHash('sha256').update(edited).digest('hex') }),
    );
    const report = await verifyExportFile(outPath, manifestPath);
    expect(report).toMatchObject({ ok: false, problem: expect.stringContaining('(seq 1') });
    expect(report).toMatchObject({ problem: expect.stringContaining('hash_mismatch') });
    expect((await cli('verify', '--export', outPath, '--manifest', manifestPath)).code).toBe(1);
  });

  it.each(['csv', 'jsonl'] as const)('exports a chain begun before hash version 2 to %s: each row verified with its own version, the stored time covered from 2 on', async (format) => {
    const tenant = await createTestTenant(system);
    await store.insert([sampleAuditEvent(tenant.id), sampleAuditEvent(tenant.id)]);
    await rehashAsVersion1(ctx.adminDatabaseUrl, tenant.id);
    await store.insert([sampleAuditEvent(tenant.id), sampleAuditEvent(tenant.id)]);
    const outPath = path.join(dir, `${tenant.slug}-versions.${format}`);
    const { manifest, manifestPath } = await exportAuditEvents(app, tenant.id, { format, filters: {}, outPath });
    expect(manifest).toMatchObject({ manifestVersion: 2, hashVersion: 2, rowCount: 4 });
    expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: true, rows: 4 });
    const text = readFileSync(outPath, 'utf8');
    if (format === 'csv') expect(text.split('\r\n')[0]).toContain(',trace_id,recorded_at,hash_version,prev_hash,hash');
    else expect(text.split('\n').filter(Boolean).map((line) => (JSON.parse(line) as StoredChainLink).hashVersion)).toEqual([1, 1, 2, 2]);

    /** Moves the stored time of the row at `seq` by an hour in the file, its digest in the manifest made to match. */
    const moveRecordedAt = (seq: number) => {
      const stored = readFileSync(outPath, 'utf8');
      const lines = stored.split(format === 'csv' ? '\r\n' : '\n');
      const line = lines[format === 'csv' ? seq : seq - 1] ?? '';
      // The second time in the row (the first is occurred_at, which may read the same).
      const [occurredAt = '', recordedAt = ''] = line.match(/\d{4}-\d\d-\d\dT[\d:.]+Z/g) ?? [];
      const at = line.indexOf(recordedAt, line.indexOf(occurredAt) + occurredAt.length);
      const moved = new Date(Date.parse(recordedAt) + 3_600_000).toISOString();
      lines[format === 'csv' ? seq : seq - 1] = `${line.slice(0, at)}${moved}${line.slice(at + recordedAt.length)}`;
      const edited = lines.join(format === 'csv' ? '\r\n' : '\n');
      writeFileSync(outPath, edited);
      writeFileSync(manifestPath, JSON.stringify({ ...manifest, sha256: createHash('sha256').update(edited).digest('hex') }));
      return stored;
    };
    // A version-2 row's stored time is covered; a version-1 row's is not (the limit the version removed).
    const original = moveRecordedAt(3);
    expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: false, problem: expect.stringContaining('(seq 3, id') });
    writeFileSync(outPath, original);
    moveRecordedAt(1);
    expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: true, rows: 4 });
  });

  it.each(['csv', 'jsonl'] as const)('still verifies a %s export written before hash version 2 (manifest version 1)', async (format) => {
    const tenant = await createTestTenant(system);
    await store.insert([sampleAuditEvent(tenant.id), sampleAuditEvent(tenant.id), sampleAuditEvent(tenant.id)]);
    await rehashAsVersion1(ctx.adminDatabaseUrl, tenant.id);
    const outPath = path.join(dir, `${tenant.slug}-v1.${format}`);
    const { manifest, manifestPath } = await exportAuditEvents(app, tenant.id, { format, filters: {}, outPath });
    /** The file as the export wrote it before version 2: no stored time, no hash version. */
    const asVersion1 = (text: string) =>
      format === 'csv'
        ? text.replace(/,(recorded_at|[\d-]+T[\d:.]+Z),(hash_version|1),/g, ',')
        : text.replace(/,"recordedAt":"[^"]+","hashVersion":1/g, '');
    const old = asVersion1(readFileSync(outPath, 'utf8'));
    expect(old).not.toMatch(/recorded_at|recordedAt|hash_version|hashVersion/);
    writeFileSync(outPath, old);
    const v1 = { ...manifest, manifestVersion: 1, hashVersion: 1, sha256: createHash('sha256').update(old).digest('hex') };
    writeFileSync(manifestPath, JSON.stringify(v1));
    expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: true, rows: 3 });
    // A version-1 file cannot hold version-2 rows, nor a version-2 manifest name a version it does not know.
    writeFileSync(manifestPath, JSON.stringify({ ...v1, hashVersion: 2 }));
    expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: false, problem: 'unsupported manifest (version 1, hash 2)' });
    writeFileSync(manifestPath, JSON.stringify({ ...v1, manifestVersion: 2, hashVersion: 3 }));
    expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: false, problem: 'unsupported manifest (version 2, hash 3)' });
  });

  it('refuses a file that is not byte for byte how the export writes its rows, though every row hash holds', async () => {
    /** Rewrites the file and puts its digest into the manifest, as anyone holding a copy can. */
    const rewrite = (file: string, manifestPath: string, edit: (text: string) => string) => {
      const text = edit(readFileSync(file, 'utf8'));
      writeFileSync(file, text);
      const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Record<string, unknown>;
      writeFileSync(manifestPath, JSON.stringify({ ...manifest, sha256: createHash('sha256').update(text).digest('hex') }));
    };
    const tenant = await createTestTenant(system);
    await store.insert([sampleAuditEvent(tenant.id, { tool: '=HYPERLINK("http://evil.example","x")' })]);
    const exportOf = async (format: 'csv' | 'jsonl', name: string) => {
      const outPath = path.join(dir, `${tenant.slug}-${name}.${format}`);
      const { manifestPath } = await exportAuditEvents(app, tenant.id, { format, filters: {}, outPath });
      expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: true });
      return { outPath, manifestPath };
    };
    const notAsWritten = { ok: false, problem: expect.stringContaining('not as the export writes its rows') };

    // The spreadsheet formula guard taken off: the cell decodes the same, a spreadsheet would run it.
    const guard = await exportOf('csv', 'guard');
    expect(readFileSync(guard.outPath, 'utf8')).toContain(`"'=HYPERLINK`);
    rewrite(guard.outPath, guard.manifestPath, (text) => text.replace(`"'=HYPERLINK`, '"=HYPERLINK'));
    expect(await verifyExportFile(guard.outPath, guard.manifestPath)).toMatchObject(notAsWritten);
    // A cell beyond the header's columns.
    const extra = await exportOf('csv', 'extra');
    rewrite(extra.outPath, extra.manifestPath, (text) => text.replace(/\r\n$/, ",=cmd|' /C calc'!A0\r\n"));
    expect(await verifyExportFile(extra.outPath, extra.manifestPath)).toMatchObject(notAsWritten);
    // A JSON field named twice: JSON.parse keeps the last, other readers the first.
    const twice = await exportOf('jsonl', 'twice');
    rewrite(twice.outPath, twice.manifestPath, (text) => text.replace('{"id":', '{"tool":"files__delete_all","id":'));
    expect(await verifyExportFile(twice.outPath, twice.manifestPath)).toMatchObject(notAsWritten);
    // The same JSON written another way (spaces after the separators).
    const spaced = await exportOf('jsonl', 'spaced');
    rewrite(spaced.outPath, spaced.manifestPath, (text) => text.replace('","', '", "'));
    expect(await verifyExportFile(spaced.outPath, spaced.manifestPath)).toMatchObject(notAsWritten);
  });

  it('refuses a filtered export when retention took events of its range while it read, or starts its range after them', async () => {
    const now = new Date();
    const at = (daysAgo: number) => new Date(now.getTime() - daysAgo * 86_400_000).toISOString();
    const tenant = await createTestTenant(system);
    await system.tenant.update({ where: { id: tenant.id }, data: { settings: { audit: { retentionDays: 30 } } } });
    // Eight denials: seq 1-6 older than the retention, 7-8 recent.
    await store.insert([60, 55, 50, 45, 40, 35, 2, 1].map((days) => sampleAuditEvent(tenant.id, { occurredAt: at(days), decision: 'deny', outcome: 'denied' })));
    const outPath = path.join(dir, `${tenant.slug}-overtaken.jsonl`);
    let pages = 0;
    // Retention runs between the first page (seq 1-2) and the second.
    const retentionAfterFirstPage = async () => {
      pages += 1;
      if (pages === 2) await runRetention(system, { now });
      return false;
    };
    await expect(exportAuditEvents(app, tenant.id, { format: 'jsonl', filters: { decision: 'deny' }, outPath, pageSize: 2, cancelled: retentionAfterFirstPage })).rejects.toBeInstanceOf(ExportInterruptedError);
    // Asked again once retention is done: the range starts at the checkpoint, and holds every denial after it.
    const { manifest, manifestPath } = await exportAuditEvents(app, tenant.id, { format: 'jsonl', filters: { decision: 'deny' }, outPath, pageSize: 2 });
    expect(manifest.chainRange).toMatchObject({ fromSeq: '6', headSeq: '8' });
    expect(readFileSync(outPath, 'utf8').trim().split('\n').map((line) => (JSON.parse(line) as { seq: string }).seq)).toEqual(['7', '8']);
    expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: true });

    // Retention before the first page: nothing of the pruned part was read, and the range starts where it ends.
    const later = await createTestTenant(system);
    await system.tenant.update({ where: { id: later.id }, data: { settings: { audit: { retentionDays: 30 } } } });
    await store.insert([60, 55, 2, 1].map((days) => sampleAuditEvent(later.id, { occurredAt: at(days), decision: 'deny', outcome: 'denied' })));
    let asked = 0;
    const retentionFirst = async () => {
      asked += 1;
      if (asked === 1) await runRetention(system, { now });
      return false;
    };
    const laterPath = path.join(dir, `${later.slug}-pruned-first.jsonl`);
    const pruned = await exportAuditEvents(app, later.id, { format: 'jsonl', filters: { decision: 'deny' }, outPath: laterPath, pageSize: 2, cancelled: retentionFirst });
    expect(pruned.manifest.chainRange).toMatchObject({ fromSeq: '2', headSeq: '4' });
    expect(await verifyExportFile(laterPath, pruned.manifestPath)).toMatchObject({ ok: true });
  });

  it('refuses a contiguous export rewritten with its hashes, digest and first/last hash, that keeps the genuine chain head', async () => {
    const tenant = await seededTenant();
    const outPath = path.join(dir, `${tenant.slug}-forged.jsonl`);
    const { manifest, manifestPath } = await exportAuditEvents(app, tenant.id, { format: 'jsonl', filters: {}, outPath });
    // Row 5 edited, it and every later row re-hashed, so that each row and each link verifies on its own.
    const links = readFileSync(outPath, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line) as StoredChainLink);
    let prevHash: string | null = null;
    const forged = links.map((link, i) => {
      const { prevHash: _p, hash: _h, ...fields } = i === 4 ? { ...link, outcome: 'error' } : link;
      const hash = computeAuditHash(fields, prevHash);
      const rewritten = { ...fields, prevHash, hash };
      prevHash = hash;
      return rewritten;
    });
    const text = forged.map((link) => `${JSON.stringify(link)}\n`).join('');
    writeFileSync(outPath, text);
    // The manifest's own fields recomputed too; its chain range still names the head the export was cut at.
    writeFileSync(
      manifestPath,
      JSON.stringify({ ...manifest, sha256: createHash('sha256').update(text).digest('hex'), firstHash: forged[0]?.hash, lastHash: forged.at(-1)?.hash }),
    );
    expect(forged.at(-1)?.hash).not.toBe(manifest.chainRange.headHash);
    expect(await verifyExportFile(outPath, manifestPath)).toEqual({
      ok: false,
      problem: `rows end at hash ${forged.at(-1)?.hash}, the chain head's hash was ${manifest.chainRange.headHash}`,
    });
    expect((await cli('verify', '--export', outPath, '--manifest', manifestPath)).code).toBe(1);
  });

  it('refuses a contiguous export with no rows whose checkpoint is not the chain head it names', async () => {
    const tenant = await createTestTenant(system);
    const outPath = path.join(dir, `${tenant.slug}-empty.jsonl`);
    const { manifest, manifestPath } = await exportAuditEvents(app, tenant.id, { format: 'jsonl', filters: {}, outPath });
    expect(manifest).toMatchObject({ rowCount: 0, contiguous: true, chainRange: { fromSeq: '0', fromHash: null, headSeq: '0', headHash: null } });
    expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: true, rows: 0 });
    writeFileSync(manifestPath, JSON.stringify({ ...manifest, chainRange: { ...manifest.chainRange, headHash: 'f'.repeat(64) } }));
    expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: false, problem: expect.stringContaining("the chain head's hash") });
  });

  it('runs a requested export as a job, records it in AuditExport, and audits the export in the chain', async () => {
    const tenant = await seededTenant();
    const enqueued: unknown[] = [];
    const { exportId } = await requestAuditExport(
      app,
      tenant.id,
      { format: 'csv', filters: { decision: 'deny' }, requestedById: null },
      async (name, data, opts) => void enqueued.push({ name, data, opts }),
    );
    expect(enqueued).toEqual([
      {
        name: 'audit.export.run',
        data: { v: 1, exportId, tenantId: tenant.id },
        opts: { jobId: `export-${exportId}` },
      },
    ]);
    expect(await runAuditExport(app, store, { v: 1, exportId, tenantId: tenant.id }, dir)).toEqual({
      status: 'completed',
    });
    expect(await runAuditExport(app, store, { v: 1, exportId, tenantId: tenant.id }, dir)).toEqual({
      status: 'skipped',
    });

    const row = await system.auditExport.findUniqueOrThrow({ where: { id: exportId } });
    expect(row).toMatchObject({ status: 'completed', rowCount: 14, firstSeq: 1n, lastSeq: 40n });
    expect(row.filePath).toBe(path.join(dir, tenant.id, `${exportId}.csv`));
    // Never readable by other users of the host: the file holds call arguments (owner and group only).
    for (const name of [row.filePath ?? '', `${row.filePath}.sha256`, `${row.filePath}.manifest.json`, path.join(dir, tenant.id)]) {
      expect(statSync(name).mode & 0o007).toBe(0);
    }
    writeFileSync(`${row.filePath}.manifest.check.json`, JSON.stringify(row.manifest));
    expect(await verifyExportFile(row.filePath ?? '', `${row.filePath}.manifest.check.json`)).toMatchObject({
      ok: true,
      rows: 14,
    });

    const audited = await system.auditEvent.findMany({
      where: { tenantId: tenant.id, method: 'audit.export' },
    });
    expect(audited).toHaveLength(1);
    expect(audited[0]).toMatchObject({
      kind: 'control_plane',
      targetType: 'audit_export',
      targetId: exportId,
      outcome: 'ok',
      seq: 41n,
    });
    expect(await verifyTenantChain(system, tenant.id)).toMatchObject({ ok: true, checked: 41 });
  });
});

describe('an audit export run again', () => {
  it('records the digest of the file the last run produced when the first run\'s status update was lost', async () => {
    const tenant = await seededTenant();
    const { exportId } = await requestAuditExport(app, tenant.id, { format: 'jsonl', filters: {}, requestedById: null }, async () => undefined);
    expect(await runAuditExport(app, store, { v: 1, exportId, tenantId: tenant.id }, dir)).toEqual({ status: 'completed' });
    const first = await system.auditExport.findUniqueOrThrow({ where: { id: exportId } });
    // As if the worker died before marking the row completed: the job runs again over a chain that has moved on
    // (the first run's own audit event is in it now), so the new file differs.
    await system.auditExport.update({ where: { id: exportId }, data: { status: 'running', sha256: null } });
    expect(await runAuditExport(app, store, { v: 1, exportId, tenantId: tenant.id }, dir)).toEqual({ status: 'completed' });
    const second = await system.auditExport.findUniqueOrThrow({ where: { id: exportId } });
    expect(second.sha256).not.toBe(first.sha256);
    const recorded = await system.auditEvent.findMany({ where: { tenantId: tenant.id, method: 'audit.export', targetId: exportId }, orderBy: { seq: 'asc' } });
    const digests = recorded.map((event) => (event.arguments as { sha256?: string }).sha256);
    // The file served now has its own event in the chain (before, only the first run's digest was recorded).
    expect(digests).toEqual([first.sha256, second.sha256]);
  });
});

describe('a failed audit export', () => {
  it('leaves no file behind and tells the tenant a fixed sentence, never the server-side reason', async () => {
    const tenant = await seededTenant();
    const { exportId } = await requestAuditExport(app, tenant.id, { format: 'csv', filters: {}, requestedById: null }, async () => undefined);
    // The export is written, then recording its audit event fails (the database went away, say).
    const failing: AuditEventStore = { insert: async () => Promise.reject(new Error(`connection to /var/run/postgresql refused for ${dir}`)) };
    await expect(runAuditExport(app, failing, { v: 1, exportId, tenantId: tenant.id }, dir)).rejects.toThrow(/refused/);
    const row = await system.auditExport.findUniqueOrThrow({ where: { id: exportId } });
    expect(row).toMatchObject({ status: 'failed', error: EXPORT_FAILED_MESSAGE });
    expect(readdirSync(path.join(dir, tenant.id)).filter((name) => name.startsWith(exportId))).toEqual([]);
  });
});

describe('a cancelled audit export', () => {
  const filesOf = (tenantId: string, exportId: string) =>
    existsSync(path.join(dir, tenantId)) ? readdirSync(path.join(dir, tenantId)).filter((name) => name.startsWith(exportId)) : [];

  it('is not run once cancelled, and a cancel while it runs stops it before its next page, leaving no file', async () => {
    const tenant = await seededTenant();
    const request = () => requestAuditExport(app, tenant.id, { format: 'csv', filters: {}, requestedById: null }, async () => undefined);
    const queued = (await request()).exportId;
    await system.auditExport.update({ where: { id: queued }, data: { status: 'cancelled' } });
    expect(await runAuditExport(app, store, { v: 1, exportId: queued, tenantId: tenant.id }, dir)).toEqual({ status: 'skipped' });
    expect(await system.auditExport.findUniqueOrThrow({ where: { id: queued } })).toMatchObject({ status: 'cancelled', startedAt: null });
    expect(filesOf(tenant.id, queued)).toEqual([]);

    // Pages of 10 rows: cancelled once the first page is written, the export stops and its partial file goes.
    const outPath = path.join(dir, `${newId()}.csv`);
    let asked = 0;
    await expect(
      exportAuditEvents(app, tenant.id, { format: 'csv', filters: {}, outPath, pageSize: 10, cancelled: async () => ++asked > 1 }),
    ).rejects.toBeInstanceOf(ExportCancelledError);
    expect(asked).toBe(2);
    expect(existsSync(outPath) || existsSync(`${outPath}.partial`)).toBe(false);
    // Cancelled before the first page, while the file is still being opened: no error afterwards, no file left.
    const early = path.join(dir, `${newId()}.csv`);
    await expect(exportAuditEvents(app, tenant.id, { format: 'csv', filters: {}, outPath: early, cancelled: async () => true })).rejects.toBeInstanceOf(ExportCancelledError);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(existsSync(early) || existsSync(`${early}.partial`)).toBe(false);
  });

  it('removes the file of a run cancelled after its last page, stays cancelled, and records no export of it', async () => {
    const tenant = await seededTenant();
    const { exportId } = await requestAuditExport(app, tenant.id, { format: 'jsonl', filters: {}, requestedById: null }, async () => undefined);
    // Cancelled at the last moment: the file is written, the row not yet marked completed.
    const cancel = async () => void (await system.auditExport.update({ where: { id: exportId }, data: { status: 'cancelled' } }));
    expect(await runAuditExport(app, store, { v: 1, exportId, tenantId: tenant.id }, dir, undefined, { written: cancel })).toEqual({ status: 'cancelled' });
    expect(await system.auditExport.findUniqueOrThrow({ where: { id: exportId } })).toMatchObject({ status: 'cancelled', sha256: null, filePath: null });
    expect(filesOf(tenant.id, exportId)).toEqual([]);
    expect(await system.auditEvent.count({ where: { tenantId: tenant.id, method: 'audit.export', targetId: exportId } })).toBe(0);
    // A retry of its job (a worker that had died mid-run, leaving a partial file) runs nothing and removes what is left.
    mkdirSync(path.join(dir, tenant.id), { recursive: true });
    writeFileSync(path.join(dir, tenant.id, `${exportId}.jsonl.partial`), 'half');
    expect(await runAuditExport(app, store, { v: 1, exportId, tenantId: tenant.id }, dir)).toEqual({ status: 'skipped' });
    expect(filesOf(tenant.id, exportId)).toEqual([]);
  });

  it('records what became of the file when the cancel wins after the export was recorded', async () => {
    const tenant = await seededTenant();
    const { exportId } = await requestAuditExport(app, tenant.id, { format: 'csv', filters: {}, requestedById: null }, async () => undefined);
    const cancel = async () => void (await system.auditExport.update({ where: { id: exportId }, data: { status: 'cancelled' } }));
    expect(await runAuditExport(app, store, { v: 1, exportId, tenantId: tenant.id }, dir, undefined, { recorded: cancel })).toEqual({ status: 'cancelled' });
    expect(await system.auditExport.findUniqueOrThrow({ where: { id: exportId } })).toMatchObject({ status: 'cancelled', filePath: null });
    expect(filesOf(tenant.id, exportId)).toEqual([]);
    const events = await system.auditEvent.findMany({ where: { tenantId: tenant.id, method: 'audit.export', targetId: exportId }, orderBy: { seq: 'asc' } });
    expect(events.map((event) => event.outcome)).toEqual(['ok', 'cancelled']);
    expect((events[1]?.arguments as { sha256?: string; removed?: boolean })).toEqual({ sha256: (events[0]?.arguments as { sha256: string }).sha256, removed: true });
  });

  it('publishes only the file of the run that claimed the export last, when BullMQ hands a stalled job on while its first run still goes (found by a review)', async () => {
    const tenant = await seededTenant();
    const { exportId } = await requestAuditExport(app, tenant.id, { format: 'csv', filters: {}, requestedById: null }, async () => undefined);
    const job = { v: 1 as const, exportId, tenantId: tenant.id };
    // The first run has written its file and recorded it; the second (the job handed on) runs to its end meanwhile.
    let second: { status: string } | undefined;
    const first = await runAuditExport(app, store, job, dir, undefined, { recorded: async () => void (second = await runAuditExport(app, store, job, dir)) });
    expect({ first, second }).toEqual({ first: { status: 'skipped' }, second: { status: 'completed' } });
    const row = await system.auditExport.findUniqueOrThrow({ where: { id: exportId } });
    expect(row.status).toBe('completed');
    // What is served is what the row and its manifest describe, and nothing else of either run is left.
    expect(filesOf(tenant.id, exportId).sort()).toEqual([`${exportId}.csv`, `${exportId}.csv.manifest.json`, `${exportId}.csv.sha256`]);
    writeFileSync(`${row.filePath}.manifest.check.json`, JSON.stringify(row.manifest));
    expect(await verifyExportFile(row.filePath ?? '', `${row.filePath}.manifest.check.json`)).toMatchObject({ ok: true });
    expect(await verifyExportFile(row.filePath ?? '', `${row.filePath}.manifest.json`)).toMatchObject({ ok: true });
    rmSync(`${row.filePath}.manifest.check.json`);
    // The chain tells of both files: the first run's removed, the second's served.
    const events = await system.auditEvent.findMany({ where: { tenantId: tenant.id, method: 'audit.export', targetId: exportId }, orderBy: { seq: 'asc' } });
    const told = events.map((event) => ({ outcome: event.outcome, ...(event.arguments as { sha256?: string; removed?: boolean }) }));
    const firstDigest = told[0]?.sha256;
    expect(firstDigest).not.toBe(row.sha256);
    expect(told).toMatchObject([
      { outcome: 'ok', sha256: firstDigest },
      { outcome: 'ok', sha256: row.sha256 },
      { outcome: 'cancelled', sha256: firstDigest, removed: true, supersededByAnotherRun: true },
    ]);
  });

  it('leaves a run whose claim another run took over without publishing or failing anything', async () => {
    const tenant = await seededTenant();
    const { exportId } = await requestAuditExport(app, tenant.id, { format: 'jsonl', filters: {}, requestedById: null }, async () => undefined);
    // Another run of the job claims the export while this one writes (it has not finished yet).
    const claimedElsewhere = async () => void (await system.auditExport.update({ where: { id: exportId }, data: { startedAt: new Date(Date.now() + 60_000) } }));
    expect(await runAuditExport(app, store, { v: 1, exportId, tenantId: tenant.id }, dir, undefined, { written: claimedElsewhere })).toEqual({ status: 'skipped' });
    expect(await system.auditExport.findUniqueOrThrow({ where: { id: exportId } })).toMatchObject({ status: 'running', sha256: null, filePath: null, error: null });
    expect(filesOf(tenant.id, exportId)).toEqual([]);
    // A failing run whose claim was taken over does not mark the other run's export failed.
    const failing: AuditEventStore = { insert: async () => Promise.reject(new Error('store down')) };
    const { exportId: other } = await requestAuditExport(app, tenant.id, { format: 'jsonl', filters: {}, requestedById: null }, async () => undefined);
    const takenOver = async () => void (await system.auditExport.update({ where: { id: other }, data: { startedAt: new Date(Date.now() + 60_000) } }));
    await expect(runAuditExport(app, failing, { v: 1, exportId: other, tenantId: tenant.id }, dir, undefined, { written: takenOver })).rejects.toThrow(/store down/);
    expect(await system.auditExport.findUniqueOrThrow({ where: { id: other } })).toMatchObject({ status: 'running', error: null });
  });
});

describe('runs of one export job (found by re-review)', () => {
  const request = async (tenant: TestTenant, format: 'csv' | 'jsonl' = 'csv') =>
    (await requestAuditExport(app, tenant.id, { format, filters: {}, requestedById: null }, async () => undefined)).exportId;
  const filesOf = (tenantId: string, exportId: string) =>
    existsSync(path.join(dir, tenantId)) ? readdirSync(path.join(dir, tenantId)).filter((name) => name.startsWith(exportId)) : [];

  it('a run of the job that comes after the export expired does not export it again over its record', async () => {
    const tenant = await seededTenant();
    const exportId = await request(tenant);
    const job = { v: 1 as const, exportId, tenantId: tenant.id };
    expect(await runAuditExport(app, store, job, dir)).toEqual({ status: 'completed' });
    const completed = await system.auditExport.findUniqueOrThrow({ where: { id: exportId } });
    // Expired (its TTL, or ten newer exports completing): only the file goes; its manifest stays for whoever downloaded it.
    await expireAuditExports(system, dir, { now: new Date(Date.now() + 30 * 86_400_000) });
    expect((await system.auditExport.findUniqueOrThrow({ where: { id: exportId } })).status).toBe('expired');
    await store.insert([sampleAuditEvent(tenant.id, {})]);
    // The same job run again (BullMQ handing on a job it took for stalled).
    expect(await runAuditExport(app, store, job, dir)).toEqual({ status: 'skipped' });
    const after = await system.auditExport.findUniqueOrThrow({ where: { id: exportId } });
    expect({ status: after.status, sha256: after.sha256, lastSeq: after.lastSeq }).toEqual({ status: 'expired', sha256: completed.sha256, lastSeq: completed.lastSeq });
  });

  it('a failing or cancelled run removes what an earlier run of the job that died left under its staging name', async () => {
    const tenant = await seededTenant();
    const failing: AuditEventStore = { insert: async () => Promise.reject(new Error('store down')) };
    const left: Record<string, string[]> = {};
    for (const outcome of ['failed', 'cancelled'] as const) {
      const exportId = await request(tenant);
      // A worker died mid-run: its partial copy of the trail is on the export volume.
      mkdirSync(path.join(dir, tenant.id), { recursive: true });
      writeFileSync(path.join(dir, tenant.id, `${exportId}.csv.run-0123456789ab.partial`), 'x'.repeat(1_000_000));
      const job = { v: 1 as const, exportId, tenantId: tenant.id };
      if (outcome === 'failed') await expect(runAuditExport(app, failing, job, dir)).rejects.toThrow(/store down/);
      else {
        const cancel = async () => void (await system.auditExport.update({ where: { id: exportId }, data: { status: 'cancelled' } }));
        expect(await runAuditExport(app, store, job, dir, undefined, { written: cancel })).toEqual({ status: 'cancelled' });
      }
      expect((await system.auditExport.findUniqueOrThrow({ where: { id: exportId } })).status).toBe(outcome);
      // Nothing expires a failed or cancelled export later: what is left then would stay for good.
      left[outcome] = filesOf(tenant.id, exportId);
    }
    expect(left).toEqual({ failed: [], cancelled: [] });
  });

  it('the chain tells of every superseded run whose file was removed, not only the first', async () => {
    const tenant = await seededTenant();
    const exportId = await request(tenant);
    const job = { v: 1 as const, exportId, tenantId: tenant.id };
    // Three runs of the job, each recording its file before the next one (the job handed on twice) runs to its end.
    const results: { status: string }[] = [];
    const third = async () => void results.push(await runAuditExport(app, store, job, dir));
    const second = async () => void results.push(await runAuditExport(app, store, job, dir, undefined, { recorded: third }));
    results.push(await runAuditExport(app, store, job, dir, undefined, { recorded: second }));
    expect(results).toEqual([{ status: 'completed' }, { status: 'skipped' }, { status: 'skipped' }]);
    const events = await system.auditEvent.findMany({ where: { tenantId: tenant.id, method: 'audit.export', targetId: exportId }, orderBy: { seq: 'asc' } });
    const told = events.map((event) => ({ outcome: event.outcome, sha256: (event.arguments as { sha256?: string }).sha256 }));
    const ok = told.filter((event) => event.outcome === 'ok').map((event) => event.sha256);
    expect(ok).toHaveLength(3);
    const row = await system.auditExport.findUniqueOrThrow({ where: { id: exportId } });
    const removed = told.filter((event) => event.outcome === 'cancelled').map((event) => event.sha256).sort();
    expect(removed).toEqual(ok.filter((digest) => digest !== row.sha256).sort());
  });
});

describe('completed audit exports kept', () => {
  it(`are the ${MAX_KEPT_EXPORTS} newest per tenant: one more completing expires the oldest and removes its files at once (found by a review)`, async () => {
    const tenant = await seededTenant();
    const other = await seededTenant();
    const runOne = async (tenantId: string) => {
      const { exportId } = await requestAuditExport(app, tenantId as Parameters<typeof requestAuditExport>[1], { format: 'jsonl', filters: {}, requestedById: null }, async () => undefined);
      expect(await runAuditExport(app, store, { v: 1, exportId, tenantId }, dir)).toEqual({ status: 'completed' });
      return exportId;
    };
    const othersExport = await runOne(other.id);
    const ids: string[] = [];
    for (let i = 0; i < MAX_KEPT_EXPORTS + 2; i++) ids.push(await runOne(tenant.id));
    const rows = await system.auditExport.findMany({ where: { tenantId: tenant.id }, select: { id: true, status: true, filePath: true } });
    const statusOf = (id: string) => rows.find((row) => row.id === id)?.status;
    expect(ids.map(statusOf)).toEqual([...Array<string>(2).fill('expired'), ...Array<string>(MAX_KEPT_EXPORTS).fill('completed')]);
    const files = readdirSync(path.join(dir, tenant.id));
    for (const id of ids.slice(0, 2)) expect(files.filter((name) => name.startsWith(id))).toEqual([]);
    for (const id of ids.slice(2)) expect(files.filter((name) => name.startsWith(id))).toHaveLength(3);
    // Another tenant's export is not counted against them.
    expect(await system.auditExport.findUniqueOrThrow({ where: { id: othersExport } })).toMatchObject({ status: 'completed' });
  }, 60_000);
});

describe('audit export expiry (real Postgres, system role)', () => {
  it('removes the file of an export past its expiry and marks it expired, keeping its manifest; others untouched', async () => {
    const tenant = await seededTenant();
    const run = async (ttlMs: number) => {
      const { exportId } = await requestAuditExport(app, tenant.id, { format: 'jsonl', filters: {}, requestedById: null }, async () => undefined);
      await runAuditExport(app, store, { v: 1, exportId, tenantId: tenant.id }, dir, ttlMs);
      return system.auditExport.findUniqueOrThrow({ where: { id: exportId } });
    };
    const shortLived = await run(60_000);
    const longLived = await run(30 * 86_400_000);
    expect(shortLived.expiresAt?.getTime()).toBeGreaterThan(Date.now());
    const file = path.join(dir, tenant.id, `${shortLived.id}.jsonl`);
    expect(existsSync(file)).toBe(true);

    // Cross-tenant: other specs' exports may be due too, so this tenant's rows are what is checked.
    await expireAuditExports(system, dir, { now: new Date() });
    expect((await system.auditExport.findUniqueOrThrow({ where: { id: shortLived.id } })).status).toBe('completed');
    expect(existsSync(file)).toBe(true);
    const later = new Date(Date.now() + 120_000);
    expect((await expireAuditExports(system, dir, { now: later })).expired).toBeGreaterThanOrEqual(1);
    expect(existsSync(file)).toBe(false);
    expect(existsSync(`${file}.sha256`) || existsSync(`${file}.manifest.json`)).toBe(false);
    const expired = await system.auditExport.findUniqueOrThrow({ where: { id: shortLived.id } });
    expect(expired).toMatchObject({ status: 'expired', filePath: null, sha256: shortLived.sha256 });
    expect(expired.manifest).toEqual(shortLived.manifest);
    const kept = await system.auditExport.findUniqueOrThrow({ where: { id: longLived.id } });
    expect(kept.status).toBe('completed');
    expect(existsSync(path.join(dir, tenant.id, `${longLived.id}.jsonl`))).toBe(true);
    // Nothing left to do on a second pass (and a file already gone is no error).
    await expect(expireAuditExports(system, dir, { now: later })).resolves.toBeDefined();
    expect((await system.auditExport.findUniqueOrThrow({ where: { id: shortLived.id } })).status).toBe('expired');
  });
});

describe('audit retention (real Postgres, system role)', () => {
  it("deletes a tenant's events older than its retention, oldest first, and the chain verifies from the checkpoint", async () => {
    const tenant = await createTestTenant(system);
    await system.tenant.update({
      where: { id: tenant.id },
      data: { settings: { audit: { retentionDays: 30 } } },
    });
    const other = await createTestTenant(system); // no retention setting: keeps everything
    const day = 86_400_000;
    const now = new Date('2026-11-22T12:00:00Z');
    const at = (daysAgo: number) => new Date(now.getTime() - daysAgo * day).toISOString();
    // seq 1-6 old, 7 recent, 8 old again (arrived late), 9-10 recent.
    const ages = [60, 59, 50, 45, 40, 31, 5, 35, 2, 1];
    await store.insert(ages.map((d) => sampleAuditEvent(tenant.id, { occurredAt: at(d) })));
    await store.insert([sampleAuditEvent(other.id, { occurredAt: at(400) })]);

    const result = await runRetention(system, { now, batchSize: 4 });
    const mine = result.perTenant.find((t) => t.tenantId === tenant.id);
    expect(mine).toEqual({ tenantId: tenant.id, deleted: 6, prunedThroughSeq: '6' });
    expect(result.perTenant.find((t) => t.tenantId === other.id)).toBeUndefined();
    const left = await system.auditEvent.findMany({
      where: { tenantId: tenant.id },
      select: { seq: true },
      orderBy: { seq: 'asc' },
    });
    expect(left.map((r) => r.seq)).toEqual([7n, 8n, 9n, 10n]);
    expect(await system.auditEvent.count({ where: { tenantId: other.id } })).toBe(1);

    const report = await verifyTenantChain(system, tenant.id);
    expect(report).toMatchObject({ ok: true, checked: 4, fromSeq: '6', lastSeq: '10' });
    // New events keep chaining after a prune.
    await store.insert([sampleAuditEvent(tenant.id)]);
    expect(await verifyTenantChain(system, tenant.id)).toMatchObject({ ok: true, checked: 5, lastSeq: '11' });
    // Running again changes nothing until seq 7 ages out.
    expect(
      (await runRetention(system, { now })).perTenant.find((t) => t.tenantId === tenant.id)?.deleted,
    ).toBe(0);
  });

  it('deletes nothing from a row that does not verify on: the edited row stays for verification to name', async () => {
    const tenant = await createTestTenant(system);
    await system.tenant.update({ where: { id: tenant.id }, data: { settings: { audit: { retentionDays: 30 } } } });
    const now = new Date('2026-11-22T12:00:00Z');
    const at = (daysAgo: number) => new Date(now.getTime() - daysAgo * 86_400_000).toISOString();
    await store.insert([60, 50, 40, 35, 1].map((d) => sampleAuditEvent(tenant.id, { occurredAt: at(d) })));
    // Someone with the database's keys edits seq 3 (triggers off for the transaction), as an attacker would.
    const owner = new pg.Client({ connectionString: ctx.adminDatabaseUrl });
    await owner.connect();
    try {
      await owner.query('BEGIN');
      await owner.query('SET LOCAL session_replication_role = replica');
      await owner.query(`UPDATE audit_events SET reason = 'nothing to see' WHERE tenant_id = $1::uuid AND seq = 3`, [tenant.id]);
      await owner.query('COMMIT');
    } finally {
      await owner.end();
    }
    const result = await runRetention(system, { now, batchSize: 2 });
    // The first batch (seq 1-2) verifies and goes; the next holds the edited row: refused, nothing more deleted.
    expect(result.perTenant.find((t) => t.tenantId === tenant.id)).toEqual({ tenantId: tenant.id, deleted: 2, prunedThroughSeq: '2' });
    expect(result.refused).toContainEqual({ tenantId: tenant.id, seq: '3', problem: 'hash_mismatch' });
    expect(await verifyTenantChain(system, tenant.id)).toMatchObject({ ok: false, brokenAt: { seq: '3', problem: 'hash_mismatch' } });
    // And again on the next run: the evidence is never pruned away.
    expect((await runRetention(system, { now })).refused).toContainEqual({ tenantId: tenant.id, seq: '3', problem: 'hash_mismatch' });
    expect(await system.auditEvent.count({ where: { tenantId: tenant.id } })).toBe(3);
  });

  it('an unfiltered export that retention overtakes starts from the new checkpoint, or stops: never a file with a gap', async () => {
    const now = new Date();
    const at = (daysAgo: number) => new Date(now.getTime() - daysAgo * 86_400_000).toISOString();
    const seeded = async () => {
      const tenant = await createTestTenant(system);
      await system.tenant.update({ where: { id: tenant.id }, data: { settings: { audit: { retentionDays: 30 } } } });
      await store.insert([60, 55, 50, 45, 40, 35, 2, 1].map((d) => sampleAuditEvent(tenant.id, { occurredAt: at(d) })));
      return tenant;
    };
    // Retention runs once, before the page whose turn it is (the cancel check comes before each page).
    const pruneBefore = (page: number) => {
      let pages = 0;
      return async () => {
        pages += 1;
        if (pages === page) await runRetention(system, { now });
        return false;
      };
    };

    const early = await seeded();
    const earlyPath = path.join(dir, `overtaken-early-${early.id}.jsonl`);
    const { manifest } = await exportAuditEvents(app, early.id, { format: 'jsonl', filters: {}, outPath: earlyPath, pageSize: 2, cancelled: pruneBefore(1) });
    expect(manifest).toMatchObject({ rowCount: 2, firstSeq: '7', chainRange: { fromSeq: '6', headSeq: '8' }, contiguous: true });
    expect(await verifyExportFile(earlyPath, `${earlyPath}.manifest.json`)).toMatchObject({ ok: true, rows: 2 });

    const late = await seeded();
    const latePath = path.join(dir, `overtaken-late-${late.id}.jsonl`);
    // Seq 1-2 read, then 1-6 pruned: the next page would start at 7, a gap.
    await expect(exportAuditEvents(app, late.id, { format: 'jsonl', filters: {}, outPath: latePath, pageSize: 2, cancelled: pruneBefore(2) })).rejects.toBeInstanceOf(ExportInterruptedError);
    expect(existsSync(latePath) || existsSync(`${latePath}.partial`)).toBe(false);
  });
});
