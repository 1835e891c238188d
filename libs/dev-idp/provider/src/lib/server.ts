import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type Provider from 'oidc-provider';
import type { Logger } from '@portcullis/shared/util-logger';
import type { DevIdpClient } from './clients';
import { type DevIdpIdentities, UserDirectory } from './identities';
import { createInteractionRouter } from './interactions';
import { createProvider } from './provider';

export interface DevIdpOptions {
  /** Port to listen on; 0 picks a free one. */
  readonly port: number;
  readonly host: string;
  /** Public issuer URL; defaults to http://localhost:<bound port>. */
  readonly issuer?: string;
  readonly clients: readonly DevIdpClient[];
  readonly identities: DevIdpIdentities;
  readonly cookieKeys?: readonly string[];
  readonly logger: Logger;
}

export interface RunningDevIdp {
  readonly issuer: string;
  readonly port: number;
  readonly provider: Provider;
  /** Stops accepting connections, lets in-flight requests finish, then resolves. */
  close(): Promise<void>;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/** Starts the dev IdP's HTTP server: OIDC endpoints, interaction pages, /healthz and /readyz. */
export async function startDevIdp(options: DevIdpOptions): Promise<RunningDevIdp> {
  const { logger } = options;
  const directory = new UserDirectory(options.identities);
  let provider: Provider | undefined;
  // Filled in once the provider exists (it needs the bound port for its default issuer).
  const routes: {
    oidc?: (req: IncomingMessage, res: ServerResponse) => void;
    interactions?: ReturnType<typeof createInteractionRouter>;
  } = {};
  let shuttingDown = false;

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // A request target that is no URL (`//[`, `//a b`) makes `new URL` throw: the sender's mistake, answered 400.
    const target = req.url ?? '/';
    if (!URL.canParse(target, 'http://dev-idp.invalid')) return sendJson(res, 400, { error: 'invalid_request' });
    const pathname = new URL(target, 'http://dev-idp.invalid').pathname;
    if (pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (pathname === '/readyz') {
      const ready = provider !== undefined && !shuttingDown;
      return sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready' });
    }
    const { oidc, interactions } = routes;
    if (!oidc || !interactions) return sendJson(res, 503, { error: 'starting' });
    if (!(await interactions(req, res, pathname))) oidc(req, res);
  };

  // Nothing a request does may escape the listener: thrown there (synchronously or not) it is an uncaught exception
  // and the process exits. Logged with the method and path only: a query can carry a code or a token.
  const server = createServer((req, res) => {
    void Promise.resolve()
      .then(() => route(req, res))
      .catch((error: unknown) => {
        const path = (req.url ?? '').split('?', 1)[0];
        logger.error({ err: error, req: { method: req.method, path } }, 'request failed');
        if (!res.headersSent) sendJson(res, 500, { error: 'internal_error' });
        else res.end();
      });
  });
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = options.issuer ?? `http://localhost:${port}`;

  try {
    provider = await createProvider({
      issuer,
      clients: options.clients,
      directory,
      cookieKeys: options.cookieKeys ?? [],
    });
  } catch (error) {
    server.close();
    throw error;
  }
  provider.on('server_error', (_ctx, error) => logger.error({ err: error }, 'oidc-provider server error'));
  const logOidcError = (event: string) => (_ctx: unknown, error: Error & { error_description?: string }) =>
    logger.warn({ event, error: error.message, detail: error.error_description }, 'oidc error');
  provider.on('authorization.error', logOidcError('authorization.error'));
  provider.on('grant.error', logOidcError('grant.error'));
  provider.on('end_session.error', logOidcError('end_session.error'));
  provider.on('userinfo.error', logOidcError('userinfo.error'));
  provider.on('grant.success', (ctx) =>
    logger.info({ event: 'grant.success', clientId: ctx.oidc.client?.clientId }, 'tokens issued'),
  );
  routes.interactions = createInteractionRouter({ provider, directory, clients: options.clients, logger });
  routes.oidc = provider.callback();

  logger.info({ issuer, port, clients: options.clients.map((c) => c.clientId) }, 'dev IdP listening');

  return {
    issuer,
    port,
    provider,
    close: () =>
      new Promise<void>((resolve, reject) => {
        shuttingDown = true;
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeIdleConnections();
      }),
  };
}
