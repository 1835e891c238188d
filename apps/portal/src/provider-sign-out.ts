import 'server-only';
import { endSessionEndpointOf, type EndSessionEndpoint } from '@portcullis/portal/auth';
import { configFields } from '@portcullis/shared/util-config';
import { portalConfig } from './config';

/** A provider's end-session endpoint rarely changes: one look at its discovery document serves for this long. */
const REMEMBER_MS = 10 * 60_000;
/** A failed look is tried again sooner. */
const RETRY_MS = 30_000;
let remembered: { readonly at: number; readonly ttl: number; readonly endpoint: EndSessionEndpoint } | undefined;
let pending: Promise<EndSessionEndpoint> | undefined;

async function lookUp(): Promise<EndSessionEndpoint> {
  const { auth, readinessTimeoutMs } = portalConfig();
  const issuer = new URL(auth.issuer);
  try {
    const response = await fetch(`${auth.issuer}/.well-known/openid-configuration`, {
      signal: AbortSignal.timeout(readinessTimeoutMs),
      cache: 'no-store',
      redirect: 'error',
    });
    if (!response.ok) throw new Error(`discovery answered ${response.status}`);
    const endpoint = endSessionEndpointOf(await response.json(), issuer.protocol === 'http:' && configFields.isLoopbackHost(issuer.hostname));
    remembered = { at: Date.now(), ttl: REMEMBER_MS, endpoint };
    return endpoint;
  } catch {
    // Signing out still works, at the portal only; the next sign-out looks again.
    remembered = { at: Date.now(), ttl: RETRY_MS, endpoint: undefined };
    return undefined;
  }
}

/** The identity provider's end-session endpoint (discovery, remembered), or undefined if it has none or is unreachable. */
export async function endSessionEndpoint(): Promise<EndSessionEndpoint> {
  if (remembered !== undefined && Date.now() - remembered.at < remembered.ttl) return remembered.endpoint;
  pending ??= lookUp().finally(() => {
    pending = undefined;
  });
  return pending;
}
