import { Inject, Injectable, RequestMethod, type OnApplicationBootstrap } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { ACCESS_METADATA, type RouteAccess } from './access.decorators';
import { AUTH_OPTIONS, type ControlPlaneAuthOptions } from './auth.options';

export interface RouteDeclaration {
  readonly method: string;
  readonly path: string;
  /** The permission, `public`, `public (infrastructure)`, or null when undeclared. */
  readonly access: string | null;
}

const joinPath = (...parts: (string | undefined)[]) =>
  `/${parts
    .flatMap((part) => (part ?? '').split('/'))
    .filter((segment) => segment.length > 0)
    .join('/')}`;

const firstPath = (value: unknown): string | undefined => (Array.isArray(value) ? String(value[0]) : (value as string | undefined));

/**
 * Every HTTP route of the app with its access declaration, read from Nest's metadata. Refuses to let the app boot when
 * a route is undeclared, or a tenant permission sits on a route without `:tenantId`.
 */
@Injectable()
export class RouteAccessRegistry implements OnApplicationBootstrap {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    @Inject(AUTH_OPTIONS) private readonly options: ControlPlaneAuthOptions,
  ) {}

  list(): RouteDeclaration[] {
    const infrastructure = new Set(this.options.infrastructureRoutes);
    const routes: RouteDeclaration[] = [];
    for (const wrapper of this.discovery.getControllers()) {
      const controller = wrapper.metatype as (new (...args: never[]) => object) | null;
      if (!controller || !wrapper.instance) continue;
      const base = firstPath(Reflect.getMetadata(PATH_METADATA, controller));
      const prototype = Object.getPrototypeOf(wrapper.instance) as object;
      for (const name of this.scanner.getAllMethodNames(prototype)) {
        const handler = (prototype as Record<string, unknown>)[name] as (...args: unknown[]) => unknown;
        const methodCode = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
        if (methodCode === undefined) continue;
        const method = RequestMethod[methodCode];
        const path = joinPath(base, firstPath(Reflect.getMetadata(PATH_METADATA, handler)));
        const access = this.reflector.get<RouteAccess | undefined>(ACCESS_METADATA, handler);
        const declared = access
          ? access.kind === 'public'
            ? 'public'
            : access.permission
          : infrastructure.has(`${method} ${path}`)
            ? 'public (infrastructure)'
            : null;
        routes.push({ method, path, access: declared });
      }
    }
    return routes.sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
  }

  onApplicationBootstrap(): void {
    const problems: string[] = [];
    for (const route of this.list()) {
      if (route.access === null) problems.push(`${route.method} ${route.path} declares no access (@Allow or @Public)`);
      else if (route.access.startsWith('tenant:') && !route.path.includes('/:tenantId')) {
        problems.push(`${route.method} ${route.path} needs ${route.access} but has no :tenantId parameter`);
      }
    }
    if (problems.length > 0) throw new Error(`Refusing to start:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

