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
   */
  | { readonly ok: false; readonly reason: 'unauthenticated' | 'unknown_tenant' };

/** How the request path learns who is calling. API keys now; OAuth access tokens later, behind the same interface. */
export interface Authenticator {
  authenticate(authorization: HeaderValue, tenantSlug: string): AuthOutcome | Promise<AuthOutcome>;
}

/**
 * API keys (`Bearer pcs_...`) checked against the in-memory index: one SHA-256 and two map lookups, no
 * I/O. The key itself is never stored or logged; only its hash is compared.
 */
export class ApiKeyAuthenticator implements Authenticator {
  constructor(
    private readonly keys: ApiKeyIndex,
    private readonly tenants: TenantIndex,
    private readonly now: () => number = Date.now,
  ) {}

  authenticate(authorization: HeaderValue, tenantSlug: string): AuthOutcome {
    const token = bearerToken(authorization);
    if (token === undefined || !looksLikeApiKey(token)) return { ok: false, reason: 'unauthenticated' };
    const key = this.keys.lookup(hashApiKey(token));
    if (!key || key.revoked || (key.expiresAt !== null && key.expiresAt <= this.now())) {
      return { ok: false, reason: 'unauthenticated' };
    }
    const tenant = this.tenants.bySlug(tenantSlug);
    if (!tenant || !tenant.active || tenant.id !== key.tenantId) return { ok: false, reason: 'unknown_tenant' };
    const principal: Principal =
      key.agentClientId !== null
        ? { tenantId: key.tenantId, kind: 'agent_client', id: key.agentClientId }
        : { tenantId: key.tenantId, kind: 'user', id: key.userId ?? key.apiKeyId };
    return { ok: true, principal, credentialId: key.apiKeyId };
  }
}
