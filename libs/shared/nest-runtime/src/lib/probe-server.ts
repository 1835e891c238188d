import { createServer, type Server } from 'node:http';
import type { Logger } from '@portcullis/shared/util-logger';
import { runReadinessChecks, type ReadinessCheck } from './readiness';

/**
 * A tiny HTTP server with only `/healthz`, `/readyz` and, when given, `/metrics`, for processes that serve no other
 * HTTP (the audit worker) and for a listener of metrics apart from the public one (the gateway). Anything else is 404.
 * A client slow to ask, or that stops reading the answer, is cut off after 10 s.
 */
export function startProbeServer(options: {
  host: string;
  port: number;
  checks: readonly ReadinessCheck[];
  logger: Logger;
  isShuttingDown?: () => boolean;
  /** Served as `GET /metrics` (Prometheus text), when given. */
  metrics?: { readonly contentType: string; collect(): Promise<string> };
}): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, { status: 'method not allowed' });
    if (path === '/healthz') return send(200, { status: 'ok' });
    const metrics = options.metrics;
    if (path === '/metrics' && metrics) {
      void metrics.collect().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' });
          res.end(req.method === 'HEAD' ? undefined : text);
        },
        (error: unknown) => {
          options.logger.warn({ err: error }, 'metrics could not be collected');
          send(503, { status: 'unavailable' });
        },
      );
      return;
    }
    if (path === '/readyz') {
      if (options.isShuttingDown?.()) return send(503, { status: 'unavailable', checks: {} });
      void runReadinessChecks(options.checks, {
        timeoutMs: 2_000,
        onFailure: (name, error) => options.logger.warn({ check: name, err: error }, 'readiness check failed'),
      }).then((report) => send(report.status === 'ok' ? 200 : 503, report));
      return;
    }
    return send(404, { status: 'not found' });
  });
  server.keepAliveTimeout = 5_000;
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.timeout = 10_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** Metrics served on a listener of their own (`metricsListener`). */
export interface MetricsListener {
  /** Serves `GET /metrics` on `host:port` (0: any free port); resolves with the port it listens on. */
  listen(host: string, port: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * `metrics` served as `GET /metrics` by a probe server of their own, never on an app's public port. A port that cannot
 * be taken fails naming `setting` (the environment variable that chose it), not a stack of Node's.
 */
export function metricsListener(metrics: { readonly contentType: string; collect(): Promise<string> }, logger: Logger, setting: string): MetricsListener {
  let server: Server | undefined;
  return {
    async listen(host, port) {
      try {
        server = await startProbeServer({ host, port, checks: [], logger, metrics });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? 'error';
        throw new Error(`${setting}: cannot listen on ${host}:${port} (${code})`, { cause: error });
      }
      const address = server.address();
      return typeof address === 'object' && address !== null ? address.port : port;
    },
    async close() {
      const listening = server;
      server = undefined;
      if (!listening) return;
      listening.closeAllConnections();
      await new Promise<void>((resolve) => listening.close(() => resolve()));
    },
  };
}
