import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { metricsListener, type MetricsListener } from '@portcullis/shared/nest-runtime';
import type { Logger } from '@portcullis/shared/util-logger';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

/** The methods counted as themselves; any other is `OTHER` (a client may send any token as a method). */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** Seconds: the API answers in milliseconds; test connections and exports take seconds. */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * Prometheus metrics of one control-plane process: every HTTP answer counted by method, route and status, with its
 * duration, and Node's process metrics. The route is the pattern a request matched (`/api/v1/tenants/:tenantId/...`),
 * never its URL: ids and tenant slugs stay out of the label values, and their number stays bounded. A request no route
 * matched (404, or refused before routing) is `unmatched`. Installed before the app is ready (a Fastify hook).
 */
export function installControlPlaneMetrics(app: NestFastifyApplication, logger: Logger): MetricsListener {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'portcullis_control_plane_' });
  const requests = new Counter({
    name: 'portcullis_control_plane_http_requests_total',
    help: 'HTTP answers of the control-plane API by method, matched route pattern and status code.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const durations = new Histogram({
    name: 'portcullis_control_plane_http_request_duration_seconds',
    help: 'Time from a request arriving to its answer being sent, by method and matched route pattern.',
    labelNames: ['method', 'route'] as const,
    buckets: BUCKETS,
    registers: [registry],
  });
  app
    .getHttpAdapter()
    .getInstance()
    .addHook('onResponse', (request, reply, done) => {
      const method = METHODS.has(request.method) ? request.method : 'OTHER';
      const route = request.routeOptions.url ?? 'unmatched';
      requests.inc({ method, route, status: String(reply.statusCode) });
      durations.observe({ method, route }, reply.elapsedTime / 1_000);
      done();
    });

  return metricsListener({ contentType: registry.contentType, collect: () => registry.metrics() }, logger, 'CONTROL_PLANE_METRICS_PORT');
}
