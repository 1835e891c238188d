import { applyDecorators, createParamDecorator, SetMetadata, type ExecutionContext } from '@nestjs/common';
import { ApiBearerAuth, ApiExtension, ApiParam } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { isTenantPermission, type Permission } from './permissions';
import { principalOf, tenantScopeOf } from './principal';

export const ACCESS_METADATA = 'portcullis:access';

export type RouteAccess = { readonly kind: 'public' } | { readonly kind: 'permission'; readonly permission: Permission };

/**
 * Declares the permission a route needs (see PERMISSIONS). Exactly one access declaration per route: a route
 * without `@Allow` or `@Public` is refused by the guard and stops the app at boot.
 * Also documents the route in OpenAPI (bearer auth, `x-portcullis-permission`, the `tenantId` path parameter).
 */
export function Allow(permission: Permission): MethodDecorator {
  const access: RouteAccess = { kind: 'permission', permission };
  return applyDecorators(
    SetMetadata(ACCESS_METADATA, access),
    ApiBearerAuth(),
    ApiExtension('x-portcullis-permission', permission),
    ...(isTenantPermission(permission)
      ? [ApiParam({ name: 'tenantId', format: 'uuid', description: 'The tenant (404 unless you are a member).' })]
      : []),
  );
}

/** Declares a route open to anyone, without a token. */
export function Public(): MethodDecorator {
  const access: RouteAccess = { kind: 'public' };
  return applyDecorators(SetMetadata(ACCESS_METADATA, access), ApiExtension('x-portcullis-permission', 'public'));
}

/** The authenticated caller (routes declared with `@Allow`). */
export const CurrentPrincipal = createParamDecorator((_data: unknown, context: ExecutionContext) =>
  principalOf(context.switchToHttp().getRequest<FastifyRequest>()),
);

/** The checked tenant of a `tenant:*` route: its branded TenantId, the caller's role, and the caller. */
export const CurrentTenant = createParamDecorator((_data: unknown, context: ExecutionContext) =>
  tenantScopeOf(context.switchToHttp().getRequest<FastifyRequest>()),
);
