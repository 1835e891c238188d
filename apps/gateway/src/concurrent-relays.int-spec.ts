/**
 * An upstream's elicitation made during one of two concurrent calls of a session lives as long as the call that made
 * it needs. Over a multiplexed connection (stdio, legacy SSE), which cannot say which call asked, the gateway tied it
 * to the session's oldest call in flight, and called it off when that other call ended: now it ends with none of them
 * (the upstream's cancellation or the relay timeout end it). When it is given up then, the agent is told, although
 * the stream that carried it (the other call's) is over.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import { createAgentWithKey, demoUpstreamTarget, startDemoUpstreams, startTestGateway, type DemoTransport, type DemoUpstreams, type TestGateway } from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let gateway: TestGateway;
const tenants = new Map<DemoTransport, { tenant: TestTenant; key: string }>();
/** The same upstreams with a 2 s call timeout (the bound of a relay made during a call). */
const quickTenants = new Map<DemoTransport, { tenant: TestTenant; key: string }>();

function text(result: unknown): string {
  const content = (result as { content?: { text?: string }[] }).content ?? [];
  return content.map((item) => item.text ?? '').join('');
}

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  for (const transport of ['streamable_http', 'stdio', 'sse'] as const) {
    for (const [map, callTimeoutMs] of [[tenants, 15_000], [quickTenants, 2_000]] as const) {
      const tenant = await createTestTenant(db);
      await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
      await db.upstream.create({
        data: { tenantId: tenant.id, name: 'kitchen-sink', toolPrefix: 'ks', connectTimeoutMs: 10_000, callTimeoutMs, ...demoUpstreamTarget(demo, 'kitchen-sink', transport) } as never,
      });
      const { key } = await createAgentWithKey(db, tenant.id, 'relay-agent');
      map.set(transport, { tenant, key });
    }
  }
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await demo?.stop();
  await db?.$disconnect();
});

describe.each(['streamable_http', 'stdio', 'sse'] as const)('upstream over %s', (upstream) => {
  it('keeps an elicitation of the second of two concurrent calls alive when the first call ends', async () => {
    const entry = tenants.get(upstream);
    if (!entry) throw new Error('no tenant');
    const client = new Client({ name: 'relay-agent', version: '1.0.0' }, { capabilities: { elicitation: {} } });
    let cancelledAtAgent = false;
    // The person takes 1.5 s to answer.
    client.setRequestHandler(ElicitRequestSchema, (_request, extra) => {
      extra.signal.addEventListener('abort', () => (cancelledAtAgent = true));
      return new Promise((resolve) => setTimeout(() => resolve({ action: 'accept', content: { confirm: true } }), 1_500));
    });
    const headers = { authorization: `Bearer ${entry.key}` };
    await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${entry.tenant.slug}/mcp`), { requestInit: { headers } }));

    // Call 1: a short count (about 0.5 s), under way first.
    const first = client.callTool({ name: 'ks__slow_count', arguments: { steps: 5, interval_ms: 100 } });
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Call 2: asks the user (elicitation/create) while call 1 still runs.
    const second = client.callTool({ name: 'ks__confirm_action', arguments: { action: 'deploy' } });

    expect(text(await first)).toBe('Counted to 5.');
    const answered = await second;
    expect({ answer: text(answered), cancelledAtAgent }).toEqual({ answer: 'The user confirmed: deploy', cancelledAtAgent: false });
    await client.close();
  }, 20_000);

  it('tells the agent an elicitation is cancelled when it is given up after the call whose stream carried it ended (found by review)', async () => {
    const entry = quickTenants.get(upstream);
    if (!entry) throw new Error('no tenant');
    const client = new Client({ name: 'relay-agent', version: '1.0.0' }, { capabilities: { elicitation: {} } });
    let asked = false;
    let cancelledAtAgent = false;
    // The person never answers.
    client.setRequestHandler(ElicitRequestSchema, (_request, extra) => {
      asked = true;
      return new Promise((_resolve, reject) =>
        extra.signal.addEventListener('abort', () => {
          cancelledAtAgent = true;
          reject(new Error('cancelled'));
        }),
      );
    });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${entry.tenant.slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${entry.key}` } } }));

    // Call 1: a short count (about 0.3 s), under way first; call 2 asks the person meanwhile, and times out after 2 s.
    const first = client.callTool({ name: 'ks__slow_count', arguments: { steps: 3, interval_ms: 100 } });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const second = client.callTool({ name: 'ks__confirm_action', arguments: { action: 'deploy' } }, undefined, { timeout: 10_000 }).catch((error: Error) => error);
    expect(text(await first)).toBe('Counted to 3.');
    await second;
    await waitFor(() => cancelledAtAgent, { timeoutMs: 8_000, description: 'the agent told its elicitation was given up' });
    expect(asked).toBe(true);
    await client.close();
  }, 25_000);
});
