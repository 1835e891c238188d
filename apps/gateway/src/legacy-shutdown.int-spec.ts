/**
 * A replica shut down gracefully ends the legacy HTTP+SSE sessions it holds (they live as long as their streams), and
 * with them their Streamable HTTP upstream sessions: DELETE reaches each upstream while the connector is still up.
 * Before, the session record went and the upstream session stayed open on its server, out of every replica's reach.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, startTestGateway, type TestGateway } from './testing/gateway-harness';
import { startRecordingUpstream, type RecordingUpstream } from './testing/recording-upstream';

const ctx = testContext();
let db: SystemPrismaClient;
let gateway: TestGateway | undefined;
let upstream: RecordingUpstream;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  upstream = await startRecordingUpstream();
});

afterAll(async () => {
  await gateway?.app.close();
  upstream?.server.closeAllConnections();
  await new Promise((resolve) => upstream?.server.close(resolve));
  await db?.$disconnect();
});

describe('graceful shutdown with legacy SSE sessions open', () => {
  it('ends their upstream sessions (DELETE) before the connector goes down', async () => {
    const tenant = await createTestTenant(db);
    await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
    await db.upstream.create({
      data: { tenantId: tenant.id, name: 'recording', toolPrefix: 'rec', transport: 'streamable_http', url: upstream.url, connectTimeoutMs: 5_000, callTimeoutMs: 5_000 } as never,
    });
    const { key } = await createAgentWithKey(db, tenant.id, 'legacy-shutdown-agent');
    gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
    const headers = { authorization: `Bearer ${key}` };
    const client = new Client({ name: 'legacy', version: '1' });
    const transport = new SSEClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/sse`), {
      requestInit: { headers },
      eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...headers } }) },
    });
    await client.connect(transport);
    expect(await client.callTool({ name: 'rec__echo', arguments: { message: 'x' } })).toMatchObject({ content: [{ text: 'x' }] });
    expect(upstream.opened).toHaveLength(1);

    await gateway.dataPlane.close(0);
    await waitFor(() => upstream.closed.length === upstream.opened.length, { timeoutMs: 3_000, description: 'the upstream session was ended' });
    expect(upstream.closed).toEqual(upstream.opened);
    await client.close().catch(() => undefined);
  }, 30_000);
});
