import { looksLikeApiKey, hashApiKey } from '@portcullis/auth/api-keys';
import type { Principal } from '@portcullis/gateway/mcp';
import { bearerToken, type HeaderValue } from '../http/request-checks';
import type { ApiKeyIndex } from './api-key-index';
import type { TenantIndex } from './tenant-index';

export type AuthOutcome =
  | { readonly ok: true; readonly principal: Principal; readonly credentialId: string }
  /**
   * `unauthenticated`: no usable credential (401 with `WWW-Authenticate: Bearer`).
   * `unknown_tenant`: the credential is fine but not for this tenant, or the tenant does not exist or is
   * suspended; answered exactly like an unknown tenant (404).
   * `unavailable`: the gateway cannot tell whether the credential is still good (its copy of the keys or tenants is
   * older than allowed: the database has not answered for a while); 503 with Retry-After.
   */
  | { readonly ok: false; readonly reason: 'unauthenticated' | 'unknown_tenant' | 'unavailable' };

/** How the request path learns who is calling. API keys now; OAuth access tokens later, behind the same interface. */
export interface Authenticator {
  authenticate(authorization: HeaderValue, tenantSlug: string): AuthOutcome | Promise<AuthOutcome>;
  /**
   * Whether a credential that authenticated a request earlier would still be accepted for `principal` now (not
   * revoked, expired or disabled; its tenant still active). For calls that waited, such as for a human's approval.
   * `'unknown'` when that cannot be told right now (the `unavailable` of `authenticate`): neither accepted nor revoked.
   */
  stillValid(credentialId: string, principal: Principal): boolean | 'unknown';
  /**
   * When the credential stops being accepted of itself (epoch milliseconds), null if it never does or is not known:
   * open streams authenticated with it are closed then, without waiting for a reload.
   */
  expiresAt?(credentialId: string): number | null;
}

/**
 * API keys (`Bearer pcs_...`) checked against the in-memory index: one SHA-256 and two map lookups, no
 * I/O. The key itself is never stored or logged; only its hash is compared.
 *
 * `current` says whether the indexes are recent enough to be trusted: a key revoked or a tenant suspended while the
 * gateway cannot reload them would otherwise stay accepted for as long as the database is out of reach. When they are
 * not, well-formed keys get `unavailable` (and calls that waited are not resumed) until a reload succeeds.
 */
export class ApiKeyAuthenticator implements Authenticator {
  constructor(
    private readonly keys: ApiKeyIndex,
    private readonly tenants: TenantIndex,
    private readonly now: () => number = Date.now,
    private readonly current: () => boolean = () => true,
  ) {}

  authenticate(authorization: HeaderValue, tenantSlug: string): AuthOutcome {
    const token = bearerToken(authorization);
    if (token === undefined || !looksLikeApiKey(token)) return { ok: false, reason: 'unauthenticated' };
    if (!this.current()) return { ok: false, reason: 'unavailable' };
    const key = this.keys.lookup(hashApiKey(token));
    if (!key || key.revoked || (key.expiresAt !== null && key.expiresAt <= this.now())) {
      return { ok: false, reason: 'unauthenticated' };
    }
    const tenant = this.tenants.bySlug(tenantSlug);
    if (!tenant || !tenant.active || tenant.id !== key.tenantId) return { ok: false, reason: 'unknown_tenant' };
    const principal: Principal =
      key.agentClientId !== null
        ? { tenantId: key.tenantId, kind: 'agent_client', id: key.agentClientId, credentialId: key.apiKeyId }
        : { tenantId: key.tenantId, kind: 'user', id: key.userId ?? key.apiKeyId, credentialId: key.apiKeyId };
    return { ok: true, principal, credentialId: key.apiKeyId };
  }

  stillValid(credentialId: string, principal: Principal): boolean | 'unknown' {
    // A key the copy no longer holds (a reload since left it out: revoked, expired or deleted), marks revoked, or whose
    // expiry has passed is refused however old the copy is: no reload is needed to know that. Only whether a key is
    // still good depends on the copy being current.
    const key = this.keys.byId(credentialId);
    if (!key || key.revoked || (key.expiresAt !== null && key.expiresAt <= this.now())) return false;
    if (!this.current()) return 'unknown';
    if (key.tenantId !== principal.tenantId) return false;
    const owner = key.agentClientId ?? key.userId ?? key.apiKeyId;
    if (owner !== principal.id) return false;
    return this.tenants.byId(key.tenantId)?.active === true;
  }

  expiresAt(credentialId: string): number | null {
    return this.keys.byId(credentialId)?.expiresAt ?? null;
  }
}

const UNVERIFIABLE: AuthOutcome = { ok: false, reason: 'unavailable' };

/**
 * `inner` with a bound on how long an answer that comes later (a token introspection, a key service) may take:
 * past `timeoutMs` the request is answered as `unavailable` (503 + Retry-After) and whatever `inner` says after is
 * dropped. Without it a credential service that never answers holds every request, its socket and its unread body
 * for good. Synchronous answers (API keys) pass through untouched, with no timer; a failure is passed on as is.
 */
export function withAuthDeadline(inner: Authenticator, timeoutMs: number): Authenticator {
  return {
    authenticate(authorization, tenantSlug) {
      const outcome = inner.authenticate(authorization, tenantSlug);
      if (!(outcome instanceof Promise)) return outcome;
      return new Promise<AuthOutcome>((resolve, reject) => {
        const timer = setTimeout(() => resolve(UNVERIFIABLE), timeoutMs);
        outcome.then(
          (answer) => {
            clearTimeout(timer);
            resolve(answer);
          },
          (error: unknown) => {
            clearTimeout(timer);
            reject(error);
          },
        );
      });
    },
    stillValid: (credentialId, principal) => inner.stillValid(credentialId, principal),
    expiresAt: (credentialId) => inner.expiresAt?.(credentialId) ?? null,
  };
}
