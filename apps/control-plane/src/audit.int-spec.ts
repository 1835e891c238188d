import { auditAnchorSigner, verifyAnchorSignature, type AuditAnchor } from '@portcullis/audit/chain';
import { anchorAuditChains, AUDIT_TASKS_QUEUE, rewriteChainFrom, CSV_COLUMNS, CsvRowParser, drainAuditOutbox, PostgresAuditEventStore, sampleAuditEvent } from '@portcullis/audit/core';
import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import type { TenantScope } from '@portcullis/control-plane/auth';
import { AuditService, MAX_VERIFIES, MAX_VERIFIES_PER_TENANT } from '@portcullis/control-plane/feature-audit';
import { createPrismaClient, createSystemPrismaClient, type PortcullisPrismaClient } from '@portcullis/data/db';
import { newId, type UserId } from '@portcullis/shared/util-ids';
import { testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlaneHarness } from './testing/control-plane-harness';

const SYNC_MAX = 40;
const exportDir = mkdtempSync(path.join(os.tmpdir(), 'cp-audit-exports-'));
let cp: ControlPlaneHarness;
let app: PortcullisPrismaClient;
let store: PostgresAuditEventStore;

beforeAll(async () => {
  cp = await startControlPlane({ AUDIT_EXPORT_DIR: exportDir, AUDIT_SYNC_EXPORT_MAX_ROWS: String(SYNC_MAX) });
  app = createPrismaClient({ url: testContext().databaseUrl });
  store = new PostgresAuditEventStore(app);
});
afterAll(async () => {
  await app?.$disconnect();
  await cp?.close();
  rmSync(exportDir, { recursive: true, force: true });
});

const BASE = Date.parse('2026-11-01T00:00:00.000Z');
const at = (minute: number) => new Date(BASE + minute * 60_000).toISOString();
const q = (params: Record<string, string | number>) =>
  new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)])).toString();

/** Runs SQL as the database owner with triggers off for this transaction only: what an attacker with the keys does. */
async function tamper(sql: string, params: unknown[]): Promise<void> {
  const client = new pg.Client({ connectionString: testContext().adminDatabaseUrl });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL session_replication_role = replica');
    await client.query(sql, params);
    await client.query('COMMIT');
  } finally {
    await client.end();
  }
}

interface Fixture {
  tenant: TestTenant;
  events: AuditEventV1[];
  users: string[];
  upstream: string;
  agent: string;
}

/** 30 events one minute apart with known tools, decisions, outcomes, actors, agents and upstreams. */
async function tenantWithEvents(): Promise<Fixture> {
  const tenant = await cp.tenant();
  const users = [newId(), newId()];
  const upstream = newId();
  const agent = newId();
  const events = Array.from({ length: 30 }, (_, i) =>
    sampleAuditEvent(tenant.id, {
      occurredAt: at(i),
      actorUserId: users[i % 2] ?? null,
      agentClientId: i % 3 === 0 ? agent : null,
      upstreamId: i < 10 ? upstream : null,
      tool: i % 5 === 0 ? 'tickets__close' : 'tickets__create_ticket',
      method: i === 29 ? 'tools/list' : 'tools/call',
      decision: i % 4 === 0 ? 'deny' : 'allow',
      outcome: i % 4 === 0 ? 'denied' : i === 7 ? 'error' : 'ok',
      arguments: { i },
    }),
  );
  await store.insert(events);
  return { tenant, events, users, upstream, agent };
}

