import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { jsonLinesServer, waitFor } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_CONNECTION_MAX_ITEMS } from '@portcullis/contracts/api';
import { definitionHash } from '@portcullis/contracts/tool-pins';
import { TESTS_PER_MINUTE } from '@portcullis/control-plane/feature-upstreams';
import { startControlPlane, type ControlPlaneHarness } from './testing/control-plane-harness';

// Test connection against the real app: a tenant cannot tie up the control plane with test connections to a server
// that never answers (each one holds a connection, or a child process for stdio, until the timeout).
let cp: ControlPlaneHarness;
let silent: Server;
let url: string;
let arrived = 0;
let rotating: Server;
let rotatingUrl: string;
let connections = 0;

/**
 * A stateless SDK server that lists 60 tools named after the connection: every test connection finds 60 new ones,
 * and the previous 60 gone (an upstream whose tool names never repeat).
 */
function startRotatingServer(): Server {
  return createServer((req, res) => {
    // Under `/echo/` it also names itself after the credential it was sent (serverInfo, answered to the admin testing).
    const echoing = req.url?.startsWith('/echo/') === true;
    const authorization = String(req.headers.authorization ?? 'none');
    const server = new McpServer(echoing ? { name: `runs-as ${authorization}`, version: `1.0 (${authorization})` } : { name: 'rotating', version: '1.0.0' });
    if (req.url?.startsWith('/many/')) {
      // As many tools as one test takes of a kind (5,000), never changing.
      for (let i = 0; i < 5_000; i++) server.registerTool(`many_${i}`, { description: 'one of very many' }, () => ({ content: [] }));
    } else if (req.url?.startsWith('/steady/')) {
      // One tool, always the same (its description changed under `/steady/changed`).
      server.registerTool('forecast', { description: req.url.startsWith('/steady/changed') ? 'Weather, and more' : 'Weather' }, () => ({ content: [] }));
    } else if (req.url?.startsWith('/echo/')) {
      // Quotes the credential it was sent in what it advertises (which key it runs under; more of it under `/echo/changed`).
      const quoted = `Runs as the caller of key ${String(req.headers.authorization ?? 'none')}`;
      server.registerTool('whoami', { description: req.url.startsWith('/echo/changed') ? `${quoted}, now with more` : quoted }, () => ({ content: [] }));
    } else if (req.url?.startsWith('/wide/')) {
      // Another path: 250 tools that never change.
      for (let i = 0; i < 250; i++) server.registerTool(`wide_${String(i).padStart(3, '0')}`, { description: 'one of many' }, () => ({ content: [] }));
    } else {
      // A test connection makes two requests or more (initialize, tools/list), so each one lists names never seen before.
      const generation = Math.floor(connections++ / 2);
      for (let i = 0; i < 60; i++) server.registerTool(`g${generation}_t${i}`, { description: 'rotates' }, () => ({ content: [] }));
    }
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => void transport.close());
    void server.connect(transport).then(() => transport.handleRequest(req, res));
  });
}

beforeAll(async () => {
  silent = createServer(() => void (arrived += 1)); // accepts, counts, never answers
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/mcp`;
  rotating = startRotatingServer();
  await new Promise<void>((resolve) => rotating.listen(0, '127.0.0.1', resolve));
  rotatingUrl = `http://127.0.0.1:${(rotating.address() as AddressInfo).port}/mcp`;
  cp = await startControlPlane({ CONTROL_PLANE_UPSTREAM_ALLOW_PRIVATE: 'true', CONTROL_PLANE_UPSTREAM_TEST_TIMEOUT_MS: '4000', CONTROL_PLANE_UPSTREAM_MAX_DEFINITIONS: '100' });
});
afterAll(async () => {
  await cp?.close();
  rotating?.closeAllConnections();
  await new Promise((resolve) => rotating?.close(resolve));
  silent?.closeAllConnections();
  await new Promise((resolve) => silent?.close(resolve));
});

async function tenantWithUpstream(target = url, toolApproval: 'trust_on_first_use' | 'require_approval' = 'trust_on_first_use', on: ControlPlaneHarness = cp) {
  const cp = on;
  const t = await cp.tenant();
  const admin = await cp.member(t.id, 'admin');
  const upstream = await cp.system.upstream.create({
    data: { tenantId: t.id, name: 'up', toolPrefix: 'up', transport: 'streamable_http', url: target, toolApproval },
    select: { id: true },
  });
  const stored = () => cp.system.upstreamTool.count({ where: { tenantId: t.id, upstreamId: upstream.id } });
  const rows = () => cp.system.upstreamTool.findMany({ where: { tenantId: t.id, upstreamId: upstream.id }, select: { name: true, removedAt: true } });
  return { tenantId: t.id, admin, upstreamId: upstream.id, path: `/api/v1/tenants/${t.id}/upstreams/${upstream.id}/test`, tools: `/api/v1/tenants/${t.id}/upstreams/${upstream.id}/tools`, stored, rows };
}

