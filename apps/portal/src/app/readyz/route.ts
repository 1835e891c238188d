import { portalConfig } from '../../config';

export const dynamic = 'force-dynamic';

/** How long one look at the identity provider answers readiness probes: anyone may call this route. */
const REMEMBER_MS = 5_000;
let last: { readonly at: number; readonly reason: string | undefined; readonly pending?: Promise<string | undefined> } | undefined;

async function lookAtProvider(): Promise<string | undefined> {
  const { auth, readinessTimeoutMs } = portalConfig();
  const url = `${auth.issuer}/.well-known/openid-configuration`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(readinessTimeoutMs), cache: 'no-store' });
    return response.ok ? undefined : `identity provider discovery answered ${response.status}`;
  } catch {
    return 'identity provider discovery unreachable';
  }
}

/**
 * Readiness: the portal process is up with its configuration, and serves. The identity provider's state is reported
 * (`identityProvider`), not required: people already signed in hold a self-contained session and need no provider, so
 * a provider outage must not take every replica out of the load balancer at once (only new sign-ins fail, and the
 * sign-in page says so). One request to the provider answers every probe for a few seconds (and concurrent probes
 * share it), so this unauthenticated route cannot be used to flood the provider.
 */
export async function GET(): Promise<Response> {
  const now = Date.now();
  if (last === undefined || (last.pending === undefined && now - last.at >= REMEMBER_MS)) {
    const pending = lookAtProvider();
    last = { at: now, reason: undefined, pending };
    last = { at: Date.now(), reason: await pending };
  }
  const reason = last.pending ? await last.pending : last.reason;
  return Response.json({ status: 'ready', identityProvider: reason ?? 'reachable' }, { headers: { 'cache-control': 'no-store' } });
}
