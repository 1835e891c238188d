import type { TenantId, UserId } from '@portcullis/shared/util-ids';
import type { FastifyRequest } from 'fastify';
import type { TenantRole } from './permissions';

/**
 * Who is calling. Built per request from a verified token plus the user's current row: the platform role and
 * memberships are read from the database, never trusted from the token, so a demotion or removal takes effect on
 * the next request.
 */
export interface Principal {
  readonly userId: UserId;
  readonly isPlatformAdmin: boolean;
  /** Trace context of the request, for audit events. */
  readonly traceId: string;
  readonly traceparent: string | null;
}

/** The tenant a tenant-scoped route acts on, resolved and checked by the guard: the only source of a route's TenantId. */
export interface TenantScope {
  readonly tenantId: TenantId;
  /** The caller's role in that tenant. */
  readonly role: TenantRole;
  readonly actor: Principal;
}

const PRINCIPAL = Symbol('portcullis.principal');
const TENANT_SCOPE = Symbol('portcullis.tenantScope');

type AuthRequest = FastifyRequest & { [PRINCIPAL]?: Principal; [TENANT_SCOPE]?: TenantScope };

export function attachPrincipal(request: FastifyRequest, principal: Principal): void {
  (request as AuthRequest)[PRINCIPAL] = principal;
}

export function attachTenantScope(request: FastifyRequest, scope: TenantScope): void {
  (request as AuthRequest)[TENANT_SCOPE] = scope;
}

export function principalOf(request: FastifyRequest): Principal {
  const principal = (request as AuthRequest)[PRINCIPAL];
  if (!principal) throw new Error('no principal on this request: is the route declared with @Allow?');
  return principal;
}

export function tenantScopeOf(request: FastifyRequest): TenantScope {
  const scope = (request as AuthRequest)[TENANT_SCOPE];
  if (!scope) throw new Error('no tenant scope on this request: is the route declared with a tenant:* permission?');
  return scope;
}
