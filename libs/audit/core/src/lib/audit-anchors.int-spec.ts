import {
  auditAnchorSigner,
  auditVerificationKeys,
  verifyAnchorSignature,
  type AuditAnchorSigner,
} from '@portcullis/audit/chain';
import { createPrismaClient, createSystemPrismaClient, withTenant } from '@portcullis/data/db';
import { tenantId as asTenantId } from '@portcullis/shared/util-ids';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { anchorAuditChains, type SignedHeads } from './audit-anchors';
import { runAuditCli } from './audit-cli';
import { exportAuditEvents, verifyExportFile, type AuditExportManifest } from './audit-export';
import { runRetention } from './audit-tasks';
import { PostgresAuditEventStore } from './postgres-audit-event.store';
import { asDatabaseOwner, rewriteChainFrom } from './tamper.testing';
import { sampleAuditEvent } from './testing';
import { verifyTenantChain } from './verify-tenant-chain';

const ctx = testContext();
const app = createPrismaClient({ url: ctx.databaseUrl });
const system = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
const store = new PostgresAuditEventStore(app);
const dir = mkdtempSync(path.join(os.tmpdir(), 'audit-anchors-'));

afterAll(async () => {
  await Promise.all([app.$disconnect(), system.$disconnect()]);
  rmSync(dir, { recursive: true, force: true });
});

