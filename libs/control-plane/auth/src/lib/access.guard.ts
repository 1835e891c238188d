import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { traceIdFrom } from '@portcullis/shared/nest-runtime';
import { AppError } from '@portcullis/shared/util-errors';
import { isUuid, tenantId as toTenantId } from '@portcullis/shared/util-ids';
import type { Logger } from '@portcullis/shared/util-logger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ACCESS_METADATA, type RouteAccess } from './access.decorators';
import { AccessTokenError, verifyAccessToken } from './access-token';
import { AUTH_OPTIONS, type ControlPlaneAuthOptions } from './auth.options';
import { allowedWhileSuspended, permissionRule, roleGrants, type Permission } from './permissions';
import { attachPrincipal, attachTenantScope, type Principal } from './principal';
import { PrincipalLoader } from './principal.loader';
import { tenantSuspended } from './tenant-writable';

// The scheme is case-insensitive (RFC 9110 §11.1): `bearer` from a client or proxy that lowercases it is the same.
const BEARER = /^Bearer +([A-Za-z0-9._~+/-]+=*)$/i;

/** One answer for "no such tenant" and "not your tenant": the caller learns nothing about other tenants. */
const tenantNotFound = () => new AppError('NOT_FOUND', 'No such tenant.');

/**
 * The global guard. Deny by default: a route without an access declaration is refused (and the app refuses to boot
 * with one, see RouteAccessRegistry). Order: authenticate (401) → platform role (403) → tenant membership (404) →
 * role permission (403).
 */
@Injectable()
export class AccessGuard implements CanActivate {
  private readonly infrastructureRoutes: ReadonlySet<string>;

  constructor(
    private readonly reflector: Reflector,
    private readonly loader: PrincipalLoader,
    @Inject(AUTH_OPTIONS) private readonly options: ControlPlaneAuthOptions,
  ) {
    this.infrastructureRoutes = new Set(options.infrastructureRoutes);
  }

  private get logger(): Logger {
    return this.options.logger;
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const access = this.reflector.get<RouteAccess | undefined>(ACCESS_METADATA, context.getHandler());
    if (!access) {
      const route = `${request.method === 'HEAD' ? 'GET' : request.method} ${request.routeOptions.url ?? ''}`;
      if (this.infrastructureRoutes.has(route)) return true;
      this.logger.error({ route }, 'route has no access declaration; refusing it');
      throw new AppError('FORBIDDEN', 'This route is closed.');
    }
    if (access.kind === 'public') return true;

    const principal = await this.authenticate(request, context.switchToHttp().getResponse<FastifyReply>());
    attachPrincipal(request, principal);
    await this.authorize(request, principal, access.permission);
    return true;
  }

  private async authenticate(request: FastifyRequest, reply: FastifyReply): Promise<Principal> {
    const refuse = (message: string, error: 'invalid_request' | 'invalid_token') => {
      reply.header('www-authenticate', `Bearer realm="portcullis", error="${error}"`);
      return new AppError('UNAUTHENTICATED', message);
    };
    const header = request.headers.authorization;
    const match = header ? BEARER.exec(header) : null;
    if (!match?.[1]) throw refuse('A bearer token is required.', 'invalid_request');
    let verified;
    try {
      verified = await verifyAccessToken(this.options.token, match[1]);
    } catch (error) {
      if (!(error instanceof AccessTokenError)) throw error;
      this.logger.info({ reason: error.message }, 'access token refused');
      throw refuse(error.reason === 'expired' ? 'The token has expired.' : 'The token is not valid.', 'invalid_token');
    }
    const user = await this.loader.user(verified.userId);
    if (!user) throw refuse('The token is not valid.', 'invalid_token');
    const traceparent = request.headers['traceparent'];
    return {
      userId: verified.userId,
      isPlatformAdmin: user.isPlatformAdmin,
      traceId: traceIdFrom(request.headers),
      traceparent: typeof traceparent === 'string' && traceparent.length <= 60 ? traceparent : null,
    };
  }

  private async authorize(request: FastifyRequest, principal: Principal, permission: Permission): Promise<void> {
    const rule = permissionRule(permission);
    switch (rule.principal) {
      case 'user':
        return;
      case 'platform_admin':
        if (!principal.isPlatformAdmin) throw new AppError('FORBIDDEN', 'Only platform admins may do this.');
        return;
      case 'member': {
        const raw = (request.params as Record<string, string | undefined>)['tenantId'];
        if (!raw || !isUuid(raw)) throw tenantNotFound();
        // The only place a route's TenantId is minted: after the caller's membership has been checked.
        const tenantId = toTenantId(raw);
        const membership = await this.loader.membership(tenantId, principal.userId);
        if (!membership) throw tenantNotFound();
        const { role } = membership;
        if (!roleGrants(role, permission)) {
          throw new AppError('FORBIDDEN', `Your role (${role}) does not allow this in this tenant.`);
        }
        if (membership.suspended && !allowedWhileSuspended(permission)) {
          // Read again, locked, in the change's own transaction (assertTenantWritable): a suspension may come between.
          throw tenantSuspended();
        }
        attachTenantScope(request, { tenantId, role, actor: principal });
        return;
      }
    }
  }
}