describe('test connection of a blocked definition', () => {
  it('keeps it blocked whether the upstream still advertises it as it was or changed it', async () => {
    const held = await tenantWithUpstream(rotatingUrl.replace(/\/mcp$/, '/steady/mcp'));
    const status = async () =>
      (await cp.system.upstreamTool.findFirstOrThrow({ where: { tenantId: held.tenantId, upstreamId: held.upstreamId, name: 'forecast' }, select: { status: true } })).status;
    expect((await cp.request('POST', held.path, { token: held.admin.token })).status).toBe(200);
    expect(await status()).toBe('approved');
    // Blocked (in the database: ADR 0013, no API sets it yet); the gateway hides and refuses it.
    await cp.system.upstreamTool.updateMany({ where: { tenantId: held.tenantId, upstreamId: held.upstreamId, name: 'forecast' }, data: { status: 'blocked' } });
    expect((await cp.request('POST', held.path, { token: held.admin.token })).status).toBe(200);
    expect(await status()).toBe('blocked');
    await cp.system.upstream.update({ where: { id: held.upstreamId }, data: { url: rotatingUrl.replace(/\/mcp$/, '/steady/changed/mcp') } });
    const retested = await cp.request('POST', held.path, { token: held.admin.token });
    expect(retested.status).toBe(200);
    expect(retested.json['discovered']).toMatchObject({ changed: 1 });
    expect(await status()).toBe('blocked');
  });
});

describe('test connection of an upstream that quotes its credential', () => {
  const secret = 'Bearer sk-live-0123456789abcdef';
  const quoted = 'sk-live-0123456789abcdef';

  /** An upstream created through the API, its Authorization header sealed, at `/echo/` of the rotating server. */
  async function echoingUpstream(toolApproval: 'trust_on_first_use' | 'require_approval') {
    const t = await cp.tenant();
    const admin = await cp.member(t.id, 'admin');
    const member = await cp.member(t.id, 'member');
    const base = `/api/v1/tenants/${t.id}/upstreams`;
    const created = await cp.request('POST', base, {
      token: admin.token,
      body: { name: 'Echo', toolPrefix: 'echo', transport: 'streamable_http', url: rotatingUrl.replace(/\/mcp$/, '/echo/mcp'), headers: { Authorization: secret }, toolApproval },
    });
    expect(created.status).toBe(201);
    const id = String(created.json['id']);
    const row = () => cp.system.upstreamTool.findFirstOrThrow({ where: { tenantId: t.id, upstreamId: id, name: 'whoami' } });
    return { tenantId: t.id, admin, member, id, path: `${base}/${id}`, row };
  }

  it('never returns the sealed header value to a member in the stored definitions, and stores them masked', async () => {
    const echo = await echoingUpstream('trust_on_first_use');
    const tested = await cp.request('POST', `${echo.path}/test`, { token: echo.admin.token });
    expect(tested.status).toBe(200);
    expect(tested.text).not.toContain(quoted);
    // The member may not read the headers (write-only) ...
    expect((await cp.request('GET', echo.path, { token: echo.member.token })).text).not.toContain(quoted);
    // ... nor read them off the stored definitions.
    const tools = await cp.request('GET', `${echo.path}/tools`, { token: echo.member.token });
    expect(tools.status).toBe(200);
    expect(tools.text).not.toContain(quoted);
    expect(tools.text).toContain('Runs as the caller of key [redacted]');
    const row = await echo.row();
    expect(JSON.stringify([row.definition, row.approvedDefinition])).not.toContain(quoted);
    // The hash is of the definition as the upstream wrote it, credential and all: what the gateway computes from its listings.
    const written = JSON.parse(JSON.stringify(row.definition).replace('[redacted]', secret)) as Record<string, unknown>;
    expect(row.contentHash).toBe(definitionHash('tool', written));
    expect(row.contentHash).not.toBe(definitionHash('tool', row.definition as Record<string, unknown>));
  }, 30_000);

  it('masks definitions stored before, on read and at the next test, and approves the hash of the definition as written', async () => {
    const echo = await echoingUpstream('require_approval');
    expect((await cp.request('POST', `${echo.path}/test`, { token: echo.admin.token })).status).toBe(200);
    const first = await echo.row();
    const approved = await cp.request('POST', `${echo.path}/tools/${first.id}/approve`, { token: echo.admin.token, body: { contentHash: first.contentHash } });
    expect(approved.status).toBe(200);
    expect(approved.text).not.toContain(quoted);
    // As a test connection before masking stored them: the credential in plain text.
    const raw = JSON.parse(JSON.stringify(first.definition).replace('[redacted]', secret)) as Record<string, string>;
    await cp.system.upstreamTool.update({ where: { id: first.id }, data: { definition: raw, approvedDefinition: raw } });
    const listed = await cp.request('GET', `${echo.path}/tools`, { token: echo.member.token });
    expect(listed.status).toBe(200);
    expect(listed.text).not.toContain(quoted);
    // The upstream changes the definition: the diff shown is of masked texts, and the stored ones are masked too.
    await cp.system.upstream.update({ where: { id: echo.id }, data: { url: rotatingUrl.replace(/\/mcp$/, '/echo/changed/mcp') } });
    const retested = await cp.request('POST', `${echo.path}/test`, { token: echo.admin.token });
    expect(retested.status).toBe(200);
    expect(retested.json['discovered']).toMatchObject({ changed: 1 });
    const changed = await cp.request('GET', `${echo.path}/tools?state=changed`, { token: echo.member.token });
    expect(changed.text).not.toContain(quoted);
    const [item] = changed.json['items'] as { id: string; contentHash: string; changes: { path: string; before: string; after: string }[] }[];
    expect(item?.changes).toEqual([
      { path: '/description', change: 'changed', before: 'Runs as the caller of key [redacted]', after: 'Runs as the caller of key [redacted], now with more' },
    ]);
    const stored = await echo.row();
    expect(JSON.stringify([stored.definition, stored.approvedDefinition])).not.toContain(quoted);
    expect(stored.approvedHash).toBe(first.contentHash);
    // Approving the change approves the hash the gateway computes (of the text as written); what is kept beside it is masked.
    const reapproved = await cp.request('POST', `${echo.path}/tools/${stored.id}/approve`, { token: echo.admin.token, body: { contentHash: item?.contentHash } });
    expect(reapproved.status).toBe(200);
    expect(reapproved.text).not.toContain(quoted);
    const after = await echo.row();
    expect(after.approvedHash).toBe(after.contentHash);
    expect(after.contentHash).toBe(definitionHash('tool', JSON.parse(JSON.stringify(after.definition).replace('[redacted]', secret)) as Record<string, unknown>));
    expect(JSON.stringify(after.approvedDefinition)).not.toContain(quoted);
  }, 30_000);
});

