import { describe, expect, it } from 'vitest';
import { createLogger } from '@portcullis/shared/util-logger';
import { createGatewayMetrics, type MetricsSources } from './metrics';

/** A request of `tenantId` with `method` that ended as `outcome` after `latencyMs`, as the completed hook sees it. */
const request = (tenantId: string, method: string, outcome: 'ok' | 'denied', latencyMs: number) =>
  [{ record: { tenantId }, method } as never, { outcome, latencyMs } as never] as const;

type Circuit = ReturnType<MetricsSources['circuits']>[number];

function metricsWith(slugs: Map<string, string>, circuits: Circuit[] = []) {
  const sources: MetricsSources = {
    tenantSlug: (tenantId) => slugs.get(tenantId),
    liveSessions: () => 3,
    inflight: () => 1,
    openStreams: () => 2,
    circuits: () => circuits,
    audit: () => undefined,
  };
  return createGatewayMetrics(sources, createLogger({ service: 'spec', level: 'silent' }));
}

const line = (text: string, series: string) => text.split('\n').find((candidate) => candidate.startsWith(`${series} `));

describe('gateway metrics', () => {
  it('counts requests by tenant slug, method and outcome, with cumulative latency buckets', async () => {
    const metrics = metricsWith(new Map([['t-1', 'acme']]));
    const completed = metrics.hooks.completed?.bind(metrics.hooks);
    completed?.(...request('t-1', 'tools/call', 'ok', 0.2));
    completed?.(...request('t-1', 'tools/call', 'ok', 3));
    completed?.(...request('t-1', 'tools/call', 'denied', 400_000));
    completed?.(...request('t-1', 'agents/own-method', 'ok', 1));
    const text = await metrics.registry.metrics();
    expect(line(text, 'portcullis_gateway_requests_total{tenant="acme",method="tools/call",outcome="ok"}')).toMatch(/ 2$/);
    expect(line(text, 'portcullis_gateway_requests_total{tenant="acme",method="tools/call",outcome="denied"}')).toMatch(/ 1$/);
    expect(line(text, 'portcullis_gateway_requests_total{tenant="acme",method="other",outcome="ok"}')).toMatch(/ 1$/);
    expect(text).not.toContain('agents/own-method');
    // Outcomes that never happened have no series.
    expect(text).not.toContain('outcome="cancelled"');
    const bucket = (le: string) => line(text, `portcullis_gateway_request_duration_seconds_bucket{le="${le}",tenant="acme",method="tools/call"}`);
    expect(bucket('0.0005')).toMatch(/ 1$/);
    expect(bucket('0.0025')).toMatch(/ 1$/);
    expect(bucket('0.005')).toMatch(/ 2$/);
    expect(bucket('300')).toMatch(/ 2$/);
    expect(bucket('+Inf')).toMatch(/ 3$/);
    expect(line(text, 'portcullis_gateway_request_duration_seconds_count{tenant="acme",method="tools/call"}')).toMatch(/ 3$/);
    expect(Number(line(text, 'portcullis_gateway_request_duration_seconds_sum{tenant="acme",method="tools/call"}')?.split(' ')[1])).toBeCloseTo(400.0032, 6);
    expect(line(text, 'portcullis_gateway_sessions')).toBe('portcullis_gateway_sessions 3');
    expect(line(text, 'portcullis_gateway_open_streams')).toBe('portcullis_gateway_open_streams 2');
    // Auditing off: no audit series, rather than zeros that look like a healthy emitter.
    expect(text).not.toMatch(/^portcullis_gateway_audit_\w+ /m);
  });

  it('drops the series of a tenant no longer known, and names a renamed tenant by its new slug', async () => {
    const slugs = new Map([
      ['t-1', 'acme'],
      ['t-2', 'globex'],
    ]);
    const metrics = metricsWith(slugs);
    const completed = metrics.hooks.completed?.bind(metrics.hooks);
    completed?.(...request('t-1', 'ping', 'ok', 1));
    completed?.(...request('t-2', 'ping', 'ok', 1));
    slugs.delete('t-1');
    slugs.set('t-2', 'globex-eu');
    const text = await metrics.registry.metrics();
    expect(text).not.toContain('tenant="acme"');
    expect(text).not.toContain('t-1');
    expect(line(text, 'portcullis_gateway_requests_total{tenant="globex-eu",method="ping",outcome="ok"}')).toMatch(/ 1$/);
    // Gone for good: a tenant known again later starts from zero.
    slugs.set('t-1', 'acme');
    expect(await metrics.registry.metrics()).not.toContain('tenant="acme"');
  });

  it('shows each upstream\'s circuit as 1 for its state and 0 for the others, and only upstreams still reported', async () => {
    const circuits: Circuit[] = [
      { tenant: 'acme', upstream: 'github', state: 'open' },
      { tenant: 'acme', upstream: 'jira', state: 'closed' },
    ];
    const metrics = metricsWith(new Map([['t-1', 'acme']]), circuits);
    let text = await metrics.registry.metrics();
    const circuit = (upstream: string, state: string) => line(text, `portcullis_gateway_upstream_circuit{tenant="acme",upstream="${upstream}",state="${state}"}`);
    expect(circuit('github', 'open')).toMatch(/ 1$/);
    expect(circuit('github', 'closed')).toMatch(/ 0$/);
    expect(circuit('github', 'half_open')).toMatch(/ 0$/);
    expect(circuit('jira', 'closed')).toMatch(/ 1$/);
    // github is deleted, jira's circuit half-opens: github's series end at the next scrape.
    circuits.splice(0, 2, { tenant: 'acme', upstream: 'jira', state: 'half_open' });
    text = await metrics.registry.metrics();
    expect(text).not.toContain('upstream="github"');
    expect(circuit('jira', 'half_open')).toMatch(/ 1$/);
    expect(circuit('jira', 'closed')).toMatch(/ 0$/);
  });

  it('says which variable to change when the metrics port is taken, and keeps serving on the one that works', async () => {
    const first = metricsWith(new Map());
    const second = metricsWith(new Map());
    const port = await first.listen('127.0.0.1', 0);
    try {
      await expect(second.listen('127.0.0.1', port)).rejects.toThrow(`GATEWAY_METRICS_PORT: cannot listen on 127.0.0.1:${port} (EADDRINUSE)`);
      expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
    } finally {
      await first.close();
      await second.close();
    }
  });
});
