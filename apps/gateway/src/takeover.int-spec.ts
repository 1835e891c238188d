/**
 * An agent's standalone stream moving from replica A to replica B (a reconnect through the load balancer) must not
 * lose what the upstream says meanwhile. Before 76dbc76, A kept its upstream GET and passed the upstream's messages to
 * B over the bus; now A drops its GET at once and B's own GET, asked for while A's was still open, is refused (409)
 * and only asked again after the backoff (500 ms, then more), without A's Last-Event-ID: a change in between is lost.
 */
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentWithKey, messageOf, postInitialize, postInSession, startTestGateway, type TestGateway } from './testing/gateway-harness';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { startRecordingUpstream, type RecordingUpstream } from './testing/recording-upstream';

const ctx = testContext();
let db: SystemPrismaClient;
let upstream: RecordingUpstream;
let gatewayA: TestGateway;
let gatewayB: TestGateway;
let tenant: TestTenant;
let key: string;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function sessionOn(gateway: TestGateway): Promise<string> {
  const init = await postInitialize(gateway, tenant.slug, key, 'takeover-spec');
  await init.text();
  const id = init.headers.get('mcp-session-id') ?? '';
  await (await postInSession(gateway, tenant.slug, key, id, { method: 'notifications/initialized' })).text();
  return id;
}

async function call(gateway: TestGateway, sessionId: string, name: string, args: Record<string, unknown>): Promise<Record<string, unknown>> {
  return messageOf(await postInSession(gateway, tenant.slug, key, sessionId, { id: 2, method: 'tools/call', params: { name, arguments: args } }));
}

/** The session's standalone stream on `gateway`: what it carried so far. */
async function listenOn(gateway: TestGateway, sessionId: string, lastEventId?: string): Promise<{ text: () => string; close: () => void }> {
  const controller = new AbortController();
  const stream = await fetch(`${gateway.url}/t/${tenant.slug}/mcp`, {
    headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25', ...(lastEventId ? { 'last-event-id': lastEventId } : {}) },
    signal: controller.signal,
  });
  expect(stream.status).toBe(200);
  let text = '';
  void (async () => {
    const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        text += decoder.decode(value, { stream: true });
      }
    } catch {
      // aborted
    }
  })();
  return { text: () => text, close: () => controller.abort() };
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  upstream = await startRecordingUpstream();
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({
    data: { tenantId: tenant.id, name: 'recorder', toolPrefix: 'rec', transport: 'streamable_http', url: upstream.url, connectTimeoutMs: 5_000, callTimeoutMs: 10_000 } as never,
  });
  key = (await createAgentWithKey(db, tenant.id, 'takeover-agent')).key;
  const env = {}; // the default first-listen window (30 s)
  gatewayA = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env });
  gatewayB = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env });
}, 60_000);

afterAll(async () => {
  await gatewayA?.close();
  await gatewayB?.close();
  await new Promise((resolve) => upstream?.server.close(resolve));
  upstream?.server.closeAllConnections();
  await db?.$disconnect();
});

describe('agent stream moving to another replica', () => {
  it('still tells the agent of an upstream change made just after the move', async () => {
    const id = await sessionOn(gatewayA);
    expect(await call(gatewayB, id, 'rec__echo', { message: 'b' })).toMatchObject({ result: {} }); // B holds an upstream session too
    const onA = await listenOn(gatewayA, id);
    await waitFor(() => upstream.getStreams.open === 1, { timeoutMs: 5_000, description: 'A holds the upstream GET' });

    const onB = await listenOn(gatewayB, id); // the agent reconnects through the load balancer, to B
    await sleep(150);
    expect(await call(gatewayB, id, 'rec__grow', {})).toMatchObject({ result: { content: [{ text: 'grown 1' }] } });
    await sleep(3_000);
    const got = onB.text().includes('notifications/tools/list_changed') || onA.text().includes('notifications/tools/list_changed');
    onA.close();
    onB.close();
    expect({ got, upstreamGets: { ...upstream.getStreams } }).toMatchObject({ got: true });
  }, 30_000);

  it('tells an agent that initialized on one replica and listens on the other of a change during its first call', async () => {
    const id = await sessionOn(gatewayB); // B's new upstream session holds the GET for its first 30 s
    const onA = await listenOn(gatewayA, id); // the agent opens its stream right after initialize, on A
    await sleep(150);
    expect(await call(gatewayA, id, 'rec__grow', {})).toMatchObject({ result: { content: [{ text: 'grown 1' }] } });
    await sleep(3_000);
    const got = onA.text().includes('notifications/tools/list_changed');
    onA.close();
    expect({ got }).toEqual({ got: true });
  }, 30_000);
});
