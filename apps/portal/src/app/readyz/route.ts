import { portalConfig } from '../../config';

export const dynamic = 'force-dynamic';

/** Readiness: the identity provider's discovery document is reachable, so sign-in can work. */
export async function GET(): Promise<Response> {
  const { auth, readinessTimeoutMs } = portalConfig();
  const url = `${auth.issuer}/.well-known/openid-configuration`;
  let reason: string | undefined;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(readinessTimeoutMs), cache: 'no-store' });
    if (!response.ok) reason = `identity provider discovery answered ${response.status}`;
  } catch {
    reason = 'identity provider discovery unreachable';
  }
  return Response.json(reason ? { status: 'not ready', reason } : { status: 'ready' }, {
    status: reason ? 503 : 200,
    headers: { 'cache-control': 'no-store' },
  });
}
