/**
 * DELETE of a session whose upstream is slow to answer the gateway's own DELETE (busy or unreachable): the session is
 * gone once its record is deleted, so the other replicas are told at once (ADR 0007), the agent's standalone stream on
 * another replica ends promptly, and the agent's DELETE does not wait for the upstream's answer up to its connect
 * timeout. Before, all three waited for every upstream DELETE.
 */
import { createServer, request as httpRequest, type Server } from 'node:http';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, listenInSession, postInitialize, postInSession, startTestGateway, type TestGateway } from './testing/gateway-harness';
import { startRecordingUpstream, type RecordingUpstream } from './testing/recording-upstream';

const ctx = testContext();
let db: SystemPrismaClient;
let gatewayA: TestGateway;
let gatewayB: TestGateway;
let tenant: TestTenant;
let key: string;
let upstream: RecordingUpstream;
let proxy: Server;
let proxyUrl: string;

/** In front of the recorder: passes everything through, except DELETE, which it never answers. */
async function startHangingDeleteProxy(target: string): Promise<void> {
  const to = new URL(target);
  proxy = createServer((req, res) => {
    if (req.method === 'DELETE') {
      req.resume();
      return; // never answered
    }
    const out = httpRequest({ host: to.hostname, port: to.port, path: to.pathname, method: req.method, headers: req.headers }, (upstreamRes) => {
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
      upstreamRes.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const address = proxy.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  proxyUrl = `http://127.0.0.1:${address.port}/mcp`;
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  upstream = await startRecordingUpstream();
  await startHangingDeleteProxy(upstream.url);
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({
    data: { tenantId: tenant.id, connectTimeoutMs: 8_000, callTimeoutMs: 20_000, name: 'slowdelete', toolPrefix: 'rec', transport: 'streamable_http', url: proxyUrl } as never,
  });
  ({ key } = await createAgentWithKey(db, tenant.id, 'delete-order-agent'));
  gatewayA = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
  gatewayB = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  proxy?.closeAllConnections();
  proxy?.close();
  await gatewayA?.close();
  await gatewayB?.close();
  const closed = new Promise<void>((resolve) => upstream?.server.close(() => resolve()));
  upstream?.server.closeAllConnections();
  await closed;
  await db?.$disconnect();
}, 60_000);

describe('DELETE of a session whose upstream is slow to answer its own DELETE', () => {
  it('answers the agent and ends the session on the other replica at once, not after the upstream answers', async () => {
    const init = await postInitialize(gatewayA, tenant.slug, key);
    await init.text();
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    // The session in use through both replicas; the agent listens on B.
    expect((await postInSession(gatewayB, tenant.slug, key, sessionId, { id: 2, method: 'tools/list' })).status).toBe(200);
    const stream = await listenInSession(gatewayB, tenant.slug, key, sessionId);
    await new Promise((resolve) => setTimeout(resolve, 300));

    const started = Date.now();
    const deleting = fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${key}`, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' },
    }).then((res) => ({ status: res.status, afterMs: Date.now() - started }));

    // The stream of a session that no longer exists ends within moments (the bus), not once the upstream answers.
    await waitFor(() => stream.endedAt() !== undefined, { timeoutMs: 3_000, description: "the other replica's standalone stream ended" }).catch(() => undefined);
    const streamEndedAfterMs = (stream.endedAt() ?? Number.POSITIVE_INFINITY) - started;
    const deleted = await deleting;
    stream.close();
    expect({ streamEndedWithin3s: streamEndedAfterMs < 3_000, deleteAnsweredWithin3s: deleted.afterMs < 3_000, status: deleted.status }).toEqual({
      streamEndedWithin3s: true,
      deleteAnsweredWithin3s: true,
      status: 200,
    });
  }, 40_000);
});
