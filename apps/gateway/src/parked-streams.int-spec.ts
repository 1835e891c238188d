/**
 * A standalone stream whose agent's connection dropped stays parked for 60 s, logging what comes for the agent, so a
 * reconnect with its last event id gets it (ADR 0007, "Messages sent while the agent reconnects"), also what reaches
 * it over the replica bus (the upstream's notification stream held by another replica): no other replica has a stream
 * for the agent yet. Before, the parked stream dropped those, and the agent that came back never got them.
 */
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kitchenSinkTenant, startDemoUpstreams, startTestGateway, type DemoUpstreams, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let gatewayA: TestGateway;
let gatewayB: TestGateway;
let tenant: TestTenant;
let key: string;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  ({ tenant, key } = await kitchenSinkTenant(db, demo, 'parked-agent'));
  gatewayA = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
  gatewayB = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gatewayA?.close();
  await gatewayB?.close();
  await demo?.stop();
  await db?.$disconnect();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const headers = (sessionId: string, extra: Record<string, string> = {}) => ({
  authorization: `Bearer ${key}`,
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
  'mcp-session-id': sessionId,
  'mcp-protocol-version': '2025-11-25',
  ...extra,
});

/** Reads an SSE response as it comes: `text()` so far, `stop()` to drop the connection (the agent's network going). */
function reading(res: Response): { text: () => string; stop: () => void } {
  let out = '';
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  void (async () => {
    try {
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) out += decoder.decode(chunk.value, { stream: true });
    } catch {
      // dropped
    }
  })();
  return { text: () => out, stop: () => void reader.cancel().catch(() => undefined) };
}

async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    await sleep(50);
  }
  return check();
}

const addTool = (url: string, sessionId: string, id: number) =>
  fetch(`${url}/t/${tenant.slug}/mcp`, {
    method: 'POST',
    headers: headers(sessionId),
    body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'ks__add_tool', arguments: {} } }),
  }).then((res) => res.text());

const listChanges = (sse: string) => (sse.match(/notifications\/tools\/list_changed/g) ?? []).length;
const lastId = (sse: string) => [...sse.matchAll(/^id: (.+)$/gm)].map((m) => m[1] ?? '').at(-1) ?? '';

describe('a parked standalone stream', () => {
  it('keeps what reaches it over the bus while the agent is away, for the agent\'s return', async () => {
    // The session begins on B, which opens the upstream session and takes its notification stream.
    const init = await fetch(`${gatewayB.url}/t/${tenant.slug}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
    });
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    await fetch(`${gatewayB.url}/t/${tenant.slug}/mcp`, { method: 'POST', headers: headers(sessionId), body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
    await sleep(1_000);

    // The agent listens on A: the upstream's list changes reach it from B over the bus.
    const stream = await fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, { headers: headers(sessionId, { accept: 'text/event-stream' }) });
    expect(stream.status).toBe(200);
    const first = reading(stream);
    await sleep(1_000);
    await addTool(gatewayB.url, sessionId, 2);
    expect(await waitFor(() => listChanges(first.text()) >= 1, 5_000)).toBe(true);
    const seen = lastId(first.text());

    // The agent's connection drops: A parks the stream. The upstream's tools change meanwhile.
    first.stop();
    await sleep(300);
    await addTool(gatewayB.url, sessionId, 3);
    await sleep(1_500);

    // The agent comes back to A with its last id: what it missed comes first.
    const resumed = await fetch(`${gatewayA.url}/t/${tenant.slug}/mcp`, { headers: headers(sessionId, { accept: 'text/event-stream', 'last-event-id': seen }) });
    expect(resumed.status).toBe(200);
    const back = reading(resumed);
    await waitFor(() => listChanges(back.text()) >= 1, 4_000);
    back.stop();
    expect(listChanges(back.text())).toBe(1);
  }, 40_000);
});