type Item = Record<string, unknown>;
async function allPages(url: string, token: string, limit: number): Promise<{ items: Item[]; pages: number }> {
  const items: Item[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const res = await cp.request('GET', `${url}${url.includes('?') ? '&' : '?'}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, { token });
    expect(res.status, res.text).toBe(200);
    items.push(...(res.json.items ?? []));
    cursor = res.json['nextCursor'] as string | null;
    pages += 1;
    expect(pages).toBeLessThan(100);
  } while (cursor);
  return { items, pages };
}

describe('GET /audit/events', () => {
  it('pages every event newest first with a cursor, and filters by each field', async () => {
    const f = await tenantWithEvents();
    const auditor = await cp.member(f.tenant.id, 'auditor');
    const base = `/api/v1/tenants/${f.tenant.id}/audit/events`;
    const expectIds = (items: Item[], pick: (e: AuditEventV1, i: number) => boolean) =>
      expect(items.map((e) => e['id'])).toEqual(
        f.events
          .filter(pick)
          .map((e) => e.eventId)
          .reverse(),
      );

    const all = await allPages(base, auditor.token, 7);
    expect(all.pages).toBe(5);
    expectIds(all.items, () => true);
    expect(all.items[0]).toMatchObject({ seq: '30', occurredAt: at(29), kind: 'mcp', hash: expect.stringMatching(/^[0-9a-f]{64}$/) });

    expectIds((await allPages(`${base}?${q({ from: at(5), to: at(12) })}`, auditor.token, 3)).items, (_, i) => i >= 5 && i < 12);
    expectIds((await allPages(`${base}?${q({ tool: 'tickets__close' })}`, auditor.token, 2)).items, (_, i) => i % 5 === 0);
    expectIds((await allPages(`${base}?${q({ decision: 'deny' })}`, auditor.token, 50)).items, (_, i) => i % 4 === 0);
    expectIds((await allPages(`${base}?${q({ outcome: 'error' })}`, auditor.token, 50)).items, (_, i) => i === 7);
    expectIds((await allPages(`${base}?${q({ actorUserId: f.users[1] ?? '' })}`, auditor.token, 4)).items, (_, i) => i % 2 === 1);
    expectIds((await allPages(`${base}?${q({ agentClientId: f.agent })}`, auditor.token, 4)).items, (_, i) => i % 3 === 0);
    expectIds((await allPages(`${base}?${q({ upstreamId: f.upstream })}`, auditor.token, 4)).items, (_, i) => i < 10);
    expectIds((await allPages(`${base}?${q({ method: 'tools/list' })}`, auditor.token, 4)).items, (_, i) => i === 29);
    expectIds(
      (await allPages(`${base}?${q({ upstreamId: f.upstream, decision: 'deny', from: at(1) })}`, auditor.token, 1)).items,
      (_, i) => i < 10 && i % 4 === 0 && i >= 1,
    );
  });

  it('follows the trail with afterSeq: chain order, filters apply, and an event that occurred earlier but was stored later is not missed', async () => {
    const f = await tenantWithEvents();
    const auditor = await cp.member(f.tenant.id, 'auditor');
    const base = `/api/v1/tenants/${f.tenant.id}/audit/events`;
    const read = async (afterSeq: string, extra: Record<string, string> = {}) => {
      const res = await cp.request('GET', `${base}?${q({ afterSeq, limit: 12, ...extra })}`, { token: auditor.token });
      expect(res.status, res.text).toBe(200);
      expect(res.json['nextCursor']).toBeNull();
      return res.json.items ?? [];
    };
    const followed: Item[] = [];
    let last = '0';
    for (let page = 0; page < 10; page++) {
      const items = await read(last);
      if (items.length === 0) break;
      followed.push(...items);
      last = String(items.at(-1)?.['seq']);
    }
    expect(followed.map((e) => e['seq'])).toEqual(Array.from({ length: 30 }, (_, i) => String(i + 1)));
    expect(followed.map((e) => e['id'])).toEqual(f.events.map((e) => e.eventId));

    // A long call's event: it occurred before everything above, and is stored only now. A reader polling by time has
    // moved past its occurredAt; one following by seq gets it next.
    const late = sampleAuditEvent(f.tenant.id, { occurredAt: at(-60), tool: 'tickets__slow_export' });
    await store.insert([late]);
    expect((await read(last)).map((e) => [e['id'], e['seq']])).toEqual([[late.eventId, '31']]);
    expect((await allPages(`${base}?${q({ from: at(30) })}`, auditor.token, 50)).items).toEqual([]);
    // Filters apply as to pages.
    expect((await read('0', { tool: 'tickets__close' })).map((e) => e['seq'])).toEqual(['1', '6', '11', '16', '21', '26']);

    const bads: Record<string, string>[] = [{ afterSeq: '-1' }, { afterSeq: '1e3' }, { afterSeq: '12345678901234567890' }, { afterSeq: '9999999999999999999' }, { afterSeq: '1', cursor: 'abc' }];
    for (const bad of bads) {
      const res = await cp.request('GET', `${base}?${q(bad)}`, { token: auditor.token });
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect((res.json['errors'] as { path: string }[]).map((e) => e.path)).toContain('afterSeq');
    }
  });

  it('answers 400 problem+json naming each bad filter, and for a forged cursor', async () => {
    const f = await tenantWithEvents();
    const auditor = await cp.member(f.tenant.id, 'auditor');
    const base = `/api/v1/tenants/${f.tenant.id}/audit/events`;
    const res = await cp.request('GET', `${base}?${q({ from: 'yesterday', decision: 'maybe', actorUserId: 'bob', limit: 1000, colour: 'red' })}`, {
      token: auditor.token,
    });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json['code']).toBe('VALIDATION_FAILED');
    const paths = (res.json['errors'] as { path: string }[]).map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['from', 'decision', 'actorUserId', 'limit']));
    expect(JSON.stringify(res.json['errors'])).toContain('colour');

    const reversed = await cp.request('GET', `${base}?${q({ from: at(10), to: at(5) })}`, { token: auditor.token });
    expect(reversed.status).toBe(400);
    expect(reversed.json['errors']).toEqual([{ path: 'to', message: 'must be after `from`' }]);

    // Year 0000 has the ISO layout but no Postgres year, and a cursor with month 13 the cursor's layout: both 400.
    for (const path of [`${base}?${q({ from: '0000-01-01T00:00:00Z' })}`, `${base}.csv?${q({ from: '0000-01-01T00:00:00Z' })}`]) {
      const yearZero = await cp.request('GET', path, { token: auditor.token });
      expect(yearZero.status).toBe(400);
      expect(yearZero.json['errors']).toEqual([{ path: 'from', message: 'must be in year 0001 or later' }]);
    }
    const farZone = await cp.request('GET', `${base}?${q({ from: '2026-01-01T00:00:00+16:00' })}`, { token: auditor.token });
    expect(farZone.status).toBe(400);
    expect(farZone.json['errors']).toEqual([{ path: 'from', message: 'must have a zone offset within ±15:59' }]);
    expect((await cp.request('GET', `${base}?${q({ from: '2026-01-01T00:00:00+14:00' })}`, { token: auditor.token })).status).toBe(200);
    const forged = Buffer.from(`a1|2026-13-45T99:00:00.000000Z|${f.tenant.id}`).toString('base64url');
    const badCursor = await cp.request('GET', `${base}?${q({ cursor: forged })}`, { token: auditor.token });
    expect(badCursor.status).toBe(400);
    expect(badCursor.json['errors']).toEqual([{ path: 'cursor', message: 'not a cursor this API issued' }]);

    for (const cursor of ['bogus', Buffer.from(`a1|2026-11-01T00:00:00.000000Z|${newId()}|x`).toString('base64url'), Buffer.from("a1|'; drop table x|y").toString('base64url')]) {
      const bad = await cp.request('GET', `${base}?cursor=${cursor}`, { token: auditor.token });
      expect(bad.status).toBe(400);
      expect(bad.json['errors']).toEqual([{ path: 'cursor', message: expect.any(String) }]);
    }
  });

  it('lets owners, admins and auditors read; members get 403; other tenants are 404', async () => {
    const f = await tenantWithEvents();
    const other = await tenantWithEvents();
    const base = `/api/v1/tenants/${f.tenant.id}/audit`;
    for (const role of ['owner', 'admin', 'auditor'] as const) {
      const user = await cp.member(f.tenant.id, role);
      expect((await cp.request('GET', `${base}/events?limit=1`, { token: user.token })).status, role).toBe(200);
      expect((await cp.request('GET', `${base}/verify`, { token: user.token })).status, role).toBe(200);
    }
    const member = await cp.member(f.tenant.id, 'member');
    for (const [method, url] of [
      ['GET', `${base}/events`],
      ['GET', `${base}/events.csv`],
      ['GET', `${base}/verify`],
      ['GET', `${base}/exports`],
      ['POST', `${base}/exports`],
    ] as const) {
      const res = await cp.request(method, url, { token: member.token, ...(method === 'POST' ? { body: { format: 'csv' } } : {}) });
      expect(res.status, `${method} ${url}`).toBe(403);
    }
    // The auditor of the other tenant sees nothing here, and its own events never include ours.
    const stranger = await cp.member(other.tenant.id, 'auditor');
    expect((await cp.request('GET', `${base}/events`, { token: stranger.token })).status).toBe(404);
    expect((await cp.request('GET', `${base}/verify`, { token: stranger.token })).status).toBe(404);
    const theirs = await allPages(`/api/v1/tenants/${other.tenant.id}/audit/events`, stranger.token, 200);
    expect(theirs.items.every((e) => e['id'] !== f.events[0]?.eventId)).toBe(true);
    expect(theirs.items).toHaveLength(30);
  });

  it('keeps auditors read-only outside the audit API', async () => {
    const f = await tenantWithEvents();
    const auditor = await cp.member(f.tenant.id, 'auditor');
    const res = await cp.request('POST', `/api/v1/tenants/${f.tenant.id}/upstreams`, {
      token: auditor.token,
      body: { name: 'x', toolPrefix: 'x', transport: 'streamable_http', url: 'https://x.example.test/mcp' },
    });
    expect(res.status).toBe(403);
  });
});

describe('GET /audit/verify', () => {
  it('reports ok, then the first broken link after a row is edited in SQL', async () => {
    const f = await tenantWithEvents();
    const auditor = await cp.member(f.tenant.id, 'auditor');
    const url = `/api/v1/tenants/${f.tenant.id}/audit/verify`;
    const ok = await cp.request('GET', url, { token: auditor.token });
    expect(ok.json).toMatchObject({ ok: true, checked: 30, fromSeq: '0', lastSeq: '30', lastHash: expect.any(String) });

    await tamper(`UPDATE audit_events SET tool = 'innocent' WHERE tenant_id = $1 AND seq = 12`, [f.tenant.id]);
    const broken = await cp.request('GET', url, { token: auditor.token });
    expect(broken.status).toBe(200);
    expect(broken.json).toEqual({ ok: false, checked: 11, brokenAt: { seq: '12', id: f.events[11]?.eventId, problem: 'hash_mismatch' } });

    const g = await tenantWithEvents();
    const gAuditor = await cp.member(g.tenant.id, 'auditor');
    await tamper('DELETE FROM audit_events WHERE tenant_id = $1 AND seq = 30', [g.tenant.id]);
    const tail = await cp.request('GET', `/api/v1/tenants/${g.tenant.id}/audit/verify`, { token: gAuditor.token });
    expect(tail.json).toEqual({ ok: false, checked: 29, brokenAt: { seq: '30', id: null, problem: 'head_mismatch' } });

    // The head removed (or set back) by someone with SQL access: the events it no longer covers break the chain, where
    // before an empty chain was reported intact.
    const h = await tenantWithEvents();
    const hAuditor = await cp.member(h.tenant.id, 'auditor');
    await tamper('DELETE FROM audit_chain_heads WHERE tenant_id = $1', [h.tenant.id]);
    const headless = await cp.request('GET', `/api/v1/tenants/${h.tenant.id}/audit/verify`, { token: hAuditor.token });
    expect(headless.json).toEqual({ ok: false, checked: 0, brokenAt: { seq: '1', id: null, problem: 'head_mismatch' } });
  });
});

describe('GET /audit/anchors', () => {
  it('pages the signed chain heads in seq order, each verifiable with the worker public key; members get 403', async () => {
    const f = await tenantWithEvents();
    const other = await tenantWithEvents();
    const { privateKey } = generateKeyPairSync('ed25519');
    const signer = auditAnchorSigner(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    const system = createSystemPrismaClient({ url: testContext().systemDatabaseUrl });
    try {
      // Three heads signed: after 30 events, then after each of two more.
      const sweep = () => anchorAuditChains(system, signer, { tenantIds: [f.tenant.id, other.tenant.id] });
      await sweep();
      for (const n of [31, 32]) {
        await store.insert([sampleAuditEvent(f.tenant.id, { occurredAt: at(n) })]);
        await sweep();
      }
    } finally {
      await system.$disconnect();
    }
    const auditor = await cp.member(f.tenant.id, 'auditor');
    const url = `/api/v1/tenants/${f.tenant.id}/audit/anchors`;
    const first = await cp.request('GET', `${url}?limit=2`, { token: auditor.token });
    expect(first.status, first.text).toBe(200);
    expect((first.json.items as Item[]).map((a) => a['seq'])).toEqual(['30', '31']);
    expect(first.json['nextCursor']).toBe('31');
    const rest = await cp.request('GET', `${url}?limit=2&afterSeq=31`, { token: auditor.token });
    expect(rest.json).toEqual({ items: [expect.objectContaining({ tenantId: f.tenant.id, seq: '32', keyId: signer.keyId })], nextCursor: null });
    const keys = new Map([[signer.keyId, signer.publicKey]]);
    for (const anchor of [...(first.json.items ?? []), ...(rest.json.items ?? [])] as unknown as AuditAnchor[]) {
      expect(verifyAnchorSignature(anchor, keys)).toBe('valid');
    }
    // The other tenant's anchor is not among them, and its own members do not see these.
    expect(JSON.stringify(first.json)).not.toContain(other.tenant.id);
    const member = await cp.member(f.tenant.id, 'member');
    expect((await cp.request('GET', url, { token: member.token })).status).toBe(403);
    const outsider = await cp.member(other.tenant.id, 'auditor');
    expect((await cp.request('GET', url, { token: outsider.token })).status).toBe(404);
    // A caller's mistake is a 400 naming the parameter.
    const bad = await cp.request('GET', `${url}?afterSeq=-1&limit=5000`, { token: auditor.token });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('afterSeq');
    expect(bad.text).toContain('limit');
  });
});

describe('GET /audit/verify, bounded in number', () => {
  // Unbounded, one tenant's auditor sending verifications in parallel (each up to ten seconds of hashing on a pooled
  // database connection) took the pool and the CPU from every tenant's requests.
  it(`runs ${MAX_VERIFIES_PER_TENANT} at once per tenant and ${MAX_VERIFIES} in all (429 with Retry-After past that)`, async () => {
    const service = cp.app.get(AuditService);
    const fixtures = await Promise.all(Array.from({ length: MAX_VERIFIES + 1 }, () => tenantWithEvents()));
    const scopeOf = (f: Fixture): TenantScope => ({ tenantId: f.tenant.id, role: 'auditor', actor: { userId: newId() as UserId, isPlatformAdmin: false, traceId: 't', traceparent: null } });
    const whole = { maxEvents: 1_000_000 };
    const [mine, ...others] = fixtures as [Fixture, ...Fixture[]];
    // A verification takes its place as it starts (before its first query): a second of the tenant's is refused.
    const first = service.verify(scopeOf(mine), whole);
    await expect(service.verify(scopeOf(mine), whole)).rejects.toMatchObject({ code: 'RATE_LIMITED', retryAfterSeconds: 5, message: expect.stringMatching(/already has a verification/) });
    expect(await first).toMatchObject({ ok: true, checked: 30 });
    // Over once it answered: the next one runs.
    expect(await service.verify(scopeOf(mine), whole)).toMatchObject({ ok: true });
    // As many tenants' as the process runs at once: another tenant's is refused until one ends.
    const running = fixtures.slice(0, MAX_VERIFIES).map((f) => service.verify(scopeOf(f), whole));
    await expect(service.verify(scopeOf(others.at(-1) as Fixture), whole)).rejects.toMatchObject({ code: 'RATE_LIMITED', message: expect.stringMatching(/other tenants/) });
    for (const verdict of await Promise.all(running)) expect(verdict).toMatchObject({ ok: true });
    expect(await service.verify(scopeOf(others.at(-1) as Fixture), whole)).toMatchObject({ ok: true });
    // Over HTTP, while the tenant's place is held: 429 and Retry-After, as a problem document.
    const held = (service as unknown as { verifies: { take(key: string): (() => void) | undefined } }).verifies.take(mine.tenant.id);
    expect(held).toBeDefined();
    const auditor = await cp.member(mine.tenant.id, 'auditor');
    const refused = await cp.request('GET', `/api/v1/tenants/${mine.tenant.id}/audit/verify`, { token: auditor.token });
    expect(refused.status, refused.text).toBe(429);
    expect(refused.headers['retry-after']).toBe('5');
    held?.();
    expect((await cp.request('GET', `/api/v1/tenants/${mine.tenant.id}/audit/verify`, { token: auditor.token })).status).toBe(200);
  });
});

describe('GET /audit/verify with the worker public key (AUDIT_VERIFY_KEYS_FILE)', () => {
  it('checks the signed anchors on the way: a rewrite with every hash recomputed is anchor_mismatch; a bad key file stops the start', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const signer = auditAnchorSigner(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    const keysFile = path.join(exportDir, 'worker.pub');
    writeFileSync(keysFile, publicKey.export({ type: 'spki', format: 'pem' }));
    const keyed = await startControlPlane({ AUDIT_EXPORT_DIR: exportDir, AUDIT_VERIFY_KEYS_FILE: keysFile });
    const system = createSystemPrismaClient({ url: testContext().systemDatabaseUrl });
    try {
      const tenant = await keyed.tenant();
      await store.insert(Array.from({ length: 12 }, (_, i) => sampleAuditEvent(tenant.id, { occurredAt: at(i) })));
      await anchorAuditChains(system, signer, { tenantIds: [tenant.id] });
      const auditor = await keyed.member(tenant.id, 'auditor');
      const url = `/api/v1/tenants/${tenant.id}/audit/verify`;
      const ok = await keyed.request('GET', url, { token: auditor.token });
      expect(ok.json).toMatchObject({ ok: true, complete: true, checked: 12, anchored: { seq: '12', keyId: signer.keyId } });
      // Without keys the answer says nothing of anchors.
      const plain = await cp.member(tenant.id, 'auditor');
      expect((await cp.request('GET', url, { token: plain.token })).json).not.toHaveProperty('anchored');

      await rewriteChainFrom(testContext().adminDatabaseUrl, tenant.id, 5, 'nothing to see here');
      expect((await cp.request('GET', url, { token: plain.token })).json).toMatchObject({ ok: true, checked: 12 });
      expect((await keyed.request('GET', url, { token: auditor.token })).json).toMatchObject({ ok: false, checked: 12, brokenAt: { seq: '12', problem: 'anchor_mismatch' } });
    } finally {
      await system.$disconnect();
      await keyed.close();
    }
    writeFileSync(path.join(exportDir, 'not-a-key.pem'), 'SECRET-LOOKING TEXT');
    await expect(startControlPlane({ AUDIT_VERIFY_KEYS_FILE: path.join(exportDir, 'not-a-key.pem') })).rejects.toThrow(/^AUDIT_VERIFY_KEYS_FILE .*not-a-key\.pem: no PUBLIC KEY block found$/);
  });
});

describe('GET /audit/verify, bounded and resumed', () => {
  it('walks the chain in bounded steps with afterSeq, finds a broken link in a later step, and refuses bad cursors', async () => {
    const f = await tenantWithEvents();
    const auditor = await cp.member(f.tenant.id, 'auditor');
    const url = `/api/v1/tenants/${f.tenant.id}/audit/verify`;
    const first = await cp.request('GET', `${url}?maxEvents=10`, { token: auditor.token });
    expect(first.json).toMatchObject({ ok: true, complete: false, checked: 10, fromSeq: '0', lastSeq: '10', headSeq: '30' });
    const second = await cp.request('GET', `${url}?maxEvents=10&afterSeq=10`, { token: auditor.token });
    expect(second.json).toMatchObject({ ok: true, complete: false, checked: 10, fromSeq: '10', fromHash: first.json['lastHash'], lastSeq: '20' });
    const last = await cp.request('GET', `${url}?afterSeq=20`, { token: auditor.token });
    expect(last.json).toMatchObject({ ok: true, complete: true, checked: 10, lastSeq: '30' });

    await tamper(`UPDATE audit_events SET tool = 'innocent' WHERE tenant_id = $1 AND seq = 25`, [f.tenant.id]);
    expect((await cp.request('GET', `${url}?maxEvents=10`, { token: auditor.token })).json).toMatchObject({ ok: true, complete: false });
    expect((await cp.request('GET', `${url}?afterSeq=20`, { token: auditor.token })).json).toMatchObject({
      ok: false,
      checked: 4,
      brokenAt: { seq: '25', problem: 'hash_mismatch' },
    });

    expect((await cp.request('GET', `${url}?afterSeq=31`, { token: auditor.token })).status).toBe(400);
    expect((await cp.request('GET', `${url}?afterSeq=-1`, { token: auditor.token })).status).toBe(400);
    expect((await cp.request('GET', `${url}?maxEvents=0`, { token: auditor.token })).status).toBe(400);
  });
});

describe('GET /audit/events.csv and .jsonl (synchronous, bounded)', () => {
  it('hands the export out with Redis away: its audit event is in the outbox, and from there in the trail', async () => {
    const tenant = await cp.tenant();
    const auditor = await cp.member(tenant.id, 'auditor');
    const stored = sampleAuditEvent(tenant.id, { occurredAt: at(0) });
    await store.insert([stored]);
    // The same database, but the audit queue (Redis) out of reach for this instance.
    const cut = await startControlPlane({ AUDIT_EXPORT_DIR: exportDir, REDIS_URL: 'redis://127.0.0.1:1', CONTROL_PLANE_REDIS_WRITE_TIMEOUT_MS: '200' });
    try {
      const res = await cut.request('GET', `/api/v1/tenants/${tenant.id}/audit/events.csv`, { token: auditor.token });
      expect(res.status, res.text).toBe(200);
      expect(res.text).toContain(stored.eventId);
    } finally {
      await cut.close();
    }
    // Not enqueued (Redis away): in the outbox, and stored from there (here by this drain, or by another spec's: they
    // share the database), once.
    expect(await cp.system.auditEvent.count({ where: { tenantId: tenant.id, method: 'audit.export' } })).toBe(0);
    await drainAuditOutbox(cp.system, store, { olderThanMs: 0, tenantId: tenant.id });
    expect(await cp.system.auditEvent.count({ where: { tenantId: tenant.id, method: 'audit.export' } })).toBe(1);
    expect(await cp.system.auditOutbox.count({ where: { tenantId: tenant.id } })).toBe(0);
  });

  it('runs at most two at once per tenant (429 past that), each until its download ends', async () => {
    const tenant = await cp.tenant();
    const auditor = await cp.member(tenant.id, 'auditor');
    await store.insert([sampleAuditEvent(tenant.id, { occurredAt: at(0) })]);
    // Two downloads handed out and not read yet (the service directly: over HTTP a small file leaves at once).
    const service = cp.app.get(AuditService);
    const scope: TenantScope = { tenantId: tenant.id, role: 'auditor', actor: { userId: auditor.id as UserId, isPlatformAdmin: false, traceId: 't', traceparent: null } };
    const first = await service.exportNow(scope, 'csv', {});
    const second = await service.exportNow(scope, 'jsonl', {});
    const refused = await cp.request('GET', `/api/v1/tenants/${tenant.id}/audit/events.csv`, { token: auditor.token });
    expect(refused.status, refused.text).toBe(429);
    expect(refused.headers['retry-after']).toBe('5');
    // Another tenant is not held up by it.
    const other = await cp.tenant();
    expect((await cp.request('GET', `/api/v1/tenants/${other.id}/audit/events.csv`, { token: (await cp.member(other.id, 'auditor')).token })).status).toBe(200);
    // One download ends (here: dropped): room for the next.
    first.stream.destroy();
    await new Promise<void>((resolve) => first.stream.once('close', () => resolve()));
    expect((await cp.request('GET', `/api/v1/tenants/${tenant.id}/audit/events.csv`, { token: auditor.token })).status).toBe(200);
    second.stream.destroy();
  });

  it('streams a spreadsheet-safe CSV whose digest header matches, and audits the export', async () => {
    const tenant = await cp.tenant();
    const auditor = await cp.member(tenant.id, 'auditor');
    const nasty = [
      sampleAuditEvent(tenant.id, { occurredAt: at(0), tool: '=HYPERLINK("http://evil.example","click")', reason: 'a, "quoted"\r\nline' }),
      sampleAuditEvent(tenant.id, { occurredAt: at(1), tool: '+SUM(A1:A9)', reason: '@cmd', arguments: { note: '-2+3' } }),
      sampleAuditEvent(tenant.id, { occurredAt: at(2), tool: "'already quoted", reason: '' }),
    ];
    await store.insert(nasty);
    const res = await cp.request('GET', `/api/v1/tenants/${tenant.id}/audit/events.csv`, { token: auditor.token });
    expect(res.status, res.text).toBe(200);
    expect(res.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(res.headers['content-disposition']).toMatch(/^attachment; filename="audit-[0-9a-f-]+\.csv"$/);
    expect(res.headers['x-audit-row-count']).toBe('3');
    const digest = createHash('sha256').update(res.text, 'utf8').digest('base64');
    expect(res.headers['repr-digest']).toBe(`sha-256=:${digest}:`);

    // RFC 4180 with CRLF; every row has every column; formulas are neutralised with a leading quote.
    expect(res.text.endsWith('\r\n')).toBe(true);
    expect(res.text).toContain(`"'=HYPERLINK(""http://evil.example"",""click"")"`);
    expect(res.text).toContain(`'+SUM(A1:A9)`);
    expect(res.text).toContain(`,'@cmd,`);
    expect(res.text).not.toMatch(/(^|,)[=+@]/m);
    const rows = new CsvRowParser().push(res.text);
    expect(rows[0]).toEqual([...CSV_COLUMNS]);
    expect(rows.slice(1).every((r) => r.length === CSV_COLUMNS.length)).toBe(true);
    const col = (name: (typeof CSV_COLUMNS)[number]) => CSV_COLUMNS.indexOf(name);
    // Decoding reverses the guard exactly (the verifier relies on it).
    expect(rows.slice(1).map((r) => r[col('tool')])).toEqual(nasty.map((e) => e.tool));
    expect(rows[1]?.[col('reason')]).toBe('a, "quoted"\r\nline');
    expect(rows[3]?.[col('reason')]).toBe('');

    const events = await cp.eventsAtLeast(tenant.id, 1);
    expect(events.find((e) => e.method === 'audit.export')).toMatchObject({
      actorUserId: auditor.id,
      targetType: 'audit_export',
      arguments: { after: { synchronous: true, format: 'csv', rowCount: 3 } },
    });

    const jsonl = await cp.request('GET', `/api/v1/tenants/${tenant.id}/audit/events.jsonl?${q({ from: at(1) })}`, { token: auditor.token });
    expect(jsonl.headers['content-type']).toBe('application/x-ndjson; charset=utf-8');
    const lines = jsonl.text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l['seq'])).toEqual(['2', '3']);
  });

  it(`refuses more than the configured ${SYNC_MAX} rows with a 400 pointing to export jobs, and bad filters with 400`, async () => {
    const tenant = await cp.tenant();
    const auditor = await cp.member(tenant.id, 'auditor');
    await store.insert(Array.from({ length: SYNC_MAX + 1 }, (_, i) => sampleAuditEvent(tenant.id, { occurredAt: at(i) })));
    const res = await cp.request('GET', `/api/v1/tenants/${tenant.id}/audit/events.csv`, { token: auditor.token });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json['detail']).toMatch(/audit\/exports/);
    const narrowed = await cp.request('GET', `/api/v1/tenants/${tenant.id}/audit/events.csv?${q({ to: at(10) })}`, { token: auditor.token });
    expect(narrowed.headers['x-audit-row-count']).toBe('10');
    expect((await cp.request('GET', `/api/v1/tenants/${tenant.id}/audit/events.jsonl?limit=5`, { token: auditor.token })).status).toBe(400);
  });
});

