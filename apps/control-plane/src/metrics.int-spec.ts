/**
 * The control plane's Prometheus metrics, through the real app (in-process, real Postgres and Redis) with
 * CONTROL_PLANE_METRICS_PORT set: answers counted by method, route pattern and status, on a listener of their own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlaneHarness } from './testing/control-plane-harness';

let cp: ControlPlaneHarness;

beforeAll(async () => {
  cp = await startControlPlane({ CONTROL_PLANE_METRICS_PORT: '0' });
});
afterAll(async () => {
  await cp?.close();
});

async function scrape(): Promise<string> {
  const url = cp.metricsUrl;
  if (url === undefined) throw new Error('metrics are not listening');
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return res.text();
}

/** The value of one series (0 when absent). */
function value(text: string, series: string): number {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe('control-plane metrics', () => {
  it('counts answers by route pattern and status, never by the ids in the URL', async () => {
    const tenant = await cp.tenant();
    const tenantId = tenant.id;
    const admin = await cp.member(tenantId, 'admin');
    const before = await scrape();
    const upstreams = 'portcullis_control_plane_http_requests_total{method="GET",route="/api/v1/tenants/:tenantId/upstreams",status="200"}';
    const unauthorised = 'portcullis_control_plane_http_requests_total{method="GET",route="/api/v1/tenants/:tenantId/upstreams",status="401"}';
    const unmatched = 'portcullis_control_plane_http_requests_total{method="GET",route="unmatched",status="404"}';

    for (let i = 0; i < 3; i++) expect((await cp.request('GET', `/api/v1/tenants/${tenantId}/upstreams`, { token: admin.token })).status).toBe(200);
    expect((await cp.request('GET', `/api/v1/tenants/${tenantId}/upstreams`)).status).toBe(401);
    expect((await cp.request('GET', `/api/v1/no-such-route/${tenantId}`)).status).toBe(404);

    const after = await scrape();
    expect(value(after, upstreams) - value(before, upstreams)).toBe(3);
    expect(value(after, unauthorised) - value(before, unauthorised)).toBe(1);
    expect(value(after, unmatched) - value(before, unmatched)).toBe(1);
    const durations = 'portcullis_control_plane_http_request_duration_seconds_count{method="GET",route="/api/v1/tenants/:tenantId/upstreams"}';
    expect(value(after, durations) - value(before, durations)).toBe(4);
    // Neither the tenant's id nor the unknown path is a label value; process metrics are there too.
    expect(after).not.toContain(tenantId);
    expect(after).not.toContain('no-such-route');
    expect(after).toContain('portcullis_control_plane_process_cpu_seconds_total');
  });

  it('serves nothing else on the metrics listener, and nothing of the metrics on the API port', async () => {
    const base = (cp.metricsUrl ?? '').replace(/\/metrics$/, '');
    expect((await fetch(`${base}/api/v1/tenants`)).status).toBe(404);
    expect((await cp.request('GET', '/metrics')).status).toBe(404);
  });
});