function keyPair(): { signer: AuditAnchorSigner; publicPem: string; publicFile: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const signer = auditAnchorSigner(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  const publicFile = path.join(dir, `${signer.keyId}.pub`);
  writeFileSync(publicFile, publicPem);
  return { signer, publicPem, publicFile };
}
const worker = keyPair();
const keys = auditVerificationKeys(worker.publicPem);
/** What the worker process remembers having signed (it keeps this across its sweeps). */
const workerMemory: SignedHeads = new Map();

/** Every tenant this spec made: the sweeps below page through more than one. */
const mine: string[] = [];

async function tenantWithEvents(count: number): Promise<TestTenant> {
  const tenant = await createTestTenant(system);
  mine.push(tenant.id);
  await store.insert(Array.from({ length: count }, (_, i) => sampleAuditEvent(tenant.id, { arguments: { i } })));
  return tenant;
}

/**
 * Signs the tenant's head if it moved. Only this spec's tenants: specs running beside it share the database, and an
 * anchor on their tenants would change what their exports say. (The worker signs every tenant: the e2e spec.)
 */
async function anchorNow(tenant: TestTenant, signed: SignedHeads = workerMemory) {
  const result = await anchorAuditChains(system, worker.signer, { batchSize: 3, tenantIds: [tenant.id, ...mine], signed });
  return { anchored: result.anchored.filter((a) => a.tenantId === tenant.id), refused: result.refused.filter((r) => r.tenantId === tenant.id) };
}

const asOwner = <T>(fn: (client: pg.Client) => Promise<T>): Promise<T> => asDatabaseOwner(ctx.adminDatabaseUrl, fn);
const rewriteFrom = (tenant: TestTenant, seq: number, reason: string): Promise<void> => rewriteChainFrom(ctx.adminDatabaseUrl, tenant.id, seq, reason);

const sha256Of = (text: string) => createHash('sha256').update(text).digest('hex');

async function cli(...argv: string[]) {
  const lines: string[] = [];
  const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
  return { code: await runAuditCli(argv, { DATABASE_SYSTEM_URL: ctx.systemDatabaseUrl }, io), text: lines.join('\n') };
}

describe('signed anchors of the audit chain (real Postgres)', () => {
  it('signs a head once, and again only after it moved', async () => {
    const tenant = await tenantWithEvents(5);
    const head = await system.auditChainHead.findUniqueOrThrow({ where: { tenantId: tenant.id } });
    const first = await anchorNow(tenant);
    expect(first.anchored).toHaveLength(1);
    const [anchor] = first.anchored;
    if (!anchor) throw new Error('no anchor');
    expect(anchor).toMatchObject({ tenantId: tenant.id, seq: '5', hash: head.lastHash, keyId: worker.signer.keyId });
    expect(verifyAnchorSignature(anchor, keys)).toBe('valid');
    const stored = await system.auditAnchor.findMany({ where: { tenantId: tenant.id } });
    expect(stored.map((a) => [a.seq, a.hash, a.signature])).toEqual([[5n, head.lastHash, anchor.signature]]);

    expect((await anchorNow(tenant)).anchored).toEqual([]);
    await store.insert([sampleAuditEvent(tenant.id), sampleAuditEvent(tenant.id)]);
    expect((await anchorNow(tenant)).anchored.map((a) => a.seq)).toEqual(['7']);
  });

  it('two workers anchoring at once store one anchor for a head', async () => {
    const tenant = await tenantWithEvents(3);
    const other = keyPair();
    const only = { tenantIds: [tenant.id] };
    const [a, b] = await Promise.all([anchorAuditChains(system, worker.signer, only), anchorAuditChains(system, other.signer, only)]);
    const mine = [...a.anchored, ...b.anchored].filter((x) => x.tenantId === tenant.id);
    expect(mine).toHaveLength(1);
    expect(await system.auditAnchor.count({ where: { tenantId: tenant.id } })).toBe(1);
  });

  it('catches a rewrite with every hash recomputed, which the chain alone cannot', async () => {
    const tenant = await tenantWithEvents(12);
    await anchorNow(tenant);
    await rewriteFrom(tenant, 4, 'nothing to see here');

    // The hash chain is consistent again: only the anchor tells.
    expect(await verifyTenantChain(system, tenant.id)).toMatchObject({ ok: true, checked: 12 });
    const report = await verifyTenantChain(system, tenant.id, { keys, batchSize: 5 });
    expect(report).toMatchObject({ ok: false, brokenAt: { seq: '12', problem: 'anchor_mismatch' } });

    const { code, text } = await cli('verify', '--tenant', tenant.slug, '--public-key', worker.publicFile);
    expect(code).toBe(1);
    expect(text).toContain(`BROKEN ${tenant.slug}: first broken link at seq 12`);
    expect(text).toContain('anchor_mismatch');
    // And the worker does not sign the rewritten head: the anchor for seq 12 stays the genuine one.
    expect((await anchorNow(tenant)).anchored).toEqual([]);
  });

  it('proves the chain through its last anchor, and says what is not signed yet', async () => {
    const tenant = await tenantWithEvents(6);
    await anchorNow(tenant);
    await store.insert([sampleAuditEvent(tenant.id), sampleAuditEvent(tenant.id)]);
    const report = await verifyTenantChain(system, tenant.id, { keys, batchSize: 4 });
    expect(report).toMatchObject({ ok: true, checked: 8, anchors: { checked: 1, last: { seq: '6' } } });
    const { code, text } = await cli('verify', '--tenant', tenant.slug, '--public-key', worker.publicFile);
    expect(code).toBe(0);
    expect(text).toContain(`ANCHORED ${tenant.slug}: 1 signed anchor(s) match; proven through seq 6`);
    expect(text).toContain('seq 7..8 not signed yet');
  });

  it('refuses anchors signed with another key, and reports a chain whose anchors were all removed', async () => {
    const tenant = await tenantWithEvents(4);
    await anchorNow(tenant);
    const stranger = keyPair();
    expect(await verifyTenantChain(system, tenant.id, { keys: auditVerificationKeys(stranger.publicPem) })).toMatchObject({
      ok: false,
      brokenAt: { seq: '4', problem: 'anchor_invalid' },
    });

    await asOwner((client) => client.query('DELETE FROM audit_anchors WHERE tenant_id = $1', [tenant.id]));
    await rewriteFrom(tenant, 2, 'rewritten after the anchors went');
    const { code, text } = await cli('verify', '--tenant', tenant.slug, '--public-key', worker.publicFile);
    expect(code).toBe(1);
    expect(text).toContain(`UNANCHORED ${tenant.slug}: no signed anchor`);
  });

  it('reports an anchor past the head: events removed and the head set back', async () => {
    const tenant = await tenantWithEvents(5);
    await anchorNow(tenant);
    await asOwner(async (client) => {
      await client.query('DELETE FROM audit_events WHERE tenant_id = $1 AND seq > 3', [tenant.id]);
      await client.query(`UPDATE audit_chain_heads SET last_seq = 3, last_hash = (SELECT hash FROM audit_events WHERE tenant_id = $1 AND seq = 3) WHERE tenant_id = $1`, [tenant.id]);
    });
    expect(await verifyTenantChain(system, tenant.id)).toMatchObject({ ok: true, checked: 3 });
    expect(await verifyTenantChain(system, tenant.id, { keys })).toMatchObject({ ok: false, brokenAt: { seq: '4', problem: 'head_mismatch' } });
  });

  it('does not sign a head that disagrees with its event', async () => {
    const tenant = await tenantWithEvents(3);
    await asOwner((client) => client.query(`UPDATE audit_chain_heads SET last_hash = repeat('0', 64) WHERE tenant_id = $1`, [tenant.id]));
    expect(await anchorNow(tenant)).toEqual({ anchored: [], refused: [{ tenantId: tenant.id, seq: '3', problem: 'head_mismatch' }] });
  });

  it('keeps anchors append-only and per tenant', async () => {
    const tenant = await tenantWithEvents(2);
    const other = await tenantWithEvents(2);
    await anchorNow(tenant);
    await anchorNow(other);
    // The application role reads its own tenant's anchors and nothing else, and cannot write any.
    const seen = await withTenant(app, asTenantId(tenant.id), (tx) => tx.$queryRaw<{ tenant_id: string }[]>`SELECT tenant_id::text AS tenant_id FROM audit_anchors`);
    expect(new Set(seen.map((r) => r.tenant_id))).toEqual(new Set([tenant.id]));
    await expect(
      withTenant(app, asTenantId(tenant.id), (tx) => tx.$executeRaw`INSERT INTO audit_anchors (tenant_id, seq, hash, signed_at, key_id, signature) VALUES (${tenant.id}::uuid, 99, 'h', now(), 'k', 's')`),
    ).rejects.toThrow(/permission denied/);
    await expect(withTenant(app, asTenantId(tenant.id), (tx) => tx.$executeRaw`DELETE FROM audit_anchors`)).rejects.toThrow(/permission denied/);
    // The system role adds anchors but never changes or removes one.
    await expect(system.$executeRaw`UPDATE audit_anchors SET hash = 'x' WHERE tenant_id = ${tenant.id}::uuid`).rejects.toThrow(/permission denied/);
    await expect(system.$executeRaw`DELETE FROM audit_anchors WHERE tenant_id = ${tenant.id}::uuid`).rejects.toThrow(/permission denied/);
    // Not even the owner, unless it turns the triggers off (which the copies outside the database are for).
    const owner = new pg.Client({ connectionString: ctx.adminDatabaseUrl });
    await owner.connect();
    try {
      await expect(owner.query('DELETE FROM audit_anchors WHERE tenant_id = $1', [tenant.id])).rejects.toThrow(/append-only/);
    } finally {
      await owner.end();
    }
  });

  it('does not sign a rewritten chain again once the anchor that shows the rewrite was removed', async () => {
    const tenant = await tenantWithEvents(3);
    await anchorNow(tenant);
    await store.insert(Array.from({ length: 9 }, () => sampleAuditEvent(tenant.id)));
    expect((await anchorNow(tenant)).anchored.map((a) => a.seq)).toEqual(['12']);
    // The owner rewrites from seq 5 and removes the one anchor that no longer matches (12); seq 3's still does.
    await rewriteFrom(tenant, 5, 'forged');
    await asOwner((client) => client.query('DELETE FROM audit_anchors WHERE tenant_id = $1 AND seq >= 5', [tenant.id]));
    // A worker that signed seq 12 refuses: the chain no longer has what it signed.
    expect(await anchorNow(tenant)).toEqual({ anchored: [], refused: [{ tenantId: tenant.id, seq: '12', problem: 'signed_head_lost' }] });
    // One that never signed this tenant's chain (a replica started since) cannot know, and the anchors left agree with
    // the rewrite: what it would sign is the rewritten head, which is why each anchor is also logged outside the
    // database (docs/audit.md). Here only the memory protects.
    expect((await anchorNow(tenant, new Map())).anchored.map((a) => a.seq)).toEqual(['12']);
  });

  it('anchors kept outside the database show a rewrite that removed the anchors and was signed by a worker that started since', async () => {
    const tenant = await tenantWithEvents(12);
    const { anchored } = await anchorNow(tenant);
    const [genuine] = anchored;
    if (!genuine) throw new Error('no anchor');
    // The worker's log line of it, as pino writes it (JSON around the message), and the API's page of anchors.
    const logFile = path.join(dir, `${tenant.slug}.log`);
    writeFileSync(
      logFile,
      `${JSON.stringify({ level: 30, msg: 'unrelated' })}\n${JSON.stringify({ level: 30, context: 'AuditTasksWorker', msg: `audit anchor tenant=${genuine.tenantId} seq=${genuine.seq} hash=${genuine.hash} signedAt=${genuine.signedAt} key=${genuine.keyId} signature=${genuine.signature}` })}\n`,
    );
    const pageFile = path.join(dir, `${tenant.slug}.page.json`);
    writeFileSync(pageFile, JSON.stringify({ items: [genuine], nextCursor: null }));
    expect(await cli('verify', '--tenant', tenant.slug, '--public-key', worker.publicFile, '--anchors', logFile)).toMatchObject({ code: 0, text: expect.stringContaining(`ARCHIVE ${tenant.slug}: 1 archived anchor(s) match the live chain`) });

    await rewriteFrom(tenant, 5, 'forged');
    await asOwner((client) => client.query('DELETE FROM audit_anchors WHERE tenant_id = $1', [tenant.id]));
    // A worker with no memory of this tenant signs the rewritten head: the table alone now vouches for the rewrite.
    expect((await anchorNow(tenant, new Map())).anchored.map((a) => a.seq)).toEqual(['12']);
    expect((await cli('verify', '--tenant', tenant.slug, '--public-key', worker.publicFile)).code).toBe(0);
    for (const archive of [logFile, pageFile]) {
      const { code, text } = await cli('verify', '--tenant', tenant.slug, '--public-key', worker.publicFile, '--anchors', archive);
      expect(code).toBe(1);
      expect(text).toContain(`BROKEN ${tenant.slug}: archived anchor at seq 12: anchor_mismatch`);
    }
    // The archive must hold this tenant's anchors, and the option needs the key.
    expect(await cli('verify', '--tenant', tenant.slug, '--public-key', worker.publicFile, '--anchors', worker.publicFile)).toMatchObject({ code: 1, text: expect.stringContaining('holds no anchor of this tenant') });
    expect((await cli('verify', '--tenant', tenant.slug, '--anchors', logFile)).code).toBe(2);
  });

  it('does not sign a head while the newest anchor no longer matches its event', async () => {
    const tenant = await tenantWithEvents(4);
    await anchorNow(tenant);
    await store.insert([sampleAuditEvent(tenant.id)]);
    await rewriteFrom(tenant, 2, 'forged');
    // A worker without memory of this tenant (fresh) still sees the stored anchor at 4 contradicted.
    expect(await anchorNow(tenant, new Map())).toEqual({ anchored: [], refused: [{ tenantId: tenant.id, seq: '5', problem: 'anchor_mismatch' }] });
  });

  describe('retention', () => {
    const keep = (tenant: TestTenant, days: number) => system.tenant.update({ where: { id: tenant.id }, data: { settings: { audit: { retentionDays: days } } } });
    const old = () => new Date(Date.now() - 40 * 86_400_000).toISOString();

    it('signs the checkpoint it moves to, and the chain still proves with the key', async () => {
      const tenant = await createTestTenant(system);
      mine.push(tenant.id);
      await store.insert([...Array.from({ length: 6 }, () => sampleAuditEvent(tenant.id, { occurredAt: old() })), ...Array.from({ length: 3 }, () => sampleAuditEvent(tenant.id))]);
      await anchorNow(tenant);
      await keep(tenant, 30);
      const result = await runRetention(system, { signer: worker.signer });
      expect(result.perTenant.find((t) => t.tenantId === tenant.id)).toMatchObject({ deleted: 6, prunedThroughSeq: '6' });
      const checkpoint = await system.auditAnchor.findUnique({ where: { tenantId_seq: { tenantId: tenant.id, seq: 6n } } });
      const head = await system.auditChainHead.findUniqueOrThrow({ where: { tenantId: tenant.id } });
      expect(checkpoint?.hash).toBe(head.prunedThroughHash);
      expect(await verifyTenantChain(system, tenant.id, { keys })).toMatchObject({ ok: true, checked: 3, fromSeq: '6', anchors: { last: { seq: '9' } } });
    });

    it('a retention run between the sweep reading the heads and checking its memory is no lost head', async () => {
      const tenant = await createTestTenant(system);
      mine.push(tenant.id);
      await store.insert(Array.from({ length: 10 }, () => sampleAuditEvent(tenant.id, { occurredAt: old() })));
      const memory: SignedHeads = new Map();
      expect((await anchorNow(tenant, memory)).anchored.map((a) => a.seq)).toEqual(['10']);
      await store.insert(Array.from({ length: 2 }, () => sampleAuditEvent(tenant.id)));
      await keep(tenant, 30);
      // Retention (same key) prunes through the remembered seq while the sweep is between its two reads.
      let raced = false;
      const racing = new Proxy(system, {
        get(target, key, receiver) {
          if (key !== '$queryRawUnsafe') return Reflect.get(target, key, receiver);
          return async (sql: string, ...args: unknown[]) => {
            if (!raced && sql.includes('unnest($1::uuid[], $2::bigint[])')) {
              raced = true;
              await runRetention(system, { signer: worker.signer });
            }
            return (target.$queryRawUnsafe as (text: string, ...values: unknown[]) => Promise<unknown>)(sql, ...args);
          };
        },
      }) as typeof system;
      const result = await anchorAuditChains(racing, worker.signer, { tenantIds: [tenant.id], signed: memory });
      expect(raced).toBe(true);
      expect(result).toMatchObject({ anchored: [{ seq: '12' }], refused: [] });
    });

    it('deletes nothing that contradicts a signed anchor, even when the chain itself was recomputed', async () => {
      const tenant = await createTestTenant(system);
      mine.push(tenant.id);
      await store.insert(Array.from({ length: 5 }, () => sampleAuditEvent(tenant.id, { occurredAt: old() })));
      await anchorNow(tenant);
      await store.insert([sampleAuditEvent(tenant.id)]);
      await rewriteFrom(tenant, 2, 'forged');
      await keep(tenant, 30);
      const result = await runRetention(system, { signer: worker.signer });
      expect(result.refused).toContainEqual({ tenantId: tenant.id, seq: '5', problem: 'anchor_mismatch' });
      expect(await system.auditEvent.count({ where: { tenantId: tenant.id } })).toBe(6);
    });

    it('a checkpoint moved past anchors by someone else (no retention ran) is caught, and so are events left before it', async () => {
      const tenant = await tenantWithEvents(10);
      await anchorNow(tenant);
      await store.insert([sampleAuditEvent(tenant.id), sampleAuditEvent(tenant.id)]);
      await anchorNow(tenant);
      // portcullis_system alone, triggers on: what retention may do, but past the anchor at 10, to a seq no retention
      // signed. (Up to a signed head it would look like retention, which is this role's to run: docs/audit.md.)
      await system.$executeRawUnsafe(
        `UPDATE audit_chain_heads SET pruned_through_seq = 11, pruned_through_hash = (SELECT hash FROM audit_events WHERE tenant_id = $1::uuid AND seq = 11), pruned_at = now() WHERE tenant_id = $1::uuid`,
        tenant.id,
      );
      await system.$executeRawUnsafe('DELETE FROM audit_events WHERE tenant_id = $1::uuid AND seq <= 11', tenant.id);
      expect(await verifyTenantChain(system, tenant.id)).toMatchObject({ ok: true, checked: 1 });
      expect(await verifyTenantChain(system, tenant.id, { keys })).toMatchObject({ ok: false, brokenAt: { seq: '11', problem: 'checkpoint_mismatch' } });

      // The owner moves the checkpoint without deleting, after editing an event before it: the edited row is named.
      const other = await tenantWithEvents(6);
      await anchorNow(other);
      await asOwner(async (client) => {
        await client.query(`UPDATE audit_events SET reason = 'edited' WHERE tenant_id = $1 AND seq = 2`, [other.id]);
        await client.query(`UPDATE audit_chain_heads SET pruned_through_seq = 6, pruned_through_hash = (SELECT hash FROM audit_events WHERE tenant_id = $1 AND seq = 6) WHERE tenant_id = $1`, [other.id]);
      });
      expect(await verifyTenantChain(system, other.id, { keys })).toMatchObject({ ok: false, brokenAt: { seq: '1', problem: 'checkpoint_mismatch' } });
    });
  });

  describe('exports', () => {
    async function exported(tenant: TestTenant, name: string, filters = {}) {
      const outPath = path.join(dir, `${name}.jsonl`);
      const { manifest, manifestPath } = await exportAuditEvents(app, asTenantId(tenant.id), { format: 'jsonl', filters, outPath });
      return { outPath, manifest, manifestPath };
    }

    it('carry the newest anchor, which proves the rows offline with the public key', async () => {
      const tenant = await tenantWithEvents(9);
      await anchorNow(tenant);
      await store.insert([sampleAuditEvent(tenant.id)]);
      const { outPath, manifest, manifestPath } = await exported(tenant, 'anchored');
      expect(manifest.anchor).toMatchObject({ tenantId: tenant.id, seq: '9', keyId: worker.signer.keyId });
      expect(statSync(manifestPath).size).toBeGreaterThan(0);

      const verdict = await verifyExportFile(outPath, manifestPath, { keys });
      expect(verdict).toMatchObject({ ok: true, rows: 10, anchored: { seq: '9' } });
      expect(verdict.ok && verdict.anchor).toContain('rows through seq 9 proven by the anchor at seq 9');
      expect(verdict.ok && verdict.anchor).toContain('rows after it (to seq 10) are not signed yet');

      const { code, text } = await cli('verify', '--export', outPath, '--manifest', manifestPath, '--public-key', worker.publicFile);
      expect(code).toBe(0);
      expect(text).toContain('NOTE rows through seq 9 proven');
      // Without the key the anchor is named, not trusted.
      const plain = await verifyExportFile(outPath, manifestPath);
      expect(plain.ok && plain.anchor).toContain('carries an anchor signed at seq 9');
    });

    it('fail when the rows and the manifest were rewritten together', async () => {
      const tenant = await tenantWithEvents(6);
      await anchorNow(tenant);
      await rewriteFrom(tenant, 2, 'rewritten before the export');
      const { outPath, manifestPath } = await exported(tenant, 'rewritten');
      // Everything the file and the manifest say of each other agrees...
      expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: true });
      // ...but the anchor signed the genuine chain.
      expect(await verifyExportFile(outPath, manifestPath, { keys })).toEqual({
        ok: false,
        problem: 'row at seq 6: anchor_mismatch (its hash is not the one the anchor signed)',
      });
    });

    it('fail with the key when the anchor is missing, forged or another key\'s', async () => {
      const tenant = await tenantWithEvents(4);
      await anchorNow(tenant);
      const { outPath, manifestPath } = await exported(tenant, 'tampered');
      const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as AuditExportManifest;
      const rewrite = (changed: object) => writeFileSync(manifestPath, JSON.stringify({ ...manifest, ...changed }));

      rewrite({ anchor: null });
      expect(await verifyExportFile(outPath, manifestPath, { keys })).toMatchObject({ ok: false, problem: expect.stringContaining('carries no signed anchor') });
      rewrite({ anchor: { ...manifest.anchor, hash: 'f'.repeat(64) } });
      expect(await verifyExportFile(outPath, manifestPath, { keys })).toEqual({ ok: false, problem: "the anchor's signature does not verify" });
      rewrite({ anchor: keyPair().signer.sign({ tenantId: tenant.id, seq: '4', hash: manifest.lastHash as string, signedAt: new Date().toISOString() }) });
      expect(await verifyExportFile(outPath, manifestPath, { keys })).toMatchObject({ ok: false, problem: expect.stringMatching(/^the anchor is signed with key [0-9a-f]{16}, not one of the keys given$/) });
      rewrite({});
      expect(await verifyExportFile(outPath, manifestPath, { keys })).toMatchObject({ ok: true });
    });

    it('a filtered export is not provable offline: with the key it fails, so relabelling a rewritten one as filtered gains nothing', async () => {
      const tenant = await tenantWithEvents(5);
      await anchorNow(tenant);
      const { outPath, manifestPath } = await exported(tenant, 'filtered', { tool: 'nothing-matches' });
      expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: true, rows: 0, anchored: null });
      expect(await verifyExportFile(outPath, manifestPath, { keys })).toEqual({
        ok: false,
        problem: expect.stringContaining("not provable offline: a filtered export's rows are not linked to the anchor at seq 5"),
      });

      // A full export, rewritten with its hashes recomputed, the anchored row dropped and the manifest relabelled.
      const full = await exported(tenant, 'relabelled');
      await rewriteFrom(tenant, 2, 'forged');
      const forged = await exported(tenant, 'relabelled-forged');
      const kept = readFileSync(forged.outPath, 'utf8').trim().split('\n').filter((line) => (JSON.parse(line) as { seq: string }).seq !== '5');
      const text = `${kept.join('\n')}\n`;
      writeFileSync(full.outPath, text);
      const last = JSON.parse(kept[kept.length - 1] as string) as { hash: string };
      const first = JSON.parse(kept[0] as string) as { hash: string };
      writeFileSync(full.manifestPath, JSON.stringify({ ...full.manifest, contiguous: false, rowCount: kept.length, sha256: sha256Of(text), firstHash: first.hash, lastHash: last.hash }));
      expect(await verifyExportFile(full.outPath, full.manifestPath)).toMatchObject({ ok: true });
      expect(await verifyExportFile(full.outPath, full.manifestPath, { keys })).toMatchObject({ ok: false, problem: expect.stringContaining('not provable offline') });
      const { code } = await cli('verify', '--export', full.outPath, '--manifest', full.manifestPath, '--public-key', worker.publicFile);
      expect(code).toBe(1);
    });

    it('report a manifest whose fields have the wrong shape as broken, not by crashing', async () => {
      const tenant = await tenantWithEvents(3);
      await anchorNow(tenant);
      const { outPath, manifest, manifestPath } = await exported(tenant, 'malformed');
      for (const [changed, field] of [
        [{ chainRange: { ...manifest.chainRange, fromSeq: 'x' } }, 'chainRange.fromSeq'],
        [{ chainRange: { ...manifest.chainRange, headSeq: 12 } }, 'chainRange.headSeq'],
        [{ anchor: { ...manifest.anchor, seq: '1e3' } }, 'anchor.seq'],
        [{ rowCount: '3' }, 'rowCount'],
        [{ contiguous: 'yes' }, 'contiguous'],
      ] as const) {
        writeFileSync(manifestPath, JSON.stringify({ ...manifest, ...changed }));
        expect(await verifyExportFile(outPath, manifestPath, { keys })).toEqual({ ok: false, problem: expect.stringMatching(new RegExp(`^manifest malformed: ${field.replace('.', '\\.')}: `)) });
      }
      writeFileSync(manifestPath, 'null');
      expect(await verifyExportFile(outPath, manifestPath)).toMatchObject({ ok: false, problem: 'unsupported manifest (version undefined, hash undefined)' });
    });
  });

  it('keygen writes a usable key pair, the private half for its owner only, and never overwrites', async () => {
    const prefix = path.join(dir, 'worker-signing');
    const made = await cli('keygen', '--out', prefix);
    expect(made.code).toBe(0);
    expect(statSync(`${prefix}.key`).mode & 0o777).toBe(0o600);
    const signer = auditAnchorSigner(readFileSync(`${prefix}.key`, 'utf8'));
    expect(made.text).toContain(`key id ${signer.keyId}`);
    const anchor = signer.sign({ tenantId: '019a0000-0000-7000-8000-0000000000aa', seq: '1', hash: 'a'.repeat(64), signedAt: new Date().toISOString() });
    expect(verifyAnchorSignature(anchor, auditVerificationKeys(readFileSync(`${prefix}.pub`, 'utf8')))).toBe('valid');
    const again = await cli('keygen', '--out', prefix);
    expect(again).toEqual({ code: 1, text: `not written: ${prefix}.pub exists` });
    // Written whole or not at all: with only the private half in the way, no public half is left behind either.
    rmSync(`${prefix}.pub`);
    expect(await cli('keygen', '--out', prefix)).toEqual({ code: 1, text: `not written: ${prefix}.key exists` });
    expect(existsSync(`${prefix}.pub`)).toBe(false);
    // A key file that is no key is a usage error naming the file, not a crash.
    writeFileSync(path.join(dir, 'not-a-key.pem'), 'hello');
    expect(await cli('verify', '--tenant', 'x', '--public-key', path.join(dir, 'not-a-key.pem'))).toMatchObject({ code: 2, text: expect.stringContaining('no PUBLIC KEY block found') });
  });
});
