/**
 * Prometheus metrics (GATEWAY_METRICS_PORT): served on a listener of their own, counting a real agent's requests by
 * tenant, method and outcome (unknown methods as `other`), with their latency and this replica's gauges. Off by
 * default; never on the agents' port.
 */
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  kitchenSinkTenant,
  messageOf,
  postInitialize,
  postInSession,
  startDemoUpstreams,
  startTestGateway,
  type DemoUpstreams,
  type TestGateway,
} from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let gateway: TestGateway;
let plain: TestGateway;
let tenant: TestTenant;
let key: string;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  ({ tenant, key } = await kitchenSinkTenant(db, demo, 'metrics-agent'));
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl, env: { GATEWAY_METRICS_PORT: '0' } });
  plain = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await plain?.close();
  await demo?.stop();
  await db?.$disconnect();
});

const rpc = async (sessionId: string, message: Record<string, unknown>) => messageOf(await postInSession(gateway, tenant.slug, key, sessionId, message));

/** The value of one series in the exposition text (undefined: not there). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics', () => {
  it('counts a real agent\'s requests by tenant, method and outcome, with latency and gauges, on their own port', async () => {
    const metricsUrl = `http://127.0.0.1:${gateway.dataPlane.metricsPort}/metrics`;
    const init = await postInitialize(gateway, tenant.slug, key, 'metrics-spec');
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    await init.text();
    await rpc(sessionId, { method: 'notifications/initialized' });
    expect(await rpc(sessionId, { id: 2, method: 'tools/call', params: { name: 'ks__echo', arguments: { message: 'hi' } } })).toHaveProperty('result');
    expect(await rpc(sessionId, { id: 3, method: 'tools/call', params: { name: 'ks__echo', arguments: { message: 'again' } } })).toHaveProperty('result');
    // A tool of no upstream: refused by the gateway itself.
    expect(await rpc(sessionId, { id: 4, method: 'tools/call', params: { name: 'nowhere__tool', arguments: {} } })).toHaveProperty('error');
    expect(await rpc(sessionId, { id: 5, method: 'made/up', params: {} })).toHaveProperty('error');

    const response = await fetch(metricsUrl);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const text = await response.text();
    const slug = tenant.slug;
    expect(sample(text, `portcullis_gateway_requests_total{tenant="${slug}",method="initialize",outcome="ok"}`)).toBe(1);
    expect(sample(text, `portcullis_gateway_requests_total{tenant="${slug}",method="tools/call",outcome="ok"}`)).toBe(2);
    const failedCalls = text.split('\n').filter((line) => line.startsWith(`portcullis_gateway_requests_total{tenant="${slug}",method="tools/call",outcome="`) && !line.includes('outcome="ok"'));
    expect(failedCalls.map((line) => Number(line.split(' ').pop()))).toEqual([1]);
    // An agent's own method name never becomes a label.
    expect(text).not.toContain('made/up');
    expect(text.split('\n').some((line) => line.startsWith(`portcullis_gateway_requests_total{tenant="${slug}",method="other",`))).toBe(true);
    expect(sample(text, `portcullis_gateway_request_duration_seconds_count{tenant="${slug}",method="tools/call"}`)).toBe(3);
    expect(sample(text, `portcullis_gateway_request_duration_seconds_bucket{le="300",tenant="${slug}",method="tools/call"}`)).toBe(3);
    expect(sample(text, 'portcullis_gateway_sessions')).toBe(1);
    expect(sample(text, 'portcullis_gateway_inflight_requests')).toBe(0);
    expect(sample(text, 'portcullis_gateway_open_streams')).toBe(0);
    expect(sample(text, 'portcullis_gateway_process_resident_memory_bytes')).toBeGreaterThan(0);
    // The upstream the calls went to, by the tenant's slug and the upstream's name.
    expect(sample(text, `portcullis_gateway_upstream_circuit{tenant="${slug}",upstream="kitchen-sink",state="closed"}`)).toBe(1);
    expect(sample(text, `portcullis_gateway_upstream_circuit{tenant="${slug}",upstream="kitchen-sink",state="open"}`)).toBe(0);
    // No API key, session id or upstream URL in what a scraper sees.
    for (const secret of [key, sessionId, demo.url]) expect(text).not.toContain(secret);
  }, 30_000);

  it('serves only GET and HEAD of /metrics there, and nothing of it on the agents\' port or when not configured', async () => {
    const base = `http://127.0.0.1:${gateway.dataPlane.metricsPort}`;
    expect((await fetch(`${base}/metrics`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${base}/metrics`, { method: 'POST', body: '{}' })).status).toBe(405);
    expect((await fetch(`${base}/other`)).status).toBe(404);
    expect((await fetch(`${gateway.url}/metrics`)).status).toBe(404);
    expect(plain.dataPlane.metricsPort).toBeUndefined();
  });
});
