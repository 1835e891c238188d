/**
 * Session idle expiry: when an agent's session record expires in Redis (idle timeout), the gateway closes
 * the upstream sessions it opened — a DELETE with the upstream's session id to Streamable HTTP upstreams,
 * the stdio session released — and the expired session answers 404. The Streamable HTTP upstream is an
 * SDK server started here, so the test sees the DELETE arrive. Needs `npx nx build demo-upstreams` (stdio).
 */
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, demoDist, messageOf, postInSession, startTestGateway, type TestGateway } from './testing/gateway-harness';
import { startRecordingUpstream, type RecordingUpstream } from './testing/recording-upstream';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;
let upstream: RecordingUpstream;

function text(result: unknown): string {
  const content = (result as { content?: { text?: string }[] }).content ?? [];
  return content.map((item) => item.text ?? '').join('');
}

/** An SDK client on a session of its own, and the upstream session that session opened on the recorder. */
async function connectedClient(name: string) {
  const client = new Client({ name, version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
  });
  const openedBefore = upstream.opened.length;
  await client.connect(transport);
  const mine = upstream.opened.slice(openedBefore);
  expect(mine).toHaveLength(1);
  return { client, transport, upstreamSession: mine[0] ?? '' };
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  upstream = await startRecordingUpstream();
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  const common = { tenantId: tenant.id, connectTimeoutMs: 10_000, callTimeoutMs: 10_000 };
  await db.upstream.create({
    data: {
      ...common,
      name: 'recorder',
      toolPrefix: 'rec',
      transport: 'streamable_http',
      url: upstream.url,
    } as never,
  });
  await db.upstream.create({
    data: {
      ...common,
      name: 'math',
      toolPrefix: 'math',
      transport: 'stdio',
      command: process.execPath,
      args: [path.join(demoDist, 'stdio.js'), 'math'],
    } as never,
  });
  ({ key } = await createAgentWithKey(db, tenant.id, 'expiry-agent'));
  gateway = await startTestGateway({
    systemDb: db,
    redisUrl: ctx.redisUrl,
    env: { GATEWAY_SESSION_IDLE_MS: '3000', GATEWAY_METRICS_PORT: '0' },
  });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await new Promise<void>((resolve) => upstream?.server.close(() => resolve()));
  upstream?.server.closeAllConnections();
  await db?.$disconnect();
});

