import { discoveryIssuerProblem } from '@portcullis/portal/auth';
import { portalConfig } from '../../config';

export const dynamic = 'force-dynamic';

/** How long one look at the identity provider answers readiness probes: anyone may call this route. */
const REMEMBER_MS = 5_000;

/** What one look at the provider found: undefined when sign-in can work. */
interface ProviderProblem {
  readonly reason: string;
  /** The portal's own configuration cannot work with this provider (as opposed to a provider that is down). */
  readonly misconfigured: boolean;
}

let last: { readonly at: number; readonly problem: ProviderProblem | undefined; readonly pending?: Promise<ProviderProblem | undefined> } | undefined;

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
 * sign-in page says so). A provider whose discovery names another issuer than the configured one is different: that
 * is this portal's configuration, no sign-in can ever succeed with it, and a rollout that brings it must stop at the
 * first replica, so the portal is not ready (503). One request to the provider answers every probe for a few seconds
 * (and concurrent probes share it), so this unauthenticated route cannot be used to flood the provider.
 */
export async function GET(): Promise<Response> {
  const now = Date.now();
  if (last === undefined || (last.pending === undefined && now - last.at >= REMEMBER_MS)) {
    const pending = lookAtProvider();
    last = { at: now, problem: undefined, pending };
    last = { at: Date.now(), problem: await pending };
  }
  const problem = last.pending ? await last.pending : last.problem;
  const ready = problem?.misconfigured !== true;
  return Response.json(
    { status: ready ? 'ready' : 'not ready', identityProvider: problem?.reason ?? 'reachable' },
    { status: ready ? 200 : 503, headers: { 'cache-control': 'no-store' } },
  );
}
