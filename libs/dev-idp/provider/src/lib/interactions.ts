import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import type { Logger } from '@portcullis/shared/util-logger';
import type { DevIdpClient } from './clients';
import type { UserDirectory } from './identities';
import { INTERACTION_PATH } from './provider';
import { consentView, loginView } from './views';

export interface InteractionDeps {
  readonly provider: Provider;
  readonly directory: UserDirectory;
  readonly clients: readonly DevIdpClient[];
  readonly logger: Logger;
}

const MAX_FORM_BYTES = 16 * 1024;
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8' });
  res.end(html);
}

/** A form past MAX_FORM_BYTES: the sender's mistake (413), not a fault of the IdP. */
class FormTooLargeError extends Error {
  override readonly name = 'FormTooLargeError';

  constructor() {
    super(`Form body larger than ${MAX_FORM_BYTES} bytes`);
  }
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const type = req.headers['content-type'] ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded')) return new URLSearchParams();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    // Past the limit the rest is read and dropped rather than kept. Leaving the loop early would destroy the request,
    // and with it the connection, before the 413 reaches the browser.
    if (size <= MAX_FORM_BYTES) chunks.push(buffer);
  }
  if (size > MAX_FORM_BYTES) throw new FormTooLargeError();
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function stringParam(params: Record<string, unknown>, key: string): string {
  const value = params[key];
  return typeof value === 'string' ? value : '';
}

/**
 * Serves the login and consent steps of oidc-provider's interaction API under /interaction/:uid.
 * Returns false when the request is not an interaction route.
 */
export function createInteractionRouter(deps: InteractionDeps) {
  const { provider, directory, logger } = deps;
  const firstParty = new Set(deps.clients.filter((c) => c.firstParty).map((c) => c.clientId));
  const demoEmails = directory.users.map((user) => user.email);

  async function grantConsent(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const interaction = await provider.interactionDetails(req, res);
    const accountId = interaction.session?.accountId;
    const clientId = stringParam(interaction.params, 'client_id');
    if (interaction.prompt.name !== 'consent' || !accountId) {
      sendHtml(res, 400, 'Unexpected consent submission.');
      return;
    }
    const details = interaction.prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    const grant = interaction.grantId
      ? await provider.Grant.find(interaction.grantId)
      : new provider.Grant({ accountId, clientId });
    if (!grant) throw new Error('Grant of the interaction no longer exists');
    if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
    if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    logger.info({ event: 'consent.granted', sub: accountId, clientId }, 'consent granted');
    await provider.interactionFinished(
      req,
      res,
      { consent: interaction.grantId ? {} : { grantId } },
      { mergeWithLastSubmission: true },
    );
  }

  async function show(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const interaction = await provider.interactionDetails(req, res);
    const clientId = stringParam(interaction.params, 'client_id');
    if (interaction.prompt.name === 'login') {
      sendHtml(res, 200, loginView({ uid: interaction.uid, clientId, demoEmails }));
      return;
    }
    if (interaction.prompt.name === 'consent') {
      if (firstParty.has(clientId)) {
        await grantConsent(req, res);
        return;
      }
      const scope = stringParam(interaction.params, 'scope');
      sendHtml(
        res,
        200,
        consentView({ uid: interaction.uid, clientId, scopes: scope.split(' ').filter(Boolean) }),
      );
      return;
    }
    sendHtml(res, 400, `Unsupported prompt: ${interaction.prompt.name.replace(/[^a-z_]/gi, '')}`);
  }

  async function login(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const interaction = await provider.interactionDetails(req, res);
    const clientId = stringParam(interaction.params, 'client_id');
    if (interaction.prompt.name !== 'login') {
      sendHtml(res, 400, 'Unexpected login submission.');
      return;
    }
    const form = await readForm(req);
    const email = form.get('email') ?? '';
    const user = directory.authenticate(email, form.get('password') ?? '');
    if (!user) {
      logger.warn({ event: 'login.failed', clientId }, 'sign-in rejected: wrong email or password');
      sendHtml(
        res,
        401,
        loginView({ uid: interaction.uid, clientId, email, error: 'Wrong email or password.', demoEmails }),
      );
      return;
    }
    logger.info({ event: 'login.succeeded', sub: user.sub, clientId }, 'user signed in');
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: user.sub } },
      { mergeWithLastSubmission: false },
    );
  }

  async function abort(req: IncomingMessage, res: ServerResponse): Promise<void> {
    await provider.interactionDetails(req, res);
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'The user cancelled the sign-in.' },
      { mergeWithLastSubmission: false },
    );
  }

  const routes: ReadonlyArray<[method: string, pattern: RegExp, handler: typeof show]> = [
    ['GET', new RegExp(`^${INTERACTION_PATH}/[\\w-]+$`), show],
    ['POST', new RegExp(`^${INTERACTION_PATH}/[\\w-]+/login$`), login],
    ['POST', new RegExp(`^${INTERACTION_PATH}/[\\w-]+/confirm$`), grantConsent],
    ['POST', new RegExp(`^${INTERACTION_PATH}/[\\w-]+/abort$`), abort],
  ];

  return async function route(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean> {
    if (!pathname.startsWith(`${INTERACTION_PATH}/`)) return false;
    const match = routes.find(([method, pattern]) => method === req.method && pattern.test(pathname));
    if (!match) {
      sendHtml(res, 404, 'Not found.');
      return true;
    }
    try {
      await match[2](req, res);
    } catch (error) {
      if (error instanceof FormTooLargeError) {
        logger.warn({ event: 'interaction.form_too_large', limitBytes: MAX_FORM_BYTES }, 'interaction form refused: too large');
        if (!res.headersSent) sendHtml(res, 413, `This form is too large (at most ${MAX_FORM_BYTES / 1024} KB). Start again from the application.`);
        return true;
      }
      const name = error instanceof Error ? error.name : 'Error';
      // SessionNotFound and friends: expired or foreign interaction (cookie missing), not a server fault.
      const expected = name === 'SessionNotFound' || name === 'InvalidRequest';
      logger[expected ? 'warn' : 'error']({ err: error, event: 'interaction.failed' }, 'interaction failed');
      if (!res.headersSent) {
        sendHtml(
          res,
          expected ? 400 : 500,
          expected
            ? 'This sign-in attempt expired or is invalid. Start again from the application.'
            : 'Internal error.',
        );
      }
    }
    return true;
  };
}