describe('test connection', () => {
  it('runs at most four at once per tenant (429 beyond), without holding back other tenants', async () => {
    const a = await tenantWithUpstream();
    const b = await tenantWithUpstream();
    const running = [1, 2, 3, 4].map(() => cp.request('POST', a.path, { token: a.admin.token }));
    const other = cp.request('POST', b.path, { token: b.admin.token });
    // All five requests (four of tenant a, one of b) hold a slot once the silent server has seen them; a fixed sleep
    // was not enough on a loaded machine. They wait there until the 4 s timeout.
    await waitFor(() => arrived >= 5, { timeoutMs: 3_000, description: 'five test connections at the silent server' });
    const fifth = await cp.request('POST', a.path, { token: a.admin.token });
    expect(fifth.status).toBe(429);
    expect(fifth.json['code']).toBe('RATE_LIMITED');
    expect((await Promise.all(running)).map((res) => res.status)).toEqual([504, 504, 504, 504]);
    expect((await other).status).toBe(504);
    // Finished tests free their slots.
    expect((await cp.request('POST', a.path, { token: a.admin.token })).status).toBe(504);
  }, 20_000);

  it('keeps an upstream\'s stored definitions within the bound: unapproved ones it stopped listing go first, longest gone first', async () => {
    const held = await tenantWithUpstream(rotatingUrl, 'require_approval');
    for (const expected of [60, 100, 100]) {
      const tested = await cp.request('POST', held.path, { token: held.admin.token });
      expect(tested.status).toBe(200);
      expect(tested.json).toMatchObject({ omitted: 0 });
      expect(await held.stored()).toBe(expected);
    }
    // What it lists now is all kept; of the gone ones, 40 of the last test's and none of the first's.
    const byGeneration = new Map<string, { listed: number; gone: number }>();
    for (const row of await held.rows()) {
      const generation = row.name.split('_')[0] ?? '';
      const counts = byGeneration.get(generation) ?? { listed: 0, gone: 0 };
      if (row.removedAt === null) counts.listed += 1;
      else counts.gone += 1;
      byGeneration.set(generation, counts);
    }
    expect([...byGeneration.values()].sort((a, b) => b.listed - a.listed)).toEqual([{ listed: 60, gone: 0 }, { listed: 0, gone: 40 }]);

    // The API pages them (at most 200 a page), filtered by state in the query.
    const seen = new Set<string>();
    let cursor: string | null = null;
    let pages = 0;
    do {
      const listed = await cp.request('GET', `${held.tools}?limit=30${cursor ? `&cursor=${cursor}` : ''}`, { token: held.admin.token });
      expect(listed.status).toBe(200);
      const body = listed.json as { items: { id: string }[]; nextCursor: string | null };
      expect(body.items.length).toBeLessThanOrEqual(30);
      for (const item of body.items) seen.add(item.id);
      cursor = body.nextCursor;
      pages += 1;
    } while (cursor !== null && pages < 10);
    expect([seen.size, pages]).toEqual([100, 4]);
    const count = async (state: string) => ((await cp.request('GET', `${held.tools}?state=${state}&limit=200`, { token: held.admin.token })).json as { items: unknown[] }).items.length;
    expect([await count('pending'), await count('removed'), await count('approved'), await count('changed')]).toEqual([60, 40, 0, 0]);
    expect((await cp.request('GET', `${held.tools}?limit=500`, { token: held.admin.token })).status).toBe(400);
  }, 20_000);

  it('stores nothing when approved definitions alone would pass the bound (trust on first use), and says why', async () => {
    const trusted = await tenantWithUpstream(rotatingUrl, 'trust_on_first_use');
    expect((await cp.request('POST', trusted.path, { token: trusted.admin.token })).status).toBe(200);
    expect(await trusted.stored()).toBe(60);
    // One approved definition that the upstream has since changed (as a later test would store it) is `changed`.
    const one = await cp.system.upstreamTool.findFirstOrThrow({ where: { upstreamId: trusted.upstreamId }, select: { id: true } });
    await cp.system.upstreamTool.update({ where: { id: one.id }, data: { contentHash: 'f'.repeat(64) } });
    const count = async (state: string) => ((await cp.request('GET', `${trusted.tools}?state=${state}&limit=200`, { token: trusted.admin.token })).json as { items: unknown[] }).items.length;
    expect([await count('approved'), await count('changed'), await count('pending'), await count('removed')]).toEqual([59, 1, 0, 0]);
    const refused = await cp.request('POST', trusted.path, { token: trusted.admin.token });
    expect(refused.status).toBe(409);
    expect(String(refused.json['detail'])).toContain('more than 100 stored definitions');
    expect(await trusted.stored()).toBe(60);
    // Recorded on the upstream, as a failed test is.
    expect(await cp.system.upstream.findUniqueOrThrow({ where: { id: trusted.upstreamId }, select: { lastSyncError: true } })).toEqual({ lastSyncError: 'too_many_definitions' });
    expect(String(refused.json['detail'])).toContain('Forget the stored definitions');

    // The way out short of deleting the upstream: an approver forgets the stored definitions, and the next test stores
    // what the upstream lists now.
    const member = await cp.member(trusted.tenantId, 'member');
    expect((await cp.request('DELETE', trusted.tools, { token: member.token })).status).toBe(403);
    expect((await cp.request('DELETE', `${trusted.tools}?state=pending`, { token: trusted.admin.token })).status).toBe(400);
    // None is marked removed (the refused test stored nothing), so forgetting only those forgets none.
    expect((await cp.request('DELETE', `${trusted.tools}?state=removed`, { token: trusted.admin.token })).json).toEqual({ forgotten: 0 });
    const forgotten = await cp.request('DELETE', trusted.tools, { token: trusted.admin.token });
    expect([forgotten.status, forgotten.json]).toEqual([200, { forgotten: 60 }]);
    expect(await trusted.stored()).toBe(0);
    const forgetting = await waitFor(async () => (await cp.auditEvents(trusted.tenantId)).find((event) => event.method === 'upstream.tools.forget') ?? null, {
      description: 'the audit event of the forgetting',
    });
    expect(forgetting).toMatchObject({
      targetType: 'upstream',
      targetId: trusted.upstreamId,
      arguments: { after: { forgotten: 60, only: 'all' } },
      snapshotVersion: expect.any(Number),
    });
    const retested = await cp.request('POST', trusted.path, { token: trusted.admin.token });
    expect(retested.json).toMatchObject({ discovered: { total: 60, new: 60, approvedOnFirstUse: 60 } });
    expect(await trusted.stored()).toBe(60);
  }, 20_000);

  it('forgets only the definitions an upstream no longer advertises when asked to', async () => {
    const held = await tenantWithUpstream(rotatingUrl, 'require_approval');
    for (let i = 0; i < 2; i++) expect((await cp.request('POST', held.path, { token: held.admin.token })).status).toBe(200);
    // The bound (100) kept 40 of the first test's 60.
    expect((await held.rows()).filter((row) => row.removedAt !== null)).toHaveLength(40);
    expect((await cp.request('DELETE', `${held.tools}?state=removed`, { token: held.admin.token })).json).toEqual({ forgotten: 40 });
    expect((await held.rows()).map((row) => row.removedAt)).toEqual(new Array(60).fill(null));
  }, 20_000);

  it(`answers at most ${TEST_CONNECTION_MAX_ITEMS} definitions, those that need a decision first, and counts the others`, async () => {
    // A control plane with the default bound on stored definitions (this file's other one keeps 100).
    const roomy = await startControlPlane({ CONTROL_PLANE_UPSTREAM_ALLOW_PRIVATE: 'true' });
    try {
      const wide = await tenantWithUpstream(rotatingUrl.replace('/mcp', '/wide/mcp'), 'trust_on_first_use', roomy);
      expect((await roomy.request('POST', wide.path, { token: wide.admin.token })).json).toMatchObject({ discovered: { total: 250, new: 250 }, omitted: 50 });
      // One approved definition changed since (as a later test would store it): it comes first.
      const last = await roomy.system.upstreamTool.findFirstOrThrow({ where: { upstreamId: wide.upstreamId, name: 'wide_249' }, select: { id: true } });
      await roomy.system.upstreamTool.update({ where: { id: last.id }, data: { approvedHash: 'f'.repeat(64) } });
      const again = await roomy.request('POST', wide.path, { token: wide.admin.token });
      const items = (again.json as { items: { name: string; state: string }[] }).items;
      expect([items.length, items[0], again.json['omitted']]).toEqual([200, expect.objectContaining({ name: 'wide_249', state: 'changed' }), 50]);
    } finally {
      await roomy.close();
    }
  }, 30_000);

  it('stores and re-tests an upstream with 5,000 tools within the transaction\'s bound (written in batches)', async () => {
    const roomy = await startControlPlane({ CONTROL_PLANE_UPSTREAM_ALLOW_PRIVATE: 'true', CONTROL_PLANE_UPSTREAM_TEST_TIMEOUT_MS: '30000' });
    try {
      const many = await tenantWithUpstream(rotatingUrl.replace('/mcp', '/many/mcp'), 'trust_on_first_use', roomy);
      const first = await roomy.request('POST', many.path, { token: many.admin.token });
      expect([first.status, first.json['discovered']]).toEqual([200, expect.objectContaining({ total: 5_000, new: 5_000 })]);
      const again = await roomy.request('POST', many.path, { token: many.admin.token });
      expect([again.status, again.json['discovered']]).toEqual([200, expect.objectContaining({ total: 5_000, new: 0, changed: 0 })]);
      expect(await many.stored()).toBe(5_000);
    } finally {
      await roomy.close();
    }
  }, 60_000);

  it('keeps unapproved definitions of a trust-on-first-use upstream: there they are what holds an item', async () => {
    // Pending under require_approval, then the upstream is switched to trust on first use: its pending rows stay held.
    const switched = await tenantWithUpstream(rotatingUrl, 'require_approval');
    expect((await cp.request('POST', switched.path, { token: switched.admin.token })).status).toBe(200);
    await cp.system.upstream.update({ where: { id: switched.upstreamId }, data: { toolApproval: 'trust_on_first_use' } });
    const refused = await cp.request('POST', switched.path, { token: switched.admin.token });
    expect(refused.status).toBe(409);
    expect(await switched.stored()).toBe(60);
    expect((await switched.rows()).every((row) => row.removedAt === null)).toBe(true);
  }, 20_000);

  it(`starts at most ${TESTS_PER_MINUTE} test connections per tenant a minute (429 with Retry-After beyond)`, async () => {
    const busy = await tenantWithUpstream(rotatingUrl, 'require_approval');
    const other = await tenantWithUpstream(rotatingUrl, 'require_approval');
    // Sequentially: each finishes before the next starts, so only the per-minute bound can refuse.
    for (let i = 0; i < TESTS_PER_MINUTE; i++) expect((await cp.request('POST', busy.path, { token: busy.admin.token })).status).toBe(200);
    const refused = await cp.request('POST', busy.path, { token: busy.admin.token });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect((await cp.request('POST', other.path, { token: other.admin.token })).status).toBe(200);
  }, 60_000);
});

