import { ListenError, listenNaming, loadConfigOrExit } from '@portcullis/shared/util-config';
import { createLogger } from '@portcullis/shared/util-logger';
import { startDemoHttpHost } from '@portcullis/demo/mcp-servers';
import { demoUpstreamsConfigSchema } from './config';

async function main(): Promise<void> {
  const config = loadConfigOrExit('demo-upstreams', demoUpstreamsConfigSchema);
  const logger = createLogger({ service: 'demo-upstreams', level: config.log.level });
  const host = await listenNaming('DEMO_UPSTREAMS_HOST/DEMO_UPSTREAMS_PORT', config.http.host, config.http.port, () =>
    startDemoHttpHost({
      host: config.http.host,
      port: config.http.port,
      defaultServer: 'tickets',
      mountedServers: config.http.mountedServers,
      sessionIdleTimeoutMs: config.http.sessionIdleTimeoutMs,
      logger,
    }),
  );
  logger.info(
    {
      url: host.url,
      port: host.port,
      servers: ['/mcp', ...config.http.mountedServers.map((name) => `/${name}/mcp`)],
    },
    'demo upstreams listening',
  );

  const shutdown = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'shutting down');
    host.close(config.http.shutdownGraceMs).then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `demo-upstreams: failed to start: ${error instanceof ListenError ? error.message : error instanceof Error ? error.stack : String(error)}\n`,
  );
  process.exit(1);
});
