/**
 * The built dev IdP and the built portal (`next start`) for the portal's e2e specs. Needs `npx nx run-many -t build
 * -p dev-idp portal` first: dist/apps/dev-idp/main.js and apps/portal/.next.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { testContext } from '@portcullis/shared/util-testing';
import { type AppProcess, freePort, repoRoot, startBuiltApp, startProcess, waitForReady } from './app-process';

const nextBin = path.join(repoRoot, 'node_modules/next/dist/bin/next');
const { redisUrl } = testContext();

/** The built portal (`next start`) on localhost:`port`, signing in at `issuer`. */
export function startPortal(port: number, issuer: string, clientSecret: string, env: Record<string, string> = {}): AppProcess {
  return startProcess(
    process.execPath,
    [nextBin, 'start', '--port', String(port), '--hostname', 'localhost'],
    {
      NODE_ENV: 'production',
      NEXT_TELEMETRY_DISABLED: '1',
      NEXTAUTH_URL: `http://localhost:${port}`,
      NEXTAUTH_SECRET: randomBytes(32).toString('base64url'),
      PORTAL_OIDC_ISSUER: issuer,
      PORTAL_OIDC_CLIENT_SECRET: clientSecret,
      REDIS_URL: redisUrl,
      ...env,
    },
    path.join(repoRoot, 'apps/portal'),
  );
}

export interface SignInStack {
  readonly idp: AppProcess;
  readonly portal: AppProcess;
  readonly idpPort: number;
  readonly idpUrl: string;
  readonly portalUrl: string;
  readonly clientSecret: string;
}

/**
 * The built dev IdP and the built portal signing in at it, each waited for until ready; every process goes into
 * `started` as it starts (the caller's afterAll stops them in reverse).
 */
export async function startSignInStack(
  started: AppProcess[],
  options: { readonly idpEnv?: Record<string, string>; readonly portalEnv?: Record<string, string> } = {},
): Promise<SignInStack> {
  for (const artefact of ['dist/apps/dev-idp/main.js', 'apps/portal/.next/BUILD_ID']) {
    if (!existsSync(path.join(repoRoot, artefact))) throw new Error(`${artefact} is missing: run \`npx nx run-many -t build -p dev-idp portal\` first`);
  }
  const [idpPort, portalPort] = [await freePort(), await freePort()];
  const idpUrl = `http://localhost:${idpPort}`;
  const portalUrl = `http://localhost:${portalPort}`;
  const clientSecret = randomBytes(24).toString('base64url');
  const idp = startBuiltApp('dev-idp', {
    NODE_ENV: 'development',
    LOG_LEVEL: 'warn',
    DEV_IDP_HOST: '127.0.0.1',
    DEV_IDP_PORT: String(idpPort),
    DEV_IDP_ISSUER: idpUrl,
    DEV_IDP_PORTAL_CLIENT_SECRET: clientSecret,
    DEV_IDP_PORTAL_REDIRECT_URIS: `${portalUrl}/api/auth/callback/oidc`,
    DEV_IDP_PORTAL_POST_LOGOUT_REDIRECT_URIS: `${portalUrl}/sign-in`,
    ...options.idpEnv,
  });
  started.push(idp);
  await waitForReady(`${idpUrl}/readyz`, idp);
  const portal = startPortal(portalPort, idpUrl, clientSecret, options.portalEnv);
  started.push(portal);
  await waitForReady(`${portalUrl}/readyz`, portal, 60_000);
  return { idp, portal, idpPort, idpUrl, portalUrl, clientSecret };
}