describe('a test connection of an upstream repointed while it runs', () => {
  const servers: Server[] = [];
  afterAll(async () => {
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
  /** A stateless SDK server with one tool `tool`; `slow`: its tools/list answers after 1.5 s, and says when it began. */
  async function serverOf(tool: string, slow?: () => void): Promise<string> {
    const server = createServer((req, res) => {
      const mcp = new McpServer({ name: tool, version: '1.0.0' });
      mcp.registerTool(tool, { description: `from ${tool}` }, () => ({ content: [] }));
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      res.on('close', () => void transport.close());
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        const parsed = body ? (JSON.parse(body) as { method?: string }) : undefined;
        const go = () => void mcp.connect(transport).then(() => transport.handleRequest(req, res, parsed));
        if (slow !== undefined && parsed?.method === 'tools/list') {
          slow();
          setTimeout(go, 1_500);
        } else go();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
  }

  it("stores none of what the old server had as the repointed upstream's definitions, and says so (409)", async () => {
    let listingStarted: () => void = () => undefined;
    const listing = new Promise<void>((resolve) => (listingStarted = resolve));
    const oldUrl = await serverOf('old_server_tool', listingStarted);
    const newUrl = await serverOf('new_server_tool');
    const { tenantId, admin, upstreamId, path, rows } = await tenantWithUpstream(oldUrl);
    const test = cp.request('POST', path, { token: admin.token });
    await listing;
    // Another admin repoints the upstream while the test lists the old server's tools.
    const moved = await cp.request('PATCH', `/api/v1/tenants/${tenantId}/upstreams/${upstreamId}`, { token: admin.token, body: { url: newUrl } });
    expect(moved.status).toBe(200);
    const result = await test;
    expect(result.status).toBe(409);
    // Trusted on first use, the old server's tool was stored and approved as the upstream's own.
    expect((await rows()).map((row) => row.name)).not.toContain('old_server_tool');
    // A test run now finds the new server's.
    expect((await cp.request('POST', path, { token: admin.token })).status).toBe(200);
    expect((await rows()).map((row) => row.name)).toEqual(['new_server_tool']);
  });

  it('sees an edit committed through another control-plane process while the test waited for the upstream (409, nothing stored)', async () => {
    const oldUrl = await serverOf('old_server_tool');
    const newUrl = await serverOf('new_server_tool');
    const { tenantId, admin, upstreamId, path, rows } = await tenantWithUpstream(oldUrl);
    const other = await startControlPlane({ CONTROL_PLANE_UPSTREAM_ALLOW_PRIVATE: 'true' });
    // What another process's test of the same upstream holds while it stores: the per-upstream lock.
    const key = `pcs:upstream-tools:${tenantId}:${upstreamId}`;
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked: () => void = () => undefined;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = cp.system.$transaction(
      async (tx) => {
        await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${key}, 0))`;
        locked();
        await released;
      },
      { timeout: 30_000, maxWait: 10_000 },
    );
    await isLocked;
    try {
      // The test probes the old server, then waits for the lock to store what it found.
      const test = cp.request('POST', path, { token: admin.token });
      await waitFor(
        async () => {
          const waiting = await cp.system.$queryRaw<{ n: bigint }[]>`SELECT count(*)::bigint AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`;
          return (waiting[0]?.n ?? 0n) > 0n ? true : null;
        },
        { timeoutMs: 10_000, description: 'the test waiting for the upstream lock' },
      );
      // Meanwhile another admin repoints the upstream through the other process: it commits.
      expect((await other.request('PATCH', `/api/v1/tenants/${tenantId}/upstreams/${upstreamId}`, { token: admin.token, body: { url: newUrl } })).status).toBe(200);
      release();
      await holder;
      expect((await test).status).toBe(409);
      expect((await rows()).map((row) => row.name)).not.toContain('old_server_tool');
    } finally {
      release();
      await holder.catch(() => undefined);
      await other.close();
    }
  }, 60_000);

  it('answers a deadlock Postgres broke with a rename through another process as a conflict to retry, not a 500', async () => {
    const { tenantId, admin, upstreamId, path } = await tenantWithUpstream(await serverOf('one_tool'));
    // What a rename does in the other process: the snapshot lock, then the row's update (the test takes them the other
    // way round: the row, then the snapshot lock to rebuild).
    let go: () => void = () => undefined;
    const goSignal = new Promise<void>((resolve) => (go = resolve));
    let locked: () => void = () => undefined;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const rename = cp.system
      .$transaction(
        async (tx) => {
          await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`pcs:policy-snapshots:${tenantId}`}, 0))`;
          locked();
          await goSignal;
          await tx.$executeRaw`UPDATE upstreams SET name = 'renamed', version = version + 1 WHERE id = ${upstreamId}::uuid`;
        },
        { timeout: 30_000, maxWait: 10_000 },
      )
      .then(() => 'committed', () => 'aborted');
    await isLocked;
    const test = cp.request('POST', path, { token: admin.token });
    await waitFor(
      async () => {
        const waiting = await cp.system.$queryRaw<{ n: bigint }[]>`SELECT count(*)::bigint AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`;
        return (waiting[0]?.n ?? 0n) > 0n ? true : null;
      },
      { timeoutMs: 10_000, description: 'the test waiting for the snapshot lock' },
    );
    go();
    const result = await test;
    await rename;
    // Postgres aborts one of the two: the test (409, try again) or the rename (the test stores and answers 200).
    expect([200, 409]).toContain(result.status);
  }, 60_000);
});


/** A stdio MCP server by hand: one tool named after the user id it runs as; it leaves a daemonised helper running. */
const WHOAMI_SERVER = jsonLinesServer(
  `
    if (message.method === 'initialize') {
      send({ jsonrpc: '2.0', id: message.id, result: { protocolVersion: message.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'whoami', version: '1' } } });
    } else if (message.method === 'tools/list') {
      send({ jsonrpc: '2.0', id: message.id, result: { tools: [{ name: 'uid_' + process.getuid(), inputSchema: { type: 'object' } }] } });
    }`,
  "require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', detached: true }).unref();",
);

describe.skipIf(process.getuid?.() !== 0)('test connection with CONTROL_PLANE_STDIO_UID_RANGE (as root here)', () => {
  /** The pids of processes running as `uid`, one per line; killed ones not yet reaped (zombies) are not counted. */
  const running = (uid: number) =>
    spawnSync('ps', ['-o', 'pid=,stat=', '-u', String(uid)])
      .stdout.toString()
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .filter(([pid, stat]) => pid !== undefined && pid !== '' && !stat?.startsWith('Z'))
      .map(([pid]) => pid)
      .join('\n');
  it("runs each test's stdio server as an id of the range, and leaves nothing running as it once the test ends", async () => {
    const ranged = await startControlPlane({ CONTROL_PLANE_STDIO_COMMAND_ALLOWLIST: process.execPath, CONTROL_PLANE_STDIO_UID_RANGE: '230020-230021' });
    try {
      const t = await ranged.tenant();
      const admin = await ranged.member(t.id, 'admin');
      const upstream = await ranged.system.upstream.create({
        data: { tenantId: t.id, name: 'who', toolPrefix: 'who', transport: 'stdio', command: process.execPath, args: ['-e', WHOAMI_SERVER] },
        select: { id: true },
      });
      const test = () => ranged.request('POST', `/api/v1/tenants/${t.id}/upstreams/${upstream.id}/test`, { token: admin.token });
      const names = async () => (await ranged.system.upstreamTool.findMany({ where: { tenantId: t.id, upstreamId: upstream.id, removedAt: null }, select: { name: true } })).map((row) => row.name);
      expect((await test()).status).toBe(200);
      expect(await names()).toEqual(['uid_230020']);
      // Its helper, out of the server's process group, is killed with the id once the test is over.
      await waitFor(() => running(230_020) === '', { timeoutMs: 5_000, description: 'nothing left running as the id' });
      expect((await test()).status).toBe(200);
      expect(await names()).toEqual(['uid_230021']);
      await waitFor(() => running(230_021) === '', { timeoutMs: 5_000, description: 'nothing left running as the second id' });
    } finally {
      await ranged.close();
    }
  }, 30_000);

  // Before, a shutdown gave the range up while tests ran: their servers (detached, with the tenant's configured
  // environment) went on as ids no process held once the control plane exited (found by re-review).
  it('ends the tests under way at shutdown, their servers and what runs as their ids, before it gives the range up', async () => {
    const ranged = await startControlPlane({
      CONTROL_PLANE_STDIO_COMMAND_ALLOWLIST: process.execPath,
      CONTROL_PLANE_STDIO_UID_RANGE: '230030-230031',
      CONTROL_PLANE_UPSTREAM_TEST_TIMEOUT_MS: '25000',
    });
    let closed = false;
    try {
      const t = await ranged.tenant();
      const admin = await ranged.member(t.id, 'admin');
      // A server that never answers, with a daemonised helper: its test would run until the 25 s deadline.
      const hanging = `require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', detached: true }).unref(); process.stdin.resume();`;
      const upstream = await ranged.system.upstream.create({
        data: { tenantId: t.id, name: 'hang', toolPrefix: 'hang', transport: 'stdio', command: process.execPath, args: ['-e', hanging] },
        select: { id: true },
      });
      const test = ranged.request('POST', `/api/v1/tenants/${t.id}/upstreams/${upstream.id}/test`, { token: admin.token });
      await waitFor(() => running(230_030).split('\n').filter(Boolean).length >= 2, { timeoutMs: 10_000, description: 'the server and its helper running as 230030' });
      const started = Date.now();
      await ranged.close();
      closed = true;
      expect(running(230_030)).toBe('');
      // Well before the test's own deadline.
      expect(Date.now() - started).toBeLessThan(10_000);
      await test.catch(() => undefined);
    } finally {
      if (!closed) await ranged.close();
      spawnSync('pkill', ['-KILL', '-u', '230030']);
    }
  }, 40_000);

  // A test that arrived while the shutdown waited for the others (requests are still served then) ran on past the
  // range's release, its server as an id no process held (found by re-review).
  it('refuses a test that arrives while it shuts down (503), so nothing runs as the range once it is given up', async () => {
    const ranged = await startControlPlane({
      CONTROL_PLANE_STDIO_COMMAND_ALLOWLIST: process.execPath,
      CONTROL_PLANE_STDIO_UID_RANGE: '230040-230043',
      CONTROL_PLANE_UPSTREAM_TEST_TIMEOUT_MS: '25000',
    });
    let closed = false;
    try {
      const t = await ranged.tenant();
      const admin = await ranged.member(t.id, 'admin');
      // Never answers, and leaves many files in its home: clearing its id keeps the shutdown waiting a while.
      const hanging = `const fs = require('node:fs'); for (let i = 0; i < 20000; i++) fs.writeFileSync(process.env.HOME + '/f' + i, 'x');
require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', detached: true }).unref(); process.stdin.resume();`;
      const upstream = await ranged.system.upstream.create({
        data: { tenantId: t.id, name: 'hang', toolPrefix: 'hang', transport: 'stdio', command: process.execPath, args: ['-e', hanging] },
        select: { id: true },
      });
      const test = () => ranged.request('POST', `/api/v1/tenants/${t.id}/upstreams/${upstream.id}/test`, { token: admin.token });
      const first = test();
      await waitFor(() => running(230_040).split('\n').filter(Boolean).length >= 2, { timeoutMs: 15_000, description: 'the first server and its helper' });
      const closing = ranged.close().then(() => (closed = true));
      await waitFor(() => running(230_040).split('\n').filter(Boolean).length <= 1, { timeoutMs: 5_000, intervalMs: 5, description: 'the first server killed by the shutdown' });
      const second = await test();
      expect(second.status, second.text).toBe(503);
      expect(second.headers['retry-after']).toBe('5');
      await closing;
      await first;
      for (const uid of [230_040, 230_041, 230_042, 230_043]) expect(running(uid), String(uid)).toBe('');
    } finally {
      if (!closed) await ranged.close().catch(() => undefined);
      for (const uid of ['230040', '230041', '230042', '230043']) spawnSync('pkill', ['-KILL', '-u', uid]);
    }
  }, 60_000);
});

describe('test connection ended by a shutdown', () => {
  // Before, it was answered 504 and recorded as the upstream timing out (its last sync error overwritten), though the
  // upstream was far from its own deadline (found by re-review).
  it('is answered 503 and records nothing against the upstream', async () => {
    const closing = await startControlPlane({ CONTROL_PLANE_UPSTREAM_ALLOW_PRIVATE: 'true', CONTROL_PLANE_UPSTREAM_TEST_TIMEOUT_MS: '25000' });
    let closed = false;
    try {
      const t = await closing.tenant();
      const admin = await closing.member(t.id, 'admin');
      const lastSyncedAt = new Date('2026-01-01T00:00:00Z');
      const upstream = await closing.system.upstream.create({
        data: { tenantId: t.id, name: 'up', toolPrefix: 'up', transport: 'streamable_http', url, lastSyncError: null, lastSyncedAt },
        select: { id: true },
      });
      const before = arrived;
      const test = closing.request('POST', `/api/v1/tenants/${t.id}/upstreams/${upstream.id}/test`, { token: admin.token });
      await waitFor(() => arrived > before, { timeoutMs: 10_000, description: 'the test reaching the silent upstream' });
      await closing.close();
      closed = true;
      const answer = await test;
      expect(answer.status, answer.text).toBe(503);
      expect(answer.headers['retry-after']).toBe('5');
      expect(await cp.system.upstream.findUniqueOrThrow({ where: { id: upstream.id }, select: { lastSyncError: true, lastSyncedAt: true } })).toEqual({ lastSyncError: null, lastSyncedAt });
    } finally {
      if (!closed) await closing.close();
    }
  }, 40_000);
});
