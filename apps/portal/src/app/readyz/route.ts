import { discoveryIssuerProblem } from '@portcullis/portal/auth';
import { portalConfig } from '../../config';
import { type SessionStoreProblem, sessionStoreProblem } from '../../session-revocations';

export const dynamic = 'force-dynamic';

/** How long one look at the identity provider answers readiness probes: anyone may call this route. */
const REMEMBER_MS = 5_000;

/** What one look at the provider found: undefined when sign-in can work. */
interface ProviderProblem {
  readonly reason: string;
  /** The portal's own configuration cannot work with this provider (as opposed to a provider that is down). */
  readonly misconfigured: boolean;
}

/** What one look found: the provider's problem and the session store's (undefined: fine). */
interface Findings {
  readonly provider: ProviderProblem | undefined;
  readonly sessionStore: SessionStoreProblem | undefined;
}

let last: { readonly at: number; readonly findings: Findings | undefined; readonly pending?: Promise<Findings> } | undefined;

async function look(): Promise<Findings> {
  const [provider, sessionStore] = await Promise.all([lookAtProvider(), sessionStoreProblem(portalConfig().readinessTimeoutMs)]);
  return { provider, sessionStore };
}

async function lookAtProvider(): Promise<ProviderProblem | undefined> {
  const { auth, readinessTimeoutMs } = portalConfig();
  const url = `${auth.issuer}/.well-known/openid-configuration`;
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(readinessTimeoutMs), cache: 'no-store' });
  } catch {
    return { reason: 'identity provider discovery unreachable', misconfigured: false };
  }
  if (!response.ok) return { reason: `identity provider discovery answered ${response.status}`, misconfigured: false };
  let discovery: unknown;
  try {
    discovery = await response.json();
  } catch {
    // A proxy's or load balancer's page, or a body cut short: reported like an outage, as it may pass.
    return { reason: 'identity provider discovery answered something other than JSON', misconfigured: false };
  }
  const reason = discoveryIssuerProblem(discovery, auth.issuer);
  return reason === undefined ? undefined : { reason, misconfigured: true };
}

/**
 * Readiness: the portal process is up with its configuration, and serves. The identity provider's state is reported
 * (`identityProvider`), not required: people already signed in hold a self-contained session and need no provider, so
 * a provider outage must not take every replica out of the load balancer at once (only new sign-ins fail, and the
 * sign-in page says so). Redis, which keeps the signed-out sessions, is reported the same way (`sessionStore`): while
 * it is down every replica refuses sessions with its own 503 page, which says why, rather than the load balancer's. A
 * finding that is this portal's own configuration is different: a provider whose discovery names another issuer than
 * the configured one (no sign-in can ever succeed), or a REDIS_URL database the server refused (the client carries on
 * in database 0); a rollout that brings either must stop at the first replica, so the portal is not ready (503). One
 * look (a request to the provider, a PING) answers every probe for a few seconds (and concurrent probes share it), so
 * this unauthenticated route cannot be used to flood either.
 */
export async function GET(): Promise<Response> {
  const now = Date.now();
  if (last === undefined || (last.pending === undefined && now - last.at >= REMEMBER_MS)) {
    const pending = look();
    last = { at: now, findings: undefined, pending };
    last = { at: Date.now(), findings: await pending };
  }
  const { provider, sessionStore } = last.pending ? await last.pending : (last.findings as Findings);
  const ready = provider?.misconfigured !== true && sessionStore?.misconfigured !== true;
  return Response.json(
    { status: ready ? 'ready' : 'not ready', identityProvider: provider?.reason ?? 'reachable', sessionStore: sessionStore?.reason ?? 'reachable' },
    { status: ready ? 200 : 503, headers: { 'cache-control': 'no-store' } },
  );
}