describe('audit export jobs (API side; the worker side is in e2e/audit/audit-api.e2e-spec.ts)', () => {
  it('records and enqueues an export, lists it, refuses a download before completion, and audits the request', async () => {
    const f = await tenantWithEvents();
    const auditor = await cp.member(f.tenant.id, 'auditor');
    const base = `/api/v1/tenants/${f.tenant.id}/audit/exports`;
    const created = await cp.request('POST', base, { token: auditor.token, body: { format: 'jsonl', filters: { decision: 'deny' } } });
    expect(created.status, created.text).toBe(202);
    expect(created.json).toMatchObject({ format: 'jsonl', filters: { decision: 'deny' }, status: 'queued', downloadPath: null, requestedById: auditor.id });
    const id = String(created.json['id']);

    const second = await cp.request('POST', base, { token: auditor.token, body: { format: 'csv' } });
    const list = await allPages(base, auditor.token, 1);
    expect(list.items.map((e) => e['id'])).toEqual([second.json['id'], id]);
    expect((await cp.request('GET', `${base}/${id}`, { token: auditor.token })).json).toMatchObject({ id, status: 'queued' });
    const early = await cp.request('GET', `${base}/${id}/download`, { token: auditor.token });
    expect(early.status).toBe(409);
    expect(early.json['detail']).toMatch(/queued/);

    const events = await cp.eventsAtLeast(f.tenant.id, 2);
    expect(events.filter((e) => e.method === 'audit.export.request').map((e) => e.targetId).sort()).toEqual([id, String(second.json['id'])].sort());
    expect(await cp.system.auditOutbox.count({ where: { tenantId: f.tenant.id } })).toBe(0);

    expect((await cp.request('POST', base, { token: auditor.token, body: { format: 'xlsx', filters: { tool: '' } } })).json['errors']).toEqual(
      expect.arrayContaining([expect.objectContaining({ path: 'format' }), expect.objectContaining({ path: 'filters.tool' })]),
    );

    // Another tenant's auditor cannot see, fetch or download it, even with the id.
    const other = await cp.tenant();
    const stranger = await cp.member(other.id, 'auditor');
    const theirBase = `/api/v1/tenants/${other.id}/audit/exports`;
    expect((await cp.request('GET', `${theirBase}/${id}`, { token: stranger.token })).status).toBe(404);
    expect((await cp.request('GET', `${theirBase}/${id}/download`, { token: stranger.token })).status).toBe(404);
    expect((await cp.request('GET', `${base}/${id}`, { token: stranger.token })).status).toBe(404);
    expect((await cp.request('GET', theirBase, { token: stranger.token })).json.items).toEqual([]);
    expect((await cp.request('GET', `${base}/not-a-uuid`, { token: auditor.token })).status).toBe(404);
  });

  it('answers 503 when the queue does not take an export, marks it so, and records the request in the same transaction as its row', async () => {
    const f = await tenantWithEvents();
    const auditor = await cp.member(f.tenant.id, 'auditor');
    const cut = await startControlPlane({ AUDIT_EXPORT_DIR: exportDir, REDIS_URL: 'redis://127.0.0.1:1', CONTROL_PLANE_REDIS_WRITE_TIMEOUT_MS: '200' });
    try {
      const refused = await cut.request('POST', `/api/v1/tenants/${f.tenant.id}/audit/exports`, { token: auditor.token, body: { format: 'csv' } });
      expect(refused.status, refused.text).toBe(503);
    } finally {
      await cut.close();
    }
    const [row] = await cp.system.auditExport.findMany({ where: { tenantId: f.tenant.id } });
    expect(row?.status).toBe('failed');
    // Its event was written with the row (the outbox; stored from there, as the worker would).
    await drainAuditOutbox(cp.system, store, { olderThanMs: 0, tenantId: f.tenant.id });
    const recorded = await cp.system.auditEvent.findMany({ where: { tenantId: f.tenant.id, method: 'audit.export.request' } });
    expect(recorded.map((event) => event.targetId)).toEqual([row?.id]);
  });

  it('refuses a fourth export while three are queued or running (429), and takes one again once one finished', async () => {
    const f = await tenantWithEvents();
    const auditor = await cp.member(f.tenant.id, 'auditor');
    const base = `/api/v1/tenants/${f.tenant.id}/audit/exports`;
    // Requested at once: the bound holds under concurrency too.
    const first = await Promise.all([1, 2, 3, 4].map(() => cp.request('POST', base, { token: auditor.token, body: { format: 'jsonl' } })));
    expect(first.map((r) => r.status).sort()).toEqual([202, 202, 202, 429]);
    const refused = first.find((r) => r.status === 429);
    expect(refused?.json['detail']).toMatch(/already has 3 exports queued or running/);
    expect(await cp.system.auditExport.count({ where: { tenantId: f.tenant.id } })).toBe(3);
    // One finishes (as the worker would mark it): there is room for one more.
    const accepted = first.filter((r) => r.status === 202).map((r) => String(r.json['id']));
    await cp.system.auditExport.update({ where: { id: accepted[0] }, data: { status: 'failed' } });
    expect((await cp.request('POST', base, { token: auditor.token, body: { format: 'csv' } })).status).toBe(202);
    expect((await cp.request('POST', base, { token: auditor.token, body: { format: 'csv' } })).status).toBe(429);
    // One lost (queued for more than an hour: its job will never run) no longer counts.
    await cp.system.auditExport.update({ where: { id: accepted[1] }, data: { createdAt: new Date(Date.now() - 2 * 3_600_000) } });
    expect((await cp.request('POST', base, { token: auditor.token, body: { format: 'csv' } })).status).toBe(202);
  });

  it('cancels a queued or running export (its job dropped), refuses anything else with 409, and audits the cancel', async () => {
    const f = await tenantWithEvents();
    const auditor = await cp.member(f.tenant.id, 'auditor');
    const base = `/api/v1/tenants/${f.tenant.id}/audit/exports`;
    const tasks = new Queue(AUDIT_TASKS_QUEUE, { connection: { url: testContext().redisUrl }, prefix: cp.config.queue.prefix });
    try {
      const id = String((await cp.request('POST', base, { token: auditor.token, body: { format: 'csv' } })).json['id']);
      expect(await tasks.getJob(`export-${id}`)).toBeDefined();
      const cancelled = await cp.request('POST', `${base}/${id}/cancel`, { token: auditor.token });
      expect(cancelled.status, cancelled.text).toBe(200);
      expect(cancelled.json).toMatchObject({ id, status: 'cancelled', downloadPath: null });
      // No worker will pick it up.
      expect(await tasks.getJob(`export-${id}`)).toBeUndefined();
      const again = await cp.request('POST', `${base}/${id}/cancel`, { token: auditor.token });
      expect(again.status).toBe(409);
      expect(again.json['detail']).toMatch(/is cancelled; only a queued or running export can be cancelled/);
      expect((await cp.request('GET', `${base}/${id}/download`, { token: auditor.token })).status).toBe(409);
      // A running one is cancelled in the database (its worker stops before its next page); a completed one is not.
      const running = String((await cp.request('POST', base, { token: auditor.token, body: { format: 'jsonl' } })).json['id']);
      await cp.system.auditExport.update({ where: { id: running }, data: { status: 'running', startedAt: new Date() } });
      expect((await cp.request('POST', `${base}/${running}/cancel`, { token: auditor.token })).json).toMatchObject({ status: 'cancelled' });
      const done = String((await cp.request('POST', base, { token: auditor.token, body: { format: 'jsonl' } })).json['id']);
      await cp.system.auditExport.update({ where: { id: done }, data: { status: 'completed', completedAt: new Date() } });
      expect((await cp.request('POST', `${base}/${done}/cancel`, { token: auditor.token })).status).toBe(409);
      expect((await cp.system.auditExport.findUniqueOrThrow({ where: { id: done } })).status).toBe('completed');
      // Failed with its job still waiting for a retry: cancelled (the retry would run it again); failed for good: 409.
      const retrying = String((await cp.request('POST', base, { token: auditor.token, body: { format: 'csv' } })).json['id']);
      await cp.system.auditExport.update({ where: { id: retrying }, data: { status: 'failed' } });
      expect((await cp.request('POST', `${base}/${retrying}/cancel`, { token: auditor.token })).json).toMatchObject({ status: 'cancelled' });
      expect(await tasks.getJob(`export-${retrying}`)).toBeUndefined();
      const lost = String((await cp.request('POST', base, { token: auditor.token, body: { format: 'csv' } })).json['id']);
      await (await tasks.getJob(`export-${lost}`))?.remove();
      await cp.system.auditExport.update({ where: { id: lost }, data: { status: 'failed' } });
      const refusedFailed = await cp.request('POST', `${base}/${lost}/cancel`, { token: auditor.token });
      expect(refusedFailed.status).toBe(409);
      expect(refusedFailed.json['detail']).toMatch(/The export is failed/);

      // Failed while a worker still holds its job: cancelled if that attempt is not the last (BullMQ retries it), else 409.
      const worker = new Worker(AUDIT_TASKS_QUEUE, null, { connection: { url: testContext().redisUrl }, prefix: cp.config.queue.prefix, autorun: false });
      let failing = '';
      try {
        await tasks.drain(true);
        failing = String((await cp.request('POST', base, { token: auditor.token, body: { format: 'csv' } })).json['id']);
        expect((await worker.getNextJob('spec-token'))?.id).toBe(`export-${failing}`);
        await cp.system.auditExport.update({ where: { id: failing }, data: { status: 'failed' } });
        expect((await cp.request('POST', `${base}/${failing}/cancel`, { token: auditor.token })).json).toMatchObject({ status: 'cancelled' });
        const lastTry = String((await cp.request('POST', base, { token: auditor.token, body: { format: 'csv' } })).json['id']);
        const held = await worker.getNextJob('spec-token');
        expect(held?.id).toBe(`export-${lastTry}`);
        // As BullMQ records two failed attempts of three.
        const redis = new Redis(testContext().redisUrl);
        await redis.hset(tasks.toKey(`export-${lastTry}`), 'atm', '2').finally(() => redis.disconnect());
        await cp.system.auditExport.update({ where: { id: lastTry }, data: { status: 'failed' } });
        expect((await cp.request('POST', `${base}/${lastTry}/cancel`, { token: auditor.token })).status).toBe(409);
        expect((await cp.system.auditExport.findUniqueOrThrow({ where: { id: failing } })).status).toBe('cancelled');
        expect((await cp.system.auditExport.findUniqueOrThrow({ where: { id: lastTry } })).status).toBe('failed');
      } finally {
        await worker.close(true);
      }

      // Another tenant cannot cancel it, even with the id; an unknown id is 404 too.
      const other = await cp.tenant();
      const stranger = await cp.member(other.id, 'auditor');
      const fresh = String((await cp.request('POST', base, { token: auditor.token, body: { format: 'csv' } })).json['id']);
      expect((await cp.request('POST', `/api/v1/tenants/${other.id}/audit/exports/${fresh}/cancel`, { token: stranger.token })).status).toBe(404);
      expect((await cp.request('POST', `${base}/${fresh}/cancel`, { token: stranger.token })).status).toBe(404);
      expect((await cp.request('POST', `${base}/${newId()}/cancel`, { token: auditor.token })).status).toBe(404);
      expect((await cp.system.auditExport.findUniqueOrThrow({ where: { id: fresh } })).status).toBe('queued');

      const events = await cp.eventsAtLeast(f.tenant.id, 12);
      expect(events.filter((e) => e.method === 'audit.export.cancel').map((e) => e.targetId).sort()).toEqual([id, running, retrying, failing].sort());
    } finally {
      await tasks.close();
    }
  });

  it('serves a completed export until its expiry, not after, even before the worker has removed the file', async () => {
    const f = await tenantWithEvents();
    const auditor = await cp.member(f.tenant.id, 'auditor');
    const base = `/api/v1/tenants/${f.tenant.id}/audit/exports`;
    const id = String((await cp.request('POST', base, { token: auditor.token, body: { format: 'jsonl' } })).json['id']);
    // What the worker leaves behind: the file, and the row completed with an expiry.
    mkdirSync(path.join(exportDir, f.tenant.id), { recursive: true });
    writeFileSync(path.join(exportDir, f.tenant.id, `${id}.jsonl`), '{}\n');
    const complete = (expiresAt: Date) =>
      cp.system.auditExport.update({ where: { id }, data: { status: 'completed', sha256: 'a'.repeat(64), rowCount: 1, completedAt: new Date(), expiresAt } });

    await complete(new Date(Date.now() + 60_000));
    expect((await cp.request('GET', `${base}/${id}`, { token: auditor.token })).json['downloadPath']).toBe(`${base}/${id}/download`);
    expect((await cp.request('GET', `${base}/${id}/download`, { token: auditor.token })).status).toBe(200);

    await complete(new Date(Date.now() - 1_000));
    expect((await cp.request('GET', `${base}/${id}`, { token: auditor.token })).json).toMatchObject({ status: 'completed', downloadPath: null });
    const late = await cp.request('GET', `${base}/${id}/download`, { token: auditor.token });
    expect(late.status).toBe(404);
    expect(late.json['detail']).toMatch(/no longer available/);
    // As the worker's expiry would leave it (other specs run the cross-tenant expiry).
    await cp.system.auditExport.update({ where: { id }, data: { status: 'expired' } });
  });

  it('reads a download whole when its file is removed once it was handed out (an expiry, or a newer export past the ten kept; found by re-review)', async () => {
    const f = await tenantWithEvents();
    const auditor = await cp.member(f.tenant.id, 'auditor');
    const base = `/api/v1/tenants/${f.tenant.id}/audit/exports`;
    const id = String((await cp.request('POST', base, { token: auditor.token, body: { format: 'jsonl' } })).json['id']);
    const file = path.join(exportDir, f.tenant.id, `${id}.jsonl`);
    mkdirSync(path.dirname(file), { recursive: true });
    const content = '{"seq":1}\n'.repeat(10_000);
    writeFileSync(file, content);
    await cp.system.auditExport.update({ where: { id }, data: { status: 'completed', sha256: 'a'.repeat(64), rowCount: 10_000, completedAt: new Date(), expiresAt: new Date(Date.now() + 60_000) } });
    const scope: TenantScope = { tenantId: f.tenant.id, role: 'auditor', actor: { userId: auditor.id as UserId, isPlatformAdmin: false, traceId: 't', traceparent: null } };
    const download = await cp.app.get(AuditService).download(scope, id);
    rmSync(file);
    const chunks: Buffer[] = [];
    for await (const chunk of download.stream) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe(content);
    expect(download.length).toBe(content.length);
    // Asked for after the removal: gone, not an error.
    expect((await cp.request('GET', `${base}/${id}/download`, { token: auditor.token })).status).toBe(404);
  });
});
