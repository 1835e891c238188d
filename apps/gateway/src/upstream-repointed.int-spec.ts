/**
 * An admin repoints a Streamable HTTP upstream (another URL) while agents' sessions are open. The upstream session id
 * the old server issued is that server's handle on the session: it must never be sent to the new URL, on a call or on
 * the DELETE that ends the agent's session. The new server gets a session of its own instead, and calls go on; the old
 * server's session is ended there (DELETE).
 */
import type { Server } from 'node:http';
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, initializeResult, messageOf, postInitialize, postInSession, startJsonUpstream, startTestGateway, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let redis: Redis;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;
let upstreamId: string;
const servers: Server[] = [];

/** What one server was sent: the method (or DELETE) and the session id it came with. */
type Seen = { readonly method: string; readonly sessionId: string | undefined };

/** A minimal Streamable HTTP MCP server issuing the session id `issued`, with one tool that names the server. */
async function recordingUpstream(name: string, issued: string): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const { server, url } = await startJsonUpstream({
    sessionId: issued,
    onHttp: (method, headers) => seen.push({ method, sessionId: headers['mcp-session-id'] as string | undefined }),
    onRequest: (request) => {
      const { method } = request.message;
      if (method !== 'initialize' && request.headers['mcp-session-id'] !== issued) {
        request.refuse(404, { code: -32001, message: 'Session not found' });
        return;
      }
      const result =
        method === 'initialize'
          ? initializeResult(request, name)
          : method === 'tools/list'
            ? { tools: [{ name: 'where', inputSchema: { type: 'object' } }] }
            : { content: [{ type: 'text', text: name }] };
      request.answer({ result });
    },
  });
  servers.push(server);
  return { url, seen };
}

const rpc = async (sessionId: string, message: Record<string, unknown>) => messageOf(await postInSession(gateway, tenant.slug, key, sessionId, message));

const callWhere = async (sessionId: string, id: number) =>
  (await rpc(sessionId, { id, method: 'tools/call', params: { name: 'up__where', arguments: {} } })) as { result?: { content: { text: string }[] } };

let oldServer: { url: string; seen: Seen[] };
let newServer: { url: string; seen: Seen[] };

beforeAll(async () => {
  oldServer = await recordingUpstream('old', 'session-issued-by-old');
  newServer = await recordingUpstream('new', 'session-issued-by-new');
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  redis = createRedisClient({ url: ctx.redisUrl, connectionName: 'upstream-repointed-spec' });
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  ({ key } = await createAgentWithKey(db, tenant.id, 'repointed-agent'));
  const row = await db.upstream.create({
    data: { tenantId: tenant.id, name: 'up', toolPrefix: 'up', transport: 'streamable_http', url: oldServer.url, connectTimeoutMs: 3_000, callTimeoutMs: 5_000 } as never,
  });
  upstreamId = (row as { id: string }).id;
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_SNAPSHOT_REFRESH_MS: '3600000', GATEWAY_CREDENTIALS_MAX_AGE_MS: '0' } });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  redis?.disconnect();
  await db?.$disconnect();
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

describe('an upstream repointed to another URL while sessions are open', () => {
  it('opens a new session at the new URL and never sends it the old server\'s session id, on calls or on DELETE', async () => {
    const init = await postInitialize(gateway, tenant.slug, key, 'repointed-spec');
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    await init.text();
    expect(sessionId).not.toBe('');
    await rpc(sessionId, { method: 'notifications/initialized' });
    expect((await callWhere(sessionId, 2)).result?.content[0]?.text).toBe('old');

    await db.upstream.update({ where: { id: upstreamId }, data: { url: newServer.url, version: { increment: 1 } } as never });
    await redis.publish(CHANGE_CHANNELS.upstreams, tenant.id);
    // The registry took the new URL once a call lands there.
    await waitFor(async () => (await callWhere(sessionId, 3)).result?.content[0]?.text === 'new', { timeoutMs: 10_000, description: 'calls reach the new URL' });
    expect((await callWhere(sessionId, 4)).result?.content[0]?.text).toBe('new');

    const ended = await fetch(`${gateway.url}/t/${tenant.slug}/mcp`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${key}`, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' },
    });
    expect(ended.status).toBeLessThan(300);
    await waitFor(() => newServer.seen.some((entry) => entry.method === 'DELETE'), { timeoutMs: 5_000, description: 'the new session ended' });

    // The new server was initialized afresh (no session id), and only ever saw its own session id after that.
    expect(newServer.seen[0]).toEqual({ method: 'initialize', sessionId: undefined });
    expect(newServer.seen.filter((entry) => entry.sessionId === 'session-issued-by-old')).toEqual([]);
    expect(newServer.seen.filter((entry) => entry.method === 'DELETE')).toEqual([{ method: 'DELETE', sessionId: 'session-issued-by-new' }]);
    expect(oldServer.seen.some((entry) => entry.sessionId === 'session-issued-by-old')).toBe(true);
    // The old server's session was ended there (with its own id), not left to its idle timeout.
    await waitFor(() => oldServer.seen.some((entry) => entry.method === 'DELETE'), { timeoutMs: 5_000, description: 'the old session ended' });
    expect(oldServer.seen.filter((entry) => entry.method === 'DELETE')).toEqual([{ method: 'DELETE', sessionId: 'session-issued-by-old' }]);
  }, 30_000);
});
