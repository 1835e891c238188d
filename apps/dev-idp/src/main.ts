import path from 'node:path';
import { ListenError, listenNaming, loadConfigOrExit } from '@portcullis/shared/util-config';
import { createLogger } from '@portcullis/shared/util-logger';
import { readIdentitiesFile, startDevIdp } from '@portcullis/dev-idp/provider';
import { devIdpEnvSchema } from './config';

const SHUTDOWN_GRACE_MS = 10_000;

async function main(): Promise<void> {
  // A development identity provider with a shared demo password must never serve real users.
  if (process.env['NODE_ENV'] === 'production') {
    process.stderr.write(
      'dev-idp: refusing to start with NODE_ENV=production. The dev IdP signs in demo users with a shared ' +
        'password and is for local development and tests only; configure a real OpenID provider instead.\n',
    );
    process.exit(1);
  }

  const config = loadConfigOrExit('dev-idp', devIdpEnvSchema);
  const logger = createLogger({ service: 'dev-idp', level: config.logLevel });
  if (config.cookieKeys.length === 0) {
    logger.info('DEV_IDP_COOKIE_SECRET is not set: using a random cookie key (IdP sessions end on restart)');
  }

  const identities = readIdentitiesFile(path.resolve(config.identitiesFile));
  const idp = await listenNaming('DEV_IDP_HOST/DEV_IDP_PORT', config.http.host, config.http.port, () =>
    startDevIdp({ host: config.http.host, port: config.http.port, issuer: config.issuer, clients: config.clients, identities, cookieKeys: config.cookieKeys, logger }),
  );

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      logger.warn('graceful shutdown timed out; exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    idp.close().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `dev-idp: failed to start: ${error instanceof ListenError ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