describe('session idle expiry', () => {
  it('closes the upstream sessions of a session whose record expired, and the session answers 404', async () => {
    const client = new Client({ name: 'expiry-spec', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${key}` } },
    });
    await client.connect(transport);
    const sessionId = transport.sessionId ?? '';
    // A session in use stays alive past the idle timeout: 8 rounds 500 ms apart outlast the 3 s, while each gap
    // leaves the record ample time before it would expire.
    for (let i = 0; i < 8; i++) {
      expect(text(await client.callTool({ name: 'rec__echo', arguments: { message: `m${i}` } }))).toBe(
        `m${i}`,
      );
      expect(text(await client.callTool({ name: 'math__add', arguments: { a: i, b: 1 } }))).toContain(
        String(i + 1),
      );
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(upstream.opened).toHaveLength(1);
    expect(upstream.closed).toEqual([]);

    // Then idle: the agent stops listening too (its GET stream closed, no DELETE), the record expires and the gateway
    // DELETEs the upstream session.
    await transport.close();
    await waitFor(() => upstream.closed.length === 1, {
      timeoutMs: 12_000,
      description: 'the upstream DELETE',
    });
    expect(upstream.closed).toEqual(upstream.opened);
    await waitFor(() => gateway.logs().includes('session expired: its upstream sessions were closed'), {
      description: 'the expiry log line',
    });
    const line = gateway
      .logs()
      .split('\n')
      .find((entry) => entry.includes('session expired'));
    expect(JSON.parse(line ?? '{}')).toMatchObject({ upstreams: 2, failed: 0 });
    expect(line).not.toContain(sessionId);

    const res = await postInSession(gateway, tenant.slug, key, sessionId, { id: 1, method: 'ping' });
    expect(res.status).toBe(404);
    expect((await res.json()).error.code).toBe(-32004);
  });

  it('keeps a session alive while its agent listens on the standalone stream, and lets it expire once it stops', async () => {
    const { client, transport, upstreamSession } = await connectedClient('expiry-spec-listener');
    // Three times the 3 s idle timeout with no request at all: only the GET stream the SDK client opens after
    // initialize (and holds) keeps the session in use.
    await new Promise((resolve) => setTimeout(resolve, 9_000));
    expect(upstream.closed).not.toContain(upstreamSession);
    expect(text(await client.callTool({ name: 'rec__echo', arguments: { message: 'still here' } }))).toBe('still here');

    await transport.close();
    await waitFor(() => upstream.closed.includes(upstreamSession), { timeoutMs: 12_000, description: 'the upstream DELETE after the agent left' });
  }, 40_000);

  it('keeps a session alive while a call runs longer than the idle timeout', async () => {
    const { client, upstreamSession } = await connectedClient('expiry-spec-long-call');
    // Twice the 3 s idle timeout with no other request of the session: only the call in flight keeps it in use.
    const result = await client.callTool({ name: 'rec__slow', arguments: { ms: 6_000 } }, undefined, { timeout: 20_000 });
    expect(result.isError ?? false).toBe(false);
    expect(text(result)).toBe('slept 6000');
    expect(upstream.closed).not.toContain(upstreamSession);
    await client.close();
  }, 30_000);

  it('keeps a legacy HTTP+SSE session alive while its agent keeps sending messages', async () => {
    const headers = { authorization: `Bearer ${key}` };
    const client = new Client({ name: 'expiry-spec-legacy', version: '1.0.0' });
    const transport = new SSEClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/sse`), {
      requestInit: { headers },
      eventSourceInit: {
        fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...headers } }),
      },
    });
    let closed = false;
    transport.onclose = () => {
      closed = true;
    };
    const openedBefore = upstream.opened.length;
    await client.connect(transport);
    const mine = upstream.opened.slice(openedBefore);
    expect(mine).toHaveLength(1);
    // 16 calls 500 ms apart: 8 s of use, well past the 3 s idle timeout counted from initialize (and the sweep after it).
    for (let i = 0; i < 16; i++) {
      expect(text(await client.callTool({ name: 'rec__echo', arguments: { message: `legacy ${i}` } }))).toBe(`legacy ${i}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(closed).toBe(false);
    expect(upstream.closed).not.toContain(mine[0]);
    await client.close();
  }, 30_000);
});

describe('a session the agent ends', () => {
  it('ends its calls under way as cancelled by the agent, not as a failure of the upstream it closes', async () => {
    const { transport, upstreamSession } = await connectedClient('ended-with-a-call');
    const sessionId = transport.sessionId ?? '';
    const call = postInSession(gateway, tenant.slug, key, sessionId, { id: 7, method: 'tools/call', params: { name: 'rec__slow', arguments: { ms: 3_000 } } }).then(messageOf);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const ended = await fetch(`${gateway.url}/t/${tenant.slug}/mcp`, { method: 'DELETE', headers: { authorization: `Bearer ${key}`, 'mcp-session-id': sessionId } });
    expect(ended.status).toBe(200);
    const answer = (await call) as { error?: { code: number; message: string } };
    expect(answer.error?.code).not.toBe(-32050);
    await waitFor(() => upstream.closed.includes(upstreamSession), { description: 'the upstream session closed' });
    const metrics = await (await fetch(`http://127.0.0.1:${gateway.dataPlane.metricsPort}/metrics`)).text();
    const count = (outcome: string): number => {
      const series = `portcullis_gateway_requests_total{tenant="${tenant.slug}",method="tools/call",outcome="${outcome}"} `;
      const line = metrics.split('\n').find((candidate) => candidate.startsWith(series));
      return line === undefined ? 0 : Number(line.slice(series.length));
    };
    // Counted (and audited) as the agent's cancellation: the upstream, healthy, is not blamed.
    expect({ cancelled: count('cancelled'), upstreamError: count('upstream_error') }).toEqual({ cancelled: 1, upstreamError: 0 });
  }, 30_000);
});
